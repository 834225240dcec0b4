/**
 * `npm run bench:watch`: a standalone (seeds-mode) cluster client idle against a cluster of N
 * real nodes (in one process, on the in-memory runtime): bytes a second it receives, polling
 * `$members` every second (`watch: false`, the baseline) and watching (`$watch`), in the same
 * run; and, watching, the time from a member's change (a node draining, then a new node ready)
 * to the client knowing it. Goal: >= 50x fewer bytes watching, a change known in < 100 ms.
 * Writes scripts/bench/results/watch-<runtime>.json.
 *
 * Options (environment): WATCH_N (100 members), WATCH_SECONDS (10 s idle per mode).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { createClusterClient } from "../../src/cluster/client.ts";
import { WATCH_SETTLE_MS } from "../../src/cluster/discovery.ts";
import { configWith } from "../../src/config/load.ts";
import { demo, demoHandlers } from "../../src/demo/demo.ts";
import { DEFAULT_SWIM_CONFIG } from "../../src/membership/types.ts";
import { createNode, type EbbNode } from "../../src/node.ts";
import { detectRuntime } from "../../src/runtime/detect.ts";
import { createMemoryRuntime } from "../../src/runtime/memory.ts";
import type { ConnectOptions, Runtime } from "../../src/runtime/types.ts";
import { table } from "./stats.ts";

const host = await detectRuntime();
const env = host.env();
const N = Number(env.WATCH_N ?? 100);
const SECONDS = Number(env.WATCH_SECONDS ?? 10);
const here = decodeURIComponent(new URL(".", import.meta.url).pathname);
const runtime = createMemoryRuntime();

/** The runtime with every byte the client's connections receive counted. */
function counting(inner: Runtime): { runtime: Runtime; bytes: () => number } {
  let bytes = 0;
  const wrapped = Object.create(inner) as Runtime;
  wrapped.connect = (options: ConnectOptions) =>
    inner.connect({
      ...options,
      open: (socket) => {
        const handlers = options.open(socket);
        return { ...handlers, data: (chunk: Uint8Array) => ((bytes += chunk.byteLength), handlers.data(chunk)) };
      },
    });
  return { runtime: wrapped, bytes: () => bytes };
}

const swim = { ...DEFAULT_SWIM_CONFIG, probeIntervalMs: 2_000, pushPullIntervalMs: 60_000 };
const start = async (nodeId: string, seeds: string[]) => {
  const node = createNode({ config: configWith({ nodeId, host: "127.0.0.1", rpcPort: 0, httpPort: null, swim, seeds }), runtime }).register(demo, demoHandlers);
  await node.start();
  return node;
};
const nodes: EbbNode[] = [await start("w0", [])];
const seeds = [`127.0.0.1:${nodes[0]!.rpcAddress.port}`];
for (let i = 1; i < N; i++) nodes.push(await start(`w${i}`, seeds));
const converged = () => nodes[0]!.members().filter((m) => m.status === "alive" && m.meta.state === "ready").length === N;
while (!converged()) await new Promise((resolve) => setTimeout(resolve, 50));

/** Idle for SECONDS with a fresh client (watching or not): bytes received per second, after the first list. */
async function idle(watch: boolean) {
  const counted = counting(runtime);
  const client = createClusterClient({ runtime: counted.runtime, seeds, watch });
  await client.whenAvailable("demo", N, 30_000);
  // Settled: the first list and the watch's snapshot are in, and the poll has slowed down (WATCH_SETTLE_MS).
  await new Promise((resolve) => setTimeout(resolve, (watch ? WATCH_SETTLE_MS : 0) + 2_000));
  const from = counted.bytes();
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1_000));
  const perSecond = (counted.bytes() - from) / SECONDS;
  return { client, perSecond };
}

const polling = await idle(false);
polling.client.close();
const watching = await idle(true);

/** Milliseconds from `change()` until `known()` holds for the watching client. */
async function timeToKnow(change: () => Promise<unknown> | void, known: () => boolean): Promise<number> {
  const started = performance.now();
  void change();
  while (!known()) await new Promise((resolve) => setTimeout(resolve, 1));
  return performance.now() - started;
}
const leaving = nodes.pop()!;
const drainKnownMs = await timeToKnow(() => leaving.shutdown(), () => !watching.client.candidates("demo").some((c) => c.id === leaving.id));
let joining: EbbNode | undefined;
const joinKnownMs = await timeToKnow(async () => (joining = await start("w-new", seeds)), () => watching.client.candidates("demo").some((c) => c.id === "w-new"));
watching.client.close();
await Promise.all([...nodes, joining!].map((n) => n.shutdown()));

const ratio = polling.perSecond / Math.max(1, watching.perSecond);
console.log(`\nwatch, ${host.name} ${host.version}: one seeds-mode client idle against ${N} nodes (in-memory runtime), ${SECONDS} s per mode`);
console.log(
  table(
    ["client", "bytes/s received", "a drain known after", "a new node known after"],
    [
      ["polling $members every 1 s (baseline)", Math.round(polling.perSecond), "up to 1 s", "up to 1 s"],
      ["watching ($watch, safety poll every 60 s)", Math.round(watching.perSecond), `${drainKnownMs.toFixed(1)} ms`, `${joinKnownMs.toFixed(1)} ms (from its start)`],
    ],
  ),
);
console.log(`polling / watching: ${ratio.toFixed(0)}x fewer bytes; goal (>= 50x, change known < 100 ms): ${ratio >= 50 && drainKnownMs < 100 ? "met" : "MISSED"}`);
mkdirSync(`${here}results`, { recursive: true });
writeFileSync(`${here}results/watch-${host.name}.json`, JSON.stringify({ bench: "watch", runtime: host.name, date: new Date().toISOString(), n: N, seconds: SECONDS, pollingBytesPerSecond: polling.perSecond, watchingBytesPerSecond: watching.perSecond, ratio, drainKnownMs, joinKnownMs }, null, 2) + "\n");
host.exit(0);
