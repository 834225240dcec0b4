/**
 * `npm run bench:tail`: the cluster client on bad days, each guard off (the baseline) and on in
 * the same run, against real node processes of this runtime:
 * - every one of 4 nodes refusing every call (OVERLOADED, processed false: EBB_DEMO_FAIL=overloaded):
 *   sends per call made, without and with the retry budget (goal with it: <= 1.2);
 * - one of 4 nodes failing every call (INTERNAL: EBB_DEMO_FAIL=internal): failed calls per 10,000,
 *   without and with outlier ejection (goal: >= 20x fewer with it).
 * Writes scripts/bench/results/tail-<runtime>.json.
 *
 * Options (environment): BENCH_CALLS (10000 per run), BENCH_INFLIGHT (32), BENCH_ROUNDS (3).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { type ClusterClientOptions, createClusterClient } from "../../src/cluster/client.ts";
import { demo } from "../../src/demo/demo.ts";
import { detectRuntime } from "../../src/runtime/detect.ts";
import { HOST_RUNNER, type NodeProcess, sendSignal, startNodeProcess } from "../../tests/helpers/process.ts";
import { median, table } from "./stats.ts";

const runtime = await detectRuntime();
const env = runtime.env();
const CALLS = Number(env.BENCH_CALLS ?? 10_000);
const INFLIGHT = Number(env.BENCH_INFLIGHT ?? 32);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const here = decodeURIComponent(new URL(".", import.meta.url).pathname);

/** Four nodes of this runtime, the first `failing` of them with EBB_DEMO_FAIL=`mode`. */
async function startNodes(failing: number, mode: "internal" | "overloaded"): Promise<NodeProcess[]> {
  return Promise.all(Array.from({ length: 4 }, (_, i) => startNodeProcess(HOST_RUNNER, { EBB_NODE_ID: `tail${i}`, EBB_DEMO_FAIL: i < failing ? mode : "none" })));
}

/** CALLS calls of demo.echo, INFLIGHT at a time, through a fresh client with `options`: sends and failures. */
async function run(procs: NodeProcess[], options: Partial<ClusterClientOptions>): Promise<{ calls: number; failed: number; sent: number; ms: number }> {
  const client = createClusterClient({ runtime, addresses: procs.map((p) => `127.0.0.1:${p.port}`), warmupMs: 0, ...options });
  const api = client.client(demo);
  let next = 0;
  let failed = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: INFLIGHT }, async () => {
    while (next < CALLS) {
      next++;
      await api.echo(next).catch(() => failed++);
    }
  }));
  const ms = performance.now() - started;
  const sent = Object.values(client.metrics().sentByNode).reduce((a, b) => a + b, 0);
  client.close();
  return { calls: CALLS, failed, sent, ms };
}

async function stop(procs: NodeProcess[]): Promise<void> {
  for (const proc of procs) sendSignal(proc, "SIGTERM");
  await Promise.all(procs.map((p) => p.exited));
}

type Row = { scenario: string; guard: "off" | "on"; calls: number; failed: number; sent: number; ms: number };
const rows: Row[] = [];

// Every node refusing: the budget. Its floor (10 a second over 10 s) is a hundred retries, so the
// runs are long enough for the share of calls (10%) to dominate, as it does under real load.
let procs = await startNodes(4, "overloaded");
for (let r = 0; r < ROUNDS; r++) {
  rows.push({ scenario: "every node OVERLOADED", guard: "off", ...(await run(procs, { retryBudget: false })) });
  rows.push({ scenario: "every node OVERLOADED", guard: "on", ...(await run(procs, {})) });
}
await stop(procs);

// One node failing: ejection (a fresh client per run: each starts with no ejections).
procs = await startNodes(1, "internal");
for (let r = 0; r < ROUNDS; r++) {
  rows.push({ scenario: "1 of 4 nodes INTERNAL", guard: "off", ...(await run(procs, { outlierEjection: false })) });
  rows.push({ scenario: "1 of 4 nodes INTERNAL", guard: "on", ...(await run(procs, {})) });
}
await stop(procs);

const of = (scenario: string, guard: "off" | "on") => rows.filter((r) => r.scenario === scenario && r.guard === guard);
const sendsPerCall = (guard: "off" | "on") => median(of("every node OVERLOADED", guard).map((r) => r.sent / r.calls));
const failedPer10k = (guard: "off" | "on") => median(of("1 of 4 nodes INTERNAL", guard).map((r) => (r.failed / r.calls) * 10_000));
const budget = { off: sendsPerCall("off"), on: sendsPerCall("on") };
const ejection = { off: failedPer10k("off"), on: failedPer10k("on") };

console.log(`\ntail, ${runtime.name} ${runtime.version}: 4 nodes, ${CALLS} calls of demo.echo per run, ${INFLIGHT} in flight, median of ${ROUNDS} runs`);
console.log(
  table(
    ["scenario", "measure", "guard off (baseline)", "guard on", "goal"],
    [
      ["every node OVERLOADED", "sends per call (retry budget)", budget.off.toFixed(2), budget.on.toFixed(2), "<= 1.2"],
      ["1 of 4 nodes INTERNAL", "failed per 10,000 (outlier ejection)", ejection.off.toFixed(0), ejection.on.toFixed(0), ">= 20x fewer"],
    ],
  ),
);
console.log(`budget: ${budget.on <= 1.2 ? "met" : "MISSED"}; ejection: ${(ejection.off / Math.max(ejection.on, 1)).toFixed(0)}x fewer failures, ${ejection.off >= 20 * Math.max(ejection.on, 1) ? "met" : "MISSED"}`);
mkdirSync(`${here}results`, { recursive: true });
writeFileSync(`${here}results/tail-${runtime.name}.json`, JSON.stringify({ bench: "tail", runtime: runtime.name, date: new Date().toISOString(), calls: CALLS, inflight: INFLIGHT, rounds: rows, budget, ejection }, null, 2) + "\n");
runtime.exit(0);
