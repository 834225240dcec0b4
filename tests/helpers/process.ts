import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { detectRuntime } from "../../src/runtime/detect.ts";

/** The repository root. */
export const ROOT = decodeURIComponent(new URL("../..", import.meta.url).pathname);

/** How to start the reference node: on each runtime, and as the compiled binary (`npm run build`). */
export const RUNNERS = {
  bun: { command: `${ROOT}node_modules/.bin/bun`, args: ["src/main.ts"] },
  deno: { command: `${ROOT}node_modules/.bin/deno`, args: ["run", "--allow-net", "--allow-env", "src/main.ts"] },
  binary: { command: `${ROOT}dist/ebb`, args: [] },
} as const;

/** Membership timings five times faster than the defaults, so process tests see joins and deaths in a second or two. */
export const FAST_SWIM_ENV = {
  EBB_SWIM_PROBE_INTERVAL_MS: "200",
  EBB_SWIM_PROBE_TIMEOUT_MS: "100",
  EBB_SWIM_GOSSIP_INTERVAL_MS: "50",
  EBB_SWIM_SUSPICION_MULT: "3",
  EBB_SWIM_PUSH_PULL_INTERVAL_MS: "2000",
};

/** Every way the reference node runs; process tests loop over all of them. */
export const RUNNER_NAMES = Object.keys(RUNNERS) as RunnerName[];

export type RunnerName = keyof typeof RUNNERS;

/** The runner of this very process, to start nodes on the same runtime. */
export const HOST_RUNNER: "bun" | "deno" = await (async () => {
  const { name } = await detectRuntime();
  if (name === "memory") throw new Error("Node processes need a real runtime");
  return name;
})();

/** A reference node running in its own process. */
export interface NodeProcess {
  child: ChildProcess;
  /** JSON log lines from standard output. */
  lines: Record<string, unknown>[];
  stderr(): string;
  /** Calls `listener` with every log line from now on; returns the function that stops it. */
  onLine(listener: (line: Record<string, unknown>) => void): () => void;
  /** Resolves with the first log line that matches, or rejects if the process exits first. */
  waitForLine(match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** Resolves with the exit code (or 128 + signal number when killed). */
  exited: Promise<number>;
  /** The RPC port from the "listening" line. */
  port: number;
  /** The HTTP port from the "listening" line, when HTTP is on. */
  httpPort?: number;
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/** Where a node process runs: `netns` starts it inside that Linux network namespace (`ip netns exec`, root only; see tests/helpers/netns.ts). */
export interface PlaceOptions {
  netns?: string;
}

/** The `ip` command, for `ip netns exec`; undefined when iproute2 is missing. */
export const IP_COMMAND: string | undefined = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].find((path) => existsSync(path));

/** Spawns `src/main.ts` on a runtime with extra environment, and waits for its listening line. */
export async function startNodeProcess(runner: RunnerName, env: Record<string, string> = {}, args: string[] = [], place: PlaceOptions = {}): Promise<NodeProcess> {
  const { command, args: base } = RUNNERS[runner];
  if (place.netns === undefined) return startCommand(runner, command, [...base, ...args], env);
  if (!IP_COMMAND) throw new Error("ip (iproute2) is missing: cannot start a node in a network namespace");
  // `ip netns exec` execs the command in place, so the child's pid is the node's own (signals and /proc reach it).
  return startCommand(`${runner} in ${place.netns}`, IP_COMMAND, ["netns", "exec", place.netns, command, ...base, ...args], env);
}

/** `deno task serve`, as deno.json defines it (with its least permissions). */
export const DENO_TASK = { command: `${ROOT}node_modules/.bin/deno`, args: ["task", "--quiet", "serve"] };

/** Spawns `src/main.ts` on a runtime without waiting for anything. */
export function spawnNode(runner: RunnerName, env: Record<string, string> = {}, args: string[] = []): NodeProcess {
  const { command, args: base } = RUNNERS[runner];
  if (runner === "binary" && !existsSync(command)) throw new Error(`${command} is missing: run "npm run build" (npm test builds it)`);
  return spawnCommand(runner, command, [...base, ...args], env);
}

/** Starts any command that runs a node (such as `deno task serve`) and waits for its listening line. */
export async function startCommand(label: string, command: string, args: string[], env: Record<string, string> = {}): Promise<NodeProcess> {
  const proc = spawnCommand(label, command, args, { EBB_RPC_PORT: "0", EBB_HTTP_PORT: "auto", ...env });
  const listening = await proc.waitForLine((line) => typeof line.rpc === "string");
  proc.port = Number(String(listening.rpc).split(":").pop());
  if (typeof listening.http === "string") proc.httpPort = Number(listening.http.split(":").pop());
  return proc;
}

/** A child in the repository root with a minimal environment, piped output, and no standard input unless `stdin` is "pipe". */
function spawnQuiet(command: string, args: string[], env: Record<string, string>, stdin: "ignore" | "pipe" = "ignore"): ChildProcess {
  return spawn(command, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1", ...env },
    stdio: [stdin, "pipe", "pipe"],
  });
}

