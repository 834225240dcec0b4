/**
 * `npm run bench:warmup`: a fresh node joins three loaded nodes; each second,
 * its share of the client's calls against the configured ramp: weight
 * w(t) = floor + (1 - floor) * t / warmup, share = w / (3 + w).
 * Writes scripts/bench/results/warmup-<runtime>.json.
 *
 * Options (environment): BENCH_RATE (600 calls/s), BENCH_WARMUP_MS (10000), BENCH_FLOOR (0.1).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { warmupWeight } from "../../src/cluster/balancer.ts";
import { createClusterClient } from "../../src/cluster/client.ts";
import { demo } from "../../src/demo/demo.ts";
import { detectRuntime } from "../../src/runtime/detect.ts";
import { HOST_RUNNER, type NodeProcess, sendSignal, startNodeProcess } from "../../tests/helpers/process.ts";
import { table } from "./stats.ts";

const runtime = await detectRuntime();
const env = runtime.env();
const RATE = Number(env.BENCH_RATE ?? 600);
const WARMUP_MS = Number(env.BENCH_WARMUP_MS ?? 10_000);
const FLOOR = Number(env.BENCH_FLOOR ?? 0.1);
const here = decodeURIComponent(new URL(".", import.meta.url).pathname);
const FAST = { EBB_SWIM_PROBE_INTERVAL_MS: "200", EBB_SWIM_PROBE_TIMEOUT_MS: "100", EBB_SWIM_GOSSIP_INTERVAL_MS: "50" };

const procs: NodeProcess[] = [];
for (let i = 0; i < 3; i++) {
  const seeds = procs.map((p) => `127.0.0.1:${p.port}`).join(",");
  procs.push(await startNodeProcess(HOST_RUNNER, { ...FAST, EBB_NODE_ID: `w${i}`, ...(seeds ? { EBB_SEEDS: seeds } : {}) }));
}
const cluster = createClusterClient({ seeds: [`127.0.0.1:${procs[0]!.port}`], runtime, refreshMs: 50, warmupMs: WARMUP_MS, warmupFloor: FLOOR });
const api = cluster.client(demo);
await cluster.whenAvailable("demo", 3);
let sent = 0;
const load = setInterval(() => {
  for (let k = 0; k < RATE / 100; k++, sent++) void api.echo(sent).catch(() => undefined);
}, 10);
// The three first nodes finish their own warm-up (this client saw them ready just now) before the fresh one comes.
await new Promise((resolve) => setTimeout(resolve, WARMUP_MS + 1_000));
procs.push(await startNodeProcess(HOST_RUNNER, { ...FAST, EBB_NODE_ID: "fresh", EBB_SEEDS: `127.0.0.1:${procs[0]!.port}` }));
await cluster.whenAvailable("demo", 4);
const seenReady = Date.now();
const rows: { second: number; share: number; expected: number; error: number }[] = [];
let before = cluster.metrics().sentByNode;
for (let second = 0; second < Math.ceil(WARMUP_MS / 1000) + 2; second++) {
  await new Promise((resolve) => setTimeout(resolve, seenReady + (second + 1) * 1000 - Date.now()));
  const now = cluster.metrics().sentByNode;
  const delta = (id: string) => (now[id] ?? 0) - (before[id] ?? 0);
  const total = ["w0", "w1", "w2", "fresh"].reduce((sum, id) => sum + delta(id), 0);
  const share = delta("fresh") / total;
  const w = warmupWeight(seenReady, seenReady + (second + 0.5) * 1000, WARMUP_MS, FLOOR);
  const expected = w / (3 + w);
  rows.push({ second: second + 1, share, expected, error: (share - expected) / expected });
  before = now;
}
clearInterval(load);
cluster.close();
for (const proc of procs) {
  sendSignal(proc, "SIGTERM");
  await proc.exited;
}
const within = rows.slice(1).filter((r) => Math.abs(r.error) <= 0.1).length;
console.log(`\nwarm-up, ${runtime.name} ${runtime.version}: a fresh node joins 3 nodes under ${RATE} calls/s; ramp ${FLOOR} -> 1 over ${WARMUP_MS} ms`);
console.log(
  table(
    ["second", "fresh node's share", "formula w/(3+w)", "relative error"],
    rows.map((r) => [r.second, `${(r.share * 100).toFixed(1)}%`, `${(r.expected * 100).toFixed(1)}%`, `${(r.error * 100).toFixed(1)}%`]),
  ),
);
console.log(`after the first second: ${within} of ${rows.length - 1} seconds within ±10% of the formula`);
mkdirSync(`${here}results`, { recursive: true });
writeFileSync(`${here}results/warmup-${runtime.name}.json`, JSON.stringify({ bench: "warmup", runtime: runtime.name, date: new Date().toISOString(), rate: RATE, warmupMs: WARMUP_MS, floor: FLOOR, rows, within }, null, 2) + "\n");
runtime.exit(0);
