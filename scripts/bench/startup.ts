/**
 * `npm run bench:startup`: how fast a node is ready to take traffic, and how
 * much memory it holds while idle, for the compiled binary (`dist/ebb`), for
 * `deno run` (with deno.json's least permissions) and, for reference, for
 * `bun src/main.ts`.
 *
 * Ready time: from just before exec to the first 200 from `GET /readyz` (polled
 * back to back once the node has printed its HTTP port). Idle memory: resident
 * set size (VmRSS in /proc, so Linux) one second after ready, with no traffic.
 * Budget (issue 6): ready in under 200 ms, idle under 80 MB.
 *
 * Each runner gets one discarded warm-up start (Deno compiles TypeScript into
 * its cache on a first run), then BENCH_RUNS (10) measured starts; medians are
 * reported. Writes scripts/bench/results/startup.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { type RunnerName, sendSignal, spawnNode, stopProcess } from "../../tests/helpers/process.ts";
import { median, table } from "./stats.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 10);
const BUDGET = { readyMs: 200, idleMb: 80 };
const RUNNERS: RunnerName[] = ["binary", "deno", "bun"];
const LABELS: Record<RunnerName, string> = { binary: "dist/ebb (bun build --compile)", deno: "deno run --allow-net --allow-env", bun: "bun src/main.ts (reference)" };
const here = decodeURIComponent(new URL(".", import.meta.url).pathname);

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function residentMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
  return kb / 1024;
}

async function startOnce(runner: RunnerName): Promise<{ readyMs: number; idleMb: number }> {
  const started = performance.now();
  const proc = spawnNode(runner, { EBB_RPC_PORT: "0", EBB_HTTP_PORT: "auto", EBB_LOG_FORMAT: "json" });
  try {
    const listening = await proc.waitForLine((l) => typeof l.http === "string");
    const url = `http://${String(listening.http)}/readyz`;
    let readyMs = 0;
    for (;;) {
      const response = await fetch(url);
      await response.body?.cancel();
      if (response.status === 200) {
        readyMs = performance.now() - started;
        break;
      }
    }
    await pause(1_000);
    const idleMb = residentMb(proc.child.pid!);
    sendSignal(proc, "SIGTERM");
    const code = await proc.exited;
    if (code !== 0) throw new Error(`${runner} exited ${code}: ${proc.stderr()}`);
    return { readyMs, idleMb };
  } finally {
    await stopProcess(proc);
  }
}

const results: Record<string, { label: string; readyMs: { median: number; min: number; max: number }; idleMb: { median: number; min: number; max: number }; runs: { readyMs: number; idleMb: number }[] }> = {};
for (const runner of RUNNERS) {
  await startOnce(runner);
  const runs: { readyMs: number; idleMb: number }[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await startOnce(runner));
  const ready = runs.map((r) => r.readyMs);
  const idle = runs.map((r) => r.idleMb);
  results[runner] = {
    label: LABELS[runner],
    readyMs: { median: median(ready), min: Math.min(...ready), max: Math.max(...ready) },
    idleMb: { median: median(idle), min: Math.min(...idle), max: Math.max(...idle) },
    runs,
  };
}

const rows = RUNNERS.map((runner) => {
  const r = results[runner]!;
  const ok = r.readyMs.median < BUDGET.readyMs && r.idleMb.median < BUDGET.idleMb;
  return [
    r.label,
    `${r.readyMs.median.toFixed(0)} ms`,
    `${r.readyMs.min.toFixed(0)}–${r.readyMs.max.toFixed(0)} ms`,
    `${r.idleMb.median.toFixed(1)} MB`,
    runner === "bun" ? "(reference)" : ok ? "within budget" : "OVER BUDGET",
  ];
});
console.log(`startup: exec -> /readyz 200, and idle RSS 1 s after ready; median of ${RUNS} starts after one warm-up (budget < ${BUDGET.readyMs} ms, < ${BUDGET.idleMb} MB)\n`);
console.log(table(["runner", "ready (median)", "ready (min–max)", "idle RSS (median)", "budget"], rows));
mkdirSync(`${here}results`, { recursive: true });
writeFileSync(`${here}results/startup.json`, `${JSON.stringify({ date: new Date().toISOString(), runs: RUNS, budget: BUDGET, results }, null, 2)}\n`);