/** Spawns any command whose standard output is JSON lines (a node, or a benchmark baseline) without waiting. */
export function spawnCommand(runner: string, command: string, args: string[], env: Record<string, string>, stdin: "ignore" | "pipe" = "ignore"): NodeProcess {
  const child = spawnQuiet(command, args, env, stdin);
  const lines: Record<string, unknown>[] = [];
  let stderr = "";
  let waiters: { match: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void; reject: (e: Error) => void }[] = [];
  const listeners = new Set<(line: Record<string, unknown>) => void>();
  let buffered = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (text: string) => {
    buffered += text;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const raw = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(raw);
      } catch {
        line = { msg: raw, unparsed: true };
      }
      lines.push(line);
      for (const listener of listeners) listener(line);
      waiters = waiters.filter((w) => (w.match(line) ? (w.resolve(line), false) : true));
    }
  });
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => (stderr += text));
  // "exit" can come before the last of standard output has been read: wait for its end too
  // (bounded, since a grandchild may hold the pipe open after the child is gone).
  const outputEnded = new Promise<void>((resolve) => child.stdout!.once("end", () => resolve()));
  const exited = new Promise<number>((resolve) => {
    child.on("exit", async (code, signal) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([outputEnded, new Promise((done) => (timer = setTimeout(done, 2_000)))]);
      clearTimeout(timer);
      for (const w of waiters) w.reject(new Error(`${runner} node exited (${code ?? signal}) before the awaited line; stderr: ${stderr}`));
      waiters = [];
      resolve(code ?? 128 + (SIGNAL_NUMBERS[signal ?? ""] ?? 0));
    });
  });
  const proc: NodeProcess = {
    child,
    lines,
    stderr: () => stderr,
    exited,
    port: 0,
    onLine(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    waitForLine(match) {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      if (child.exitCode !== null || child.signalCode !== null) {
        return Promise.reject(new Error(`${runner} node already exited; stderr: ${stderr}`));
      }
      return new Promise((resolve, reject) => waiters.push({ match, resolve, reject }));
    },
  };
  return proc;
}

/** Kills a process if it is still running; for `finally` blocks. */
export async function stopProcess(proc: NodeProcess | undefined): Promise<void> {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill("SIGKILL");
  await proc.exited;
}

/**
 * Sends a real signal to a node process. Uses process.kill(pid) rather than
 * child.kill(): Deno's child_process then reports the signal as the cause of
 * exit even when the child handled it and exited 0 on its own.
 */
export function sendSignal(proc: NodeProcess, signal: "SIGTERM" | "SIGINT" | "SIGHUP" | "SIGKILL" | "SIGSTOP" | "SIGCONT"): void {
  process.kill(proc.child.pid!, signal);
}

/** What a command-line run printed, and its exit code. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A running `ebb <command>`: its process, what it printed so far, and its end. */
export interface CliRun {
  child: ChildProcess;
  /** Resolves once standard error matches `pattern`. */
  stderrMatches(pattern: RegExp): Promise<void>;
  done: Promise<CliResult>;
}

/** Starts `ebb <args>` on a runtime (or the binary) without waiting for it. */
export function startCli(runner: RunnerName, args: string[], env: Record<string, string> = {}): CliRun {
  const { command, args: base } = RUNNERS[runner];
  const child = spawnQuiet(command, [...base, ...args], env);
  let stdout = "";
  let stderr = "";
  let waiters: { pattern: RegExp; resolve: () => void }[] = [];
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (text: string) => (stdout += text));
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => {
    stderr += text;
    waiters = waiters.filter((w) => (w.pattern.test(stderr) ? (w.resolve(), false) : true));
  });
  const done = new Promise<CliResult>((resolve) => child.on("close", (code, signal) => resolve({ code: code ?? 128 + (SIGNAL_NUMBERS[signal ?? ""] ?? 0), stdout, stderr })));
  return {
    child,
    done,
    stderrMatches(pattern) {
      if (pattern.test(stderr)) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ pattern, resolve }));
    },
  };
}

/** Runs `ebb <args>` on a runtime (or the binary) to completion. */
export function runCli(runner: RunnerName, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return startCli(runner, args, env).done;
}

/** A node of a restart test: its runner, id and current process. */
export interface Slot {
  runner: RunnerName;
  id: string;
  proc: NodeProcess;
}

/** Keeps a test's load running for a while: the duration is the point, nothing is awaited. */
export function loadFor(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * How to run a fixture that calls `runNode` (`tests/fixtures/*.ts`): as a script on Bun or on Deno,
 * or compiled the way `npm run build` compiles ebb, into `dist/<name>` (built once per process).
 */
export function fixtureCommand(entry: string, runner: "bun" | "deno" | "binary"): { command: string; args: string[] } {
  if (runner === "bun") return { command: RUNNERS.bun.command, args: [entry] };
  if (runner === "deno") return { command: RUNNERS.deno.command, args: ["run", "--allow-net", "--allow-env", entry] };
  const outfile = `dist/${entry.split("/").pop()!.replace(/\.ts$/, "")}`;
  if (!compiled.has(outfile)) {
    const built = spawnSync(RUNNERS.bun.command, ["build", "--compile", "--bytecode", "--format=esm", entry, "--outfile", outfile], { cwd: ROOT, encoding: "utf8" });
    if (built.status !== 0) throw new Error(`bun build --compile ${entry} failed: ${built.stderr}`);
    compiled.add(outfile);
  }
  return { command: `${ROOT}${outfile}`, args: [] };
}
const compiled = new Set<string>();
