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
 * Baseline, in the same run: scripts/bench/startup-bare.ts, the runtime's own
 * HTTP server answering 200 with nothing else loaded, started the same way
 * (compiled with `bun build --compile` into dist/startup-bare for the binary
 * row), so the table shows what ebb itself adds to the runtime's start.
 *
 * Each runner gets one discarded warm-up start (Deno compiles TypeScript into
 * its cache on a first run), then BENCH_RUNS (10) measured starts; medians are
 * reported. Writes scripts/bench/results/startup.json.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { type NodeProcess, ROOT, RUNNERS, type RunnerName, sendSignal, spawnCommand, spawnNode, stopProcess } from "../../tests/helpers/process.ts";
import { residentBytes } from "./cpu.ts";
import { median, table } from "./stats.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 10);
const BUDGET = { readyMs: 200, idleMb: 80 };
const RUNNERS_MEASURED: RunnerName[] = ["binary", "deno", "bun"];
const LABELS: Record<RunnerName, string> = { binary: "dist/ebb (bun build --compile --bytecode)", deno: "deno run --allow-net --allow-env", bun: "bun src/main.ts (reference)" };
const here = decodeURIComponent(new URL(".", import.meta.url).pathname);

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function residentMb(pid: number): number {
  return (residentBytes(pid) ?? Number.NaN) / (1024 * 1024);
}

/** How to start the baseline on each runner. */
const BARE: Record<RunnerName, { command: string; args: string[] }> = {
  binary: { command: `${ROOT}dist/startup-bare`, args: [] },
  deno: { command: RUNNERS.deno.command, args: ["run", "--allow-net", "--allow-env", "scripts/bench/startup-bare.ts"] },
  bun: { command: RUNNERS.bun.command, args: ["scripts/bench/startup-bare.ts"] },
};

async function startOnce(runner: RunnerName, bare: boolean): Promise<Run> {
  const started = performance.now();
  const proc: NodeProcess = bare
    ? spawnCommand(`${runner} baseline`, BARE[runner].command, BARE[runner].args, {})
    : spawnNode(runner, { EBB_RPC_PORT: "0", EBB_HTTP_PORT: "auto", EBB_LOG_FORMAT: "json" });
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

interface Run {
  readyMs: number;
  idleMb: number;
}

interface Summary {
  readyMs: { median: number; min: number; max: number };
  idleMb: { median: number; min: number; max: number };
  runs: Run[];
}

async function measure(runner: RunnerName, bare: boolean): Promise<Summary> {
  await startOnce(runner, bare);
  const runs: Run[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await startOnce(runner, bare));
  const ready = runs.map((r) => r.readyMs);
  const idle = runs.map((r) => r.idleMb);
  return {
    readyMs: { median: median(ready), min: Math.min(...ready), max: Math.max(...ready) },
    idleMb: { median: median(idle), min: Math.min(...idle), max: Math.max(...idle) },
    runs,
  };
}

// Compiled with the flags of `npm run build` (bytecode included), for a like-for-like row.
const buildFlags = (JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as { scripts: { build: string } }).scripts.build.split(" ").filter((word) => word.startsWith("--") && word !== "--outfile");
const built = spawnSync(RUNNERS.bun.command, ["build", ...buildFlags, "scripts/bench/startup-bare.ts", "--outfile", "dist/startup-bare"], { cwd: ROOT, encoding: "utf8" });
if (built.status !== 0) throw new Error(`building the baseline failed: ${built.stderr}`);

const results: Record<string, { label: string; ebb: Summary; baseline: Summary }> = {};
for (const runner of RUNNERS_MEASURED) {
  // Alternate baseline and ebb per runner, so drift on a shared machine hits both.
  const baseline = await measure(runner, true);
  const ebb = await measure(runner, false);
  results[runner] = { label: LABELS[runner], ebb, baseline };
}

const rows = RUNNERS_MEASURED.map((runner) => {
  const { label, ebb, baseline } = results[runner]!;
  const ok = ebb.readyMs.median < BUDGET.readyMs && ebb.idleMb.median < BUDGET.idleMb;
  return [
    label,
    `${baseline.readyMs.median.toFixed(0)} ms`,
    `${ebb.readyMs.median.toFixed(0)} ms (${ebb.readyMs.min.toFixed(0)}–${ebb.readyMs.max.toFixed(0)})`,
    `+${(ebb.readyMs.median - baseline.readyMs.median).toFixed(0)} ms`,
    `${baseline.idleMb.median.toFixed(1)} MB`,
    `${ebb.idleMb.median.toFixed(1)} MB`,
    runner === "bun" ? "(reference)" : ok ? "within budget" : "OVER BUDGET",
  ];
});
console.log(`startup: exec -> /readyz 200, and idle RSS 1 s after ready; median of ${RUNS} starts after one warm-up (budget < ${BUDGET.readyMs} ms, < ${BUDGET.idleMb} MB)`);
console.log("baseline: the runtime's own HTTP server answering 200, nothing else loaded (scripts/bench/startup-bare.ts)\n");
console.log(table(["runner", "baseline ready", "ebb ready (min–max)", "ebb adds", "baseline RSS", "ebb RSS", "budget"], rows));
mkdirSync(`${here}results`, { recursive: true });
writeFileSync(`${here}results/startup.json`, `${JSON.stringify({ date: new Date().toISOString(), runs: RUNS, budget: BUDGET, results }, null, 2)}\n`);
