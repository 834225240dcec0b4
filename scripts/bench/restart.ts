/**
 * `npm run bench:restart`: three nodes under constant-rate load through the
 * cluster client, restarted one by one, twice. Run twice: ebb's graceful
 * drain (baffle, $goaway, counter), then plain nodes that die on SIGTERM.
 * Prints calls, failures, transparent retries and latency (steady vs during
 * restarts); writes scripts/bench/results/restart-<runtime>.json.
 *
 * Options (environment): BENCH_RATE (300 calls/s), BENCH_ROUNDS (2).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { createClusterClient } from "../../src/cluster/client.ts";
import { demo } from "../../src/demo/demo.ts";
import { BENCH_SWITCHES } from "../../src/demo/switches.ts";
import { detectRuntime } from "../../src/runtime/detect.ts";
import { HOST_RUNNER, type NodeProcess, sendSignal, startNodeProcess, stopProcess } from "../../tests/helpers/process.ts";
import { quantile, table } from "./stats.ts";

const runtime = await detectRuntime();
const env = runtime.env();
const RATE = Number(env.BENCH_RATE ?? 300);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 2);
const here = decodeURIComponent(new URL(".", import.meta.url).pathname);
const runner = HOST_RUNNER;
const FAST = { EBB_SWIM_PROBE_INTERVAL_MS: "200", EBB_SWIM_PROBE_TIMEOUT_MS: "100", EBB_SWIM_GOSSIP_INTERVAL_MS: "50" };

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface RunResult {
  mode: string;
  calls: number;
  failed: number;
  failuresByCode: Record<string, number>;
  retries: Record<string, number>;
  steady: { p50: number; p99: number; max: number };
  restarting: { p50: number; p99: number; max: number };
}

async function run(plain: boolean): Promise<RunResult> {
  const extra: Record<string, string> = plain ? { [BENCH_SWITCHES.plainShutdown.name]: "1" } : {};
  const procs: NodeProcess[] = [];
  const start = async (i: number, seeds: string[]) => {
    const proc = await startNodeProcess(runner, { ...FAST, ...extra, EBB_NODE_ID: `b${i}`, ...(seeds.length ? { EBB_SEEDS: seeds.join(",") } : {}) });
    await proc.waitForLine((l) => l.state === "ready");
    return proc;
  };
  for (let i = 0; i < 3; i++) procs.push(await start(i, procs.map((p) => `127.0.0.1:${p.port}`)));
  const cluster = createClusterClient({ seeds: procs.map((p) => `127.0.0.1:${p.port}`), runtime, idempotentRetries: false, refreshMs: 200, warmupMs: 1_000 });
  const api = cluster.client(demo);
  await cluster.whenAvailable("demo", 3);
  const samples: { at: number; ms: number }[] = [];
  const failures: Record<string, number> = {};
  const windows: [number, number][] = [];
  let sent = 0;
  let settled = 0;
  const load = setInterval(() => {
    for (let k = 0; k < RATE / 50; k++) {
      const roll = (sent * 7919) % 100;
      const ms = roll < 70 ? 1 : roll < 95 ? 50 : 500;
      sent++;
      const t0 = performance.now();
      api.sleep({ ms }, { timeoutMs: 5_000 }).then(
        () => samples.push({ at: Date.now(), ms: performance.now() - t0 }),
        (error: { code?: string }) => (failures[error.code ?? "?"] = (failures[error.code ?? "?"] ?? 0) + 1),
      ).finally(() => settled++);
    }
  }, 20);
  try {
    await pause(3_000);
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < procs.length; i++) {
        const began = Date.now();
        sendSignal(procs[i]!, "SIGTERM");
        await procs[i]!.exited;
        procs[i] = await start(i, procs.filter((_, j) => j !== i).map((p) => `127.0.0.1:${p.port}`));
        windows.push([began, Date.now()]);
      }
    }
    await pause(2_000);
  } finally {
    clearInterval(load);
  }
  const drainedBy = Date.now() + 6_000;
  while (settled < sent && Date.now() < drainedBy) await pause(50);
  const metrics = cluster.metrics();
  cluster.close();
  for (const proc of procs) {
    sendSignal(proc, "SIGTERM");
    await proc.exited;
    await stopProcess(proc);
  }
  const inWindow = (at: number) => windows.some(([a, b]) => at >= a && at <= b + 500);
  const summarize = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted[sorted.length - 1] ?? Number.NaN };
  };
  return {
    mode: plain ? "plain (dies on SIGTERM)" : "ebb (graceful drain)",
    calls: sent,
    failed: Object.values(failures).reduce((a, b) => a + b, 0),
    failuresByCode: failures,
    retries: metrics.retries,
    steady: summarize(samples.filter((s) => !inWindow(s.at)).map((s) => s.ms)),
    restarting: summarize(samples.filter((s) => inWindow(s.at)).map((s) => s.ms)),
  };
}

const results = [await run(false), await run(true)];
const f = (n: number) => n.toFixed(1);
console.log(`\nrestart, ${runtime.name} ${runtime.version}: 3 nodes, ${RATE} calls/s open-model (70% 1 ms, 25% 50 ms, 5% 500 ms), ${ROUNDS} rounds of rolling restarts`);
console.log(
  table(
    ["nodes", "calls", "failed", "retries", "p50 / p99 / max steady (ms)", "p50 / p99 / max restarting (ms)"],
    results.map((r) => [
      r.mode,
      r.calls,
      `${r.failed}${r.failed ? ` ${JSON.stringify(r.failuresByCode)}` : ""}`,
      JSON.stringify(r.retries),
      `${f(r.steady.p50)} / ${f(r.steady.p99)} / ${f(r.steady.max)}`,
      `${f(r.restarting.p50)} / ${f(r.restarting.p99)} / ${f(r.restarting.max)}`,
    ]),
  ),
);
mkdirSync(`${here}results`, { recursive: true });
writeFileSync(`${here}results/restart-${runtime.name}.json`, JSON.stringify({ bench: "restart", runtime: runtime.name, date: new Date().toISOString(), rate: RATE, rounds: ROUNDS, results }, null, 2) + "\n");
console.log(`wrote ${here}results/restart-${runtime.name}.json`);
runtime.exit(0);
