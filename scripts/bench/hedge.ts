/**
 * `npm run bench:hedge`: one of 4 node processes frozen (SIGSTOP) for 3 s, as a GC pause or a stuck
 * disk would freeze it, under an open-model load of `demo.sleep` 10 ms calls (idempotent) through
 * the cluster client: latency (p50, p99, p99.9, max) and failures, hedging off (the baseline) and
 * on, in the same run. Goal with hedging: max under 250 ms, 0 failed.
 * Writes scripts/bench/results/hedge-<runtime>.json.
 *
 * Options (environment): BENCH_RATE (400 calls/s), BENCH_ROUNDS (1).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { type ClusterClientOptions, createClusterClient } from "../../src/cluster/client.ts";
import { demo } from "../../src/demo/demo.ts";
import { detectRuntime } from "../../src/runtime/detect.ts";
import { HOST_RUNNER, type NodeProcess, sendSignal, startNodeProcess } from "../../tests/helpers/process.ts";
import { median, quantile, table } from "./stats.ts";

const runtime = await detectRuntime();
const env = runtime.env();
const RATE = Number(env.BENCH_RATE ?? 400);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 1);
const TICK_MS = 5;
const here = decodeURIComponent(new URL(".", import.meta.url).pathname);

const procs: NodeProcess[] = await Promise.all(Array.from({ length: 4 }, (_, i) => startNodeProcess(HOST_RUNNER, { EBB_NODE_ID: `hedge${i}` })));
const addresses = procs.map((p) => `127.0.0.1:${p.port}`);

/** Sends RATE calls a second for `ms`, each on its own (open model); resolves with every call's latency and the failures. */
async function load(api: ReturnType<ReturnType<typeof createClusterClient>["client"]>, ms: number, latencies: number[], failures: string[]): Promise<void> {
  const calls: Promise<void>[] = [];
  const started = performance.now();
  let sent = 0;
  while (performance.now() - started < ms) {
    const due = Math.floor(((performance.now() - started) / 1_000) * RATE);
    for (; sent < due; sent++) {
      const t0 = performance.now();
      calls.push((api as { sleep(input: { ms: number }): Promise<unknown> }).sleep({ ms: 10 }).then(
        () => void latencies.push(performance.now() - t0),
        (error: { code?: string }) => void failures.push(error.code ?? String(error)),
      ));
    }
    await new Promise((resolve) => setTimeout(resolve, TICK_MS));
  }
  await Promise.all(calls);
}

/** One run: 2 s warm, then one node frozen for 3 s amid 4 s of load, then 1 s after. */
async function run(options: Partial<ClusterClientOptions>, frozen: NodeProcess) {
  const client = createClusterClient({ runtime, addresses, warmupMs: 0, ...options });
  const api = client.client(demo);
  const warm: number[] = [];
  await load(api, 2_000, warm, []);
  const latencies: number[] = [];
  const failures: string[] = [];
  const loading = load(api, 4_000, latencies, failures);
  await new Promise((resolve) => setTimeout(resolve, 500));
  sendSignal(frozen, "SIGSTOP");
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  sendSignal(frozen, "SIGCONT");
  await loading;
  const { hedges, hedgesWon } = client.metrics();
  client.close();
  latencies.sort((a, b) => a - b);
  return { calls: latencies.length + failures.length, failed: failures.length, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), p999: quantile(latencies, 0.999), max: latencies.at(-1) ?? NaN, hedges, hedgesWon };
}

const rows: ({ hedging: "off" | "on" } & Awaited<ReturnType<typeof run>>)[] = [];
for (let r = 0; r < ROUNDS; r++) {
  rows.push({ hedging: "off", ...(await run({}, procs[r % 4]!)) });
  rows.push({ hedging: "on", ...(await run({ hedging: {} }, procs[(r + 1) % 4]!)) });
}
for (const proc of procs) sendSignal(proc, "SIGTERM");
await Promise.all(procs.map((p) => p.exited));

const summary = (mode: "off" | "on") => {
  const of = rows.filter((r) => r.hedging === mode);
  const m = (key: "p50" | "p99" | "p999" | "max" | "failed" | "calls" | "hedges" | "hedgesWon") => median(of.map((r) => r[key]));
  return { calls: m("calls"), failed: m("failed"), p50: m("p50"), p99: m("p99"), p999: m("p999"), max: m("max"), hedges: m("hedges"), hedgesWon: m("hedgesWon") };
};
const off = summary("off");
const on = summary("on");
console.log(`\nhedge, ${runtime.name} ${runtime.version}: 4 nodes, ${RATE} calls/s of demo.sleep 10 ms (open model), one node SIGSTOPped for 3 s; median of ${ROUNDS} run(s)`);
console.log(
  table(
    ["hedging", "calls", "failed", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "hedges (won)"],
    [off, on].map((s, i) => [i === 0 ? "off (baseline)" : "on", s.calls, s.failed, s.p50.toFixed(1), s.p99.toFixed(1), s.p999.toFixed(1), s.max.toFixed(1), `${s.hedges} (${s.hedgesWon})`]),
  ),
);
console.log(`goal (max < 250 ms, 0 failed): ${on.max < 250 && on.failed === 0 ? "met" : "MISSED"}`);
mkdirSync(`${here}results`, { recursive: true });
writeFileSync(`${here}results/hedge-${runtime.name}.json`, JSON.stringify({ bench: "hedge", runtime: runtime.name, date: new Date().toISOString(), rate: RATE, rows, off, on }, null, 2) + "\n");
runtime.exit(0);
