/**
 * `npm run bench:cluster`: calls/s and latency through the cluster client
 * against three nodes, next to a direct single-connection client to one of
 * them, in the same run. 64 calls in flight, `demo.echo` of a small map.
 * Writes scripts/bench/results/cluster-<runtime>.json.
 *
 * Options (environment): BENCH_SECONDS (3), BENCH_INFLIGHT (64), BENCH_ROUNDS (3).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { createClusterClient } from "../../src/cluster/client.ts";
import { demo } from "../../src/demo/demo.ts";
import { Channel } from "../../src/rpc/channel.ts";
import { createClient } from "../../src/rpc/client.ts";
import { detectRuntime } from "../../src/runtime/detect.ts";
import { HOST_RUNNER, type NodeProcess, sendSignal, startNodeProcess } from "../../tests/helpers/process.ts";
import { median, quantile, table } from "./stats.ts";

const runtime = await detectRuntime();
const env = runtime.env();
const SECONDS = Number(env.BENCH_SECONDS ?? 3);
const INFLIGHT = Number(env.BENCH_INFLIGHT ?? 64);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const PAYLOAD = { id: 12345, name: "bench", tags: ["a", "b", "c"], ok: true };
const here = decodeURIComponent(new URL(".", import.meta.url).pathname);

async function drive(call: () => Promise<unknown>, seconds: number): Promise<{ perSecond: number; p50: number; p99: number }> {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: INFLIGHT }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        await call();
        latencies.push(performance.now() - t0);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { perSecond: latencies.length / ((performance.now() - started) / 1000), p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99) };
}

const procs: NodeProcess[] = [];
for (let i = 0; i < 3; i++) {
  const seeds = procs.map((p) => `127.0.0.1:${p.port}`).join(",");
  procs.push(await startNodeProcess(HOST_RUNNER, { EBB_NODE_ID: `k${i}`, EBB_HTTP_PORT: "0", ...(seeds ? { EBB_SEEDS: seeds } : {}) }));
}
const cluster = createClusterClient({ seeds: [`127.0.0.1:${procs[0]!.port}`], runtime, warmupMs: 0 });
const viaCluster = cluster.client(demo);
await cluster.whenAvailable("demo", 3);
const channel = await Channel.connect(runtime, { host: "127.0.0.1", port: procs[0]!.port });
const direct = createClient(demo, channel);

const rounds: { mode: string; perSecond: number; p50: number; p99: number }[] = [];
await drive(() => direct.echo(PAYLOAD), 0.5);
await drive(() => viaCluster.echo(PAYLOAD), 0.5);
for (let r = 0; r < ROUNDS; r++) {
  rounds.push({ mode: "direct", ...(await drive(() => direct.echo(PAYLOAD), SECONDS)) });
  rounds.push({ mode: "cluster", ...(await drive(() => viaCluster.echo(PAYLOAD), SECONDS)) });
}
const spread = cluster.metrics().sentByNode;
channel.close();
cluster.close();
for (const proc of procs) {
  sendSignal(proc, "SIGTERM");
  await proc.exited;
}
const summary = (mode: string) => {
  const of = rounds.filter((r) => r.mode === mode);
  return { perSecond: median(of.map((r) => r.perSecond)), p50: median(of.map((r) => r.p50)), p99: median(of.map((r) => r.p99)) };
};
const d = summary("direct");
const c = summary("cluster");
console.log(`\ncluster, ${runtime.name} ${runtime.version}: ${INFLIGHT} in flight, demo.echo, median of ${ROUNDS} rounds of ${SECONDS} s (client and 3 nodes share 2 cores)`);
console.log(
  table(
    ["client", "calls/s", "p50 ms", "p99 ms"],
    [
      ["direct, 1 connection to 1 node", Math.round(d.perSecond), d.p50.toFixed(3), d.p99.toFixed(3)],
      ["cluster client, 3 nodes", Math.round(c.perSecond), c.p50.toFixed(3), c.p99.toFixed(3)],
    ],
  ),
);
console.log(`cluster / direct: ${((c.perSecond / d.perSecond) * 100).toFixed(1)}%; calls per node: ${JSON.stringify(spread)}`);
mkdirSync(`${here}results`, { recursive: true });
writeFileSync(`${here}results/cluster-${runtime.name}.json`, JSON.stringify({ bench: "cluster", runtime: runtime.name, date: new Date().toISOString(), inflight: INFLIGHT, rounds, direct: d, cluster: c, spread }, null, 2) + "\n");
runtime.exit(0);
