/**
 * `npm run bench:overload`: one node process offered twice what it can do. The work is
 * `demo.work` (2 ms of CPU in 1 ms slices, yielding between them, so concurrent calls share the
 * CPU). For each admission mode, on a fresh node: the unloaded p99 (one call at a time), the
 * capacity (calls/s with 8 at a time), then an open-model load at twice that capacity for 5 s,
 * each call with a 1 s deadline, over one connection (no retries): goodput (answered calls/s)
 * and the p99 of the answered calls. Modes: no limit (EBB_MAX_INFLIGHT=0, the baseline), a fixed
 * limit (EBB_MAX_INFLIGHT=64, a guess), adaptive (EBB_ADAPTIVE_CONCURRENCY=1). Goal for adaptive:
 * goodput >= 90% of capacity, p99 <= 5x the unloaded p99.
 * Writes scripts/bench/results/overload-<runtime>.json.
 *
 * Options (environment): BENCH_SECONDS (5), BENCH_WORK_MS (2).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { demo } from "../../src/demo/demo.ts";
import { Channel } from "../../src/rpc/channel.ts";
import { createClient } from "../../src/rpc/client.ts";
import { detectRuntime } from "../../src/runtime/detect.ts";
import { HOST_RUNNER, sendSignal, startNodeProcess } from "../../tests/helpers/process.ts";
import { quantile, table } from "./stats.ts";

const runtime = await detectRuntime();
const env = runtime.env();
const SECONDS = Number(env.BENCH_SECONDS ?? 5);
const WORK_MS = Number(env.BENCH_WORK_MS ?? 2);
const here = decodeURIComponent(new URL(".", import.meta.url).pathname);

type Api = ReturnType<typeof createClient<typeof demo>>;

/** `workers` calls at a time for `ms`: answered calls/s and their latencies. */
async function closed(api: Api, workers: number, ms: number): Promise<{ perSecond: number; latencies: number[] }> {
  const latencies: number[] = [];
  const end = performance.now() + ms;
  await Promise.all(Array.from({ length: workers }, async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      // A refusal (an adaptive limit below the workers) is not an answer: only answers count.
      if (await api.work({ ms: WORK_MS }).then(() => true, () => false)) latencies.push(performance.now() - t0);
    }
  }));
  return { perSecond: latencies.length / (ms / 1_000), latencies: latencies.sort((a, b) => a - b) };
}

/** `rate` calls a second for `seconds`, each on its own with a 1 s deadline: answered calls, their latencies, refusals. */
async function open(api: Api, rate: number, seconds: number) {
  const answered: number[] = [];
  const failed: Record<string, number> = {};
  const calls: Promise<void>[] = [];
  const started = performance.now();
  let sent = 0;
  while (performance.now() - started < seconds * 1_000) {
    const due = Math.floor(((performance.now() - started) / 1_000) * rate);
    for (; sent < due; sent++) {
      const t0 = performance.now();
      calls.push(api.work({ ms: WORK_MS }, { timeoutMs: 1_000 }).then(
        () => void answered.push(performance.now() - t0),
        (error: { code: string }) => void (failed[error.code] = (failed[error.code] ?? 0) + 1),
      ));
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await Promise.all(calls);
  answered.sort((a, b) => a - b);
  return { sent, goodput: answered.length / seconds, p99: quantile(answered, 0.99), failed };
}

const modes: { mode: string; env: Record<string, string> }[] = [
  { mode: "no limit (baseline)", env: { EBB_MAX_INFLIGHT: "0" } },
  { mode: "fixed limit 64", env: { EBB_MAX_INFLIGHT: "64" } },
  { mode: "adaptive", env: { EBB_ADAPTIVE_CONCURRENCY: "1" } },
];
const rows = [];
for (const { mode, env: nodeEnv } of modes) {
  const node = await startNodeProcess(HOST_RUNNER, { EBB_NODE_ID: "overload", ...nodeEnv });
  const channel = await Channel.connect(runtime, { host: "127.0.0.1", port: node.port });
  const api = createClient(demo, channel);
  await closed(api, 1, 500); // warm-up
  const unloaded = await closed(api, 1, 2_000);
  const capacity = await closed(api, 8, 3_000);
  const overload = await open(api, capacity.perSecond * 2, SECONDS);
  const limit = (await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text()).match(/^ebb_inflight_limit (\d+)/m)?.[1];
  channel.close();
  sendSignal(node, "SIGTERM");
  await node.exited;
  rows.push({ mode, unloadedP99: quantile(unloaded.latencies, 0.99), capacity: capacity.perSecond, ...overload, limitAfter: Number(limit) });
}

console.log(`\noverload, ${runtime.name} ${runtime.version}: one node, demo.work ${WORK_MS} ms of CPU, offered 2x its capacity for ${SECONDS} s (1 s deadlines, one connection, no retries)`);
console.log(
  table(
    ["admission", "capacity calls/s", "offered calls/s", "goodput calls/s", "goodput / capacity", "unloaded p99 ms", "answered p99 ms", "p99 / unloaded", "refused or failed", "limit after"],
    rows.map((r) => [r.mode, Math.round(r.capacity), Math.round(r.sent / SECONDS), Math.round(r.goodput), `${((r.goodput / r.capacity) * 100).toFixed(0)}%`, r.unloadedP99.toFixed(1), r.p99.toFixed(1), `${(r.p99 / r.unloadedP99).toFixed(1)}x`, JSON.stringify(r.failed), r.limitAfter]),
  ),
);
const adaptive = rows.at(-1)!;
console.log(`goal (adaptive: goodput >= 90% of capacity, p99 <= 5x unloaded): ${adaptive.goodput >= 0.9 * adaptive.capacity && adaptive.p99 <= 5 * adaptive.unloadedP99 ? "met" : "MISSED"}`);
mkdirSync(`${here}results`, { recursive: true });
writeFileSync(`${here}results/overload-${runtime.name}.json`, JSON.stringify({ bench: "overload", runtime: runtime.name, date: new Date().toISOString(), workMs: WORK_MS, seconds: SECONDS, rows }, null, 2) + "\n");
runtime.exit(0);
