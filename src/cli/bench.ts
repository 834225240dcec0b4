import { z } from "zod";
import { type ClusterClient, createClusterClient, serviceOf } from "../cluster/client.ts";
import { RpcError } from "../rpc/errors.ts";
import type { Runtime } from "../runtime/types.ts";
import { defineCommand, duration, jsonText, UsageError, wholeNumber } from "./command.ts";
import { Histogram } from "./histogram.ts";
import { formatCount, renderTable } from "./table.ts";
import { errorLines } from "./call.ts";
import { clientRuntime, clusterOptions, httpPortHint, resolveTarget, TARGET_OPTIONS, targetFlags } from "./target.ts";

/** In `--rate` mode, calls due while this many are in flight are skipped and counted, not queued without end. */
const MAX_INFLIGHT = 10_000;
const DEFAULT_CONCURRENCY = 16;
/** Codes every further call would get too: the bench stops at the first, rather than send failing calls for the whole run. */
const HOPELESS_CODES: ReadonlySet<string> = new Set(["METHOD_NOT_FOUND", "INVALID_PARAMS", "UNAUTHENTICATED"]);
/** How long a cluster that answers gets to show a node offering the method's service. */
const SERVICE_WAIT_MS = 1_000;

/** What `ebb bench` measured; also its `--json` output. */
export interface BenchSummary {
  method: string;
  target: string;
  mode: "rate" | "concurrency";
  rate?: number;
  concurrency?: number;
  durationMs: number;
  calls: number;
  ok: number;
  errors: Record<string, number>;
  /** Calls due in `--rate` mode but not sent because MAX_INFLIGHT were in flight. */
  skipped: number;
  callsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  /** The cluster client's transparent retries, by reason. */
  retries: Record<string, number>;
  /** Calls sent to each node (retries included). */
  nodes: Record<string, number>;
  /** True when SIGINT ended the run before `--duration`. */
  interrupted: boolean;
  /** The code that ended the run early because no retry could fix it (METHOD_NOT_FOUND, INVALID_PARAMS, UNAUTHENTICATED), or a node's HTTP port given as its RPC port. */
  stoppedBy?: string;
}

/** `ebb bench`: constant-rate or fixed-concurrency load through the cluster client. */
export const benchCommand = defineCommand({
  name: "bench",
  summary: "load a cluster through the cluster client; report calls/s, errors and latency",
  usage: ["bench [--seeds host:port,... | --addr host:port] [--rate n | --concurrency n] [--duration 10s]", "bench --method demo.sleep --input '{\"ms\":50}' --rate 200 --json"],
  options: {
    ...TARGET_OPTIONS,
    method: { type: "string", value: "name", description: "method to call (default demo.echo)" },
    input: { type: "string", value: "json", description: 'input of every call (default {"hello":"ebb"})' },
    rate: { type: "string", value: "calls/s", description: "open model: start this many calls per second, whatever their latency" },
    concurrency: { type: "string", value: "n", description: `closed model: keep n calls in flight (default ${DEFAULT_CONCURRENCY})` },
    duration: { type: "string", value: "time", description: "how long to send: 500ms, 10s, 2m, 1h (default 10s)" },
    timeout: { type: "string", value: "ms", description: "deadline of each call (default 10000)" },
    json: { type: "boolean", description: "print the summary as JSON instead of a table" },
  },
  flags: z.object({
    ...targetFlags,
    method: z.string().min(1).default("demo.echo"),
    input: jsonText.optional(),
    rate: wholeNumber(1).optional(),
    concurrency: wholeNumber(1).optional(),
    duration: duration.default(10_000),
    timeout: wholeNumber(1).default(10_000),
    json: z.boolean().default(false),
  }),
  details: `Progress goes to standard error: one line rewritten in place on a terminal, a plain line
every second otherwise. The summary goes to standard output. SIGINT ends the run early
and still prints the summary (a second SIGINT quits at once, exit 130). Exits 0 when every
call succeeded, 1 when any failed. Calls that no retry can fix (METHOD_NOT_FOUND,
INVALID_PARAMS, UNAUTHENTICATED) end the run at the first, with the error; so do a
node's HTTP port given for its RPC port, a cluster where no node offers the method's
service (within a second), and one where no node answers within --duration.`,
  async run(runtime, flags) {
    if (flags.rate !== undefined && flags.concurrency !== undefined) throw new UsageError("Give --rate or --concurrency, not both");
    const env = runtime.env();
    const target = resolveTarget(flags, env);
    const client = clientRuntime(runtime, env);
    const cluster = createClusterClient({ ...clusterOptions(target, env), runtime: client, timeoutMs: flags.timeout });
    const unreachable = await reach(cluster, serviceOf(flags.method), flags.duration);
    if (unreachable) {
      cluster.close();
      const hint = unreachable.code === "UNAVAILABLE" ? await httpPortHint(client, target) : undefined;
      runtime.write("stderr", `${unreachable.code}: ${unreachable.rawMessage} (${target.label})\n${hint ? `${hint}\n` : ""}`);
      return 1;
    }
    const input = flags.input === undefined ? { hello: "ebb" } : flags.input;
    let hint: string | undefined;
    let probed = false;
    const load: Load = new Load(runtime, () => cluster.call(flags.method, input), !runtime.isTerminal("stderr"), (error) => {
      if (HOPELESS_CODES.has(error.code)) return load.stop(error);
      // Nothing answered yet: it may be a node's HTTP port, where every call would fail alike.
      if (error.code !== "UNAVAILABLE" || load.ok > 0 || probed) return;
      probed = true;
      void httpPortHint(client, target).then((found) => {
        if (!found || load.ok > 0) return;
        hint = found;
        load.stop(error);
      });
    });
    // The first SIGINT ends the run with a summary; a second one (calls stuck until their deadline) quits now.
    let sigints = 0;
    const stopEarly = runtime.onSignal("SIGINT", () => {
      if (++sigints > 1) runtime.exit(130);
      load.stop();
      const clear = runtime.isTerminal("stderr") ? "\r\x1b[2K" : "";
      runtime.write("stderr", `${clear}SIGINT: no new calls; waiting for ${load.inflight} in flight (SIGINT again to quit now)\n`);
    });
    try {
      if (flags.rate !== undefined) await load.atRate(flags.rate, flags.duration);
      else await load.withConcurrency(flags.concurrency ?? DEFAULT_CONCURRENCY, flags.duration);
    } finally {
      stopEarly();
    }
    const metrics = cluster.metrics();
    cluster.close();
    const summary: BenchSummary = {
      method: flags.method,
      target: target.label,
      mode: flags.rate !== undefined ? "rate" : "concurrency",
      ...(flags.rate !== undefined ? { rate: flags.rate } : { concurrency: flags.concurrency ?? DEFAULT_CONCURRENCY }),
      durationMs: Math.round(load.elapsedMs),
      calls: load.latency.count,
      ok: load.ok,
      errors: load.errors,
      skipped: load.skipped,
      callsPerSecond: Math.round((load.latency.count / load.elapsedMs) * 1_000),
      latencyMs: {
        p50: round(load.latency.quantile(0.5)),
        p90: round(load.latency.quantile(0.9)),
        p99: round(load.latency.quantile(0.99)),
        max: round(load.latency.max),
        mean: round(load.latency.mean()),
      },
      retries: metrics.retries,
      nodes: metrics.sentByNode,
      interrupted: load.interrupted,
      ...(load.stoppedBy ? { stoppedBy: load.stoppedBy.code } : {}),
    };
    runtime.write("stdout", flags.json ? `${JSON.stringify(summary, null, 2)}\n` : `${summaryTable(summary)}\n`);
    if (load.stoppedBy) {
      const why = hint ?? `stopped at the first ${load.stoppedBy.code}: every further call would fail the same way`;
      runtime.write("stderr", `${[...errorLines(load.stoppedBy), why].join("\n")}\n`);
    }
    return summary.calls - summary.ok > 0 || summary.skipped > 0 ? 1 : 0;
  },
});

/**
 * Waits for some node, within the run's duration, then for one offering `service`:
 * a cluster that answers but lacks the service is told within a second. Resolves
 * with the reason when either wait fails.
 */
async function reach(cluster: ClusterClient, service: string | undefined, durationMs: number): Promise<RpcError | undefined> {
  const until = performance.now() + durationMs;
  try {
    await cluster.whenAvailable(undefined, 1, durationMs);
  } catch (thrown) {
    const error = RpcError.from(thrown);
    // Waiting changes nothing for a key the seeds refuse: that error says so itself.
    return error.code === "UNAVAILABLE" ? new RpcError(`No node answered within ${formatDuration(durationMs)}`, "UNAVAILABLE", { processed: false }) : error;
  }
  try {
    await cluster.whenAvailable(service, 1, Math.max(0, Math.min(SERVICE_WAIT_MS, until - performance.now())));
  } catch {
    const nodes = cluster.candidates().length;
    return new RpcError(`No node offers the service "${service}"; ${nodes} node${nodes === 1 ? "" : "s"} found`, "UNAVAILABLE", { processed: false });
  }
  return undefined;
}

/** `2 s`, `500 ms`, `1.5 min`. */
function formatDuration(ms: number): string {
  return ms < 1_000 ? `${ms} ms` : ms < 60_000 ? `${ms / 1_000} s` : `${ms / 60_000} min`;
}

/** Runs calls, counts what they did, and shows progress on standard error. */
class Load {
  readonly latency = new Histogram();
  private window = new Histogram();
  ok = 0;
  skipped = 0;
  inflight = 0;
  readonly errors: Record<string, number> = {};
  elapsedMs = 0;
  interrupted = false;
  /** The error that ended the run early, when one did. */
  stoppedBy: RpcError | undefined;
  private started = 0;
  private end = 0;
  private wake: () => void = () => {};

  constructor(
    private readonly runtime: Runtime,
    private readonly call: () => Promise<unknown>,
    /** Plain lines (not a terminal): one per second, never rewritten. */
    private readonly plain: boolean,
    /** Told of every failed call; may stop the run. */
    private readonly failed: (error: RpcError) => void = () => {},
  ) {}

  /** Ends the run now: nothing new is sent; calls in flight finish. Without an error it was SIGINT. */
  stop(error?: RpcError): void {
    if (performance.now() >= this.end) return;
    if (error) this.stoppedBy = error;
    else this.interrupted = true;
    this.end = performance.now();
    this.wake();
  }

  /** Closed model: `concurrency` workers, each calling again as soon as its call returns. */
  async withConcurrency(concurrency: number, durationMs: number): Promise<void> {
    await this.running(durationMs, async () => {
      const worker = async () => {
        while (performance.now() < this.end) await this.one();
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
    });
  }

  /** Open model: calls start on schedule whatever their latency (no coordinated omission). */
  async atRate(rate: number, durationMs: number): Promise<void> {
    await this.running(durationMs, async () => {
      const pending = new Set<Promise<void>>();
      let issued = 0;
      await new Promise<void>((resolve) => {
        const tick = () => {
          const now = performance.now();
          // The epsilon keeps float error from losing the last call of the run.
          const due = Math.floor(((Math.min(now, this.end) - this.started) / 1_000) * rate + 1e-6);
          for (; issued < due; issued++) {
            if (this.inflight >= MAX_INFLIGHT) {
              this.skipped++;
              continue;
            }
            const call = this.one().finally(() => pending.delete(call));
            pending.add(call);
          }
          if (now >= this.end) {
            clearInterval(timer);
            resolve();
          }
        };
        const timer = setInterval(tick, Math.max(1, Math.min(10, 1_000 / rate)));
        this.wake = tick;
      });
      await Promise.all(pending);
    });
  }

  private async running(durationMs: number, body: () => Promise<void>): Promise<void> {
    this.started = performance.now();
    this.end = this.started + durationMs;
    let shown = 0;
    let shownAt = this.started;
    const progress = setInterval(
      () => {
        const now = performance.now();
        const rate = ((this.latency.count - shown) / (now - shownAt)) * 1_000;
        const errors = this.latency.count - this.ok;
        const line = `${((now - this.started) / 1_000).toFixed(1).padStart(6)}s  ${formatCount(rate).padStart(9)} calls/s  ${formatCount(errors)} errors  p99 ${formatMs(this.window.quantile(0.99))}  ${this.inflight} in flight`;
        this.runtime.write("stderr", this.plain ? `${line}\n` : `\r\x1b[2K${line}`);
        shown = this.latency.count;
        shownAt = now;
        this.window = new Histogram();
      },
      this.plain ? 1_000 : 250,
    );
    try {
      await body();
    } finally {
      clearInterval(progress);
      this.elapsedMs = performance.now() - this.started;
      if (!this.plain) this.runtime.write("stderr", "\r\x1b[2K");
    }
  }

  private async one(): Promise<void> {
    this.inflight++;
    const started = performance.now();
    try {
      await this.call();
      this.ok++;
    } catch (thrown) {
      const error = RpcError.from(thrown);
      this.errors[error.code] = (this.errors[error.code] ?? 0) + 1;
      this.failed(error);
    } finally {
      this.inflight--;
      const ms = performance.now() - started;
      this.latency.record(ms);
      this.window.record(ms);
    }
  }
}

/** The human summary: one table row of totals, then errors, retries and the share of each node. */
export function summaryTable(s: BenchSummary): string {
  const load = s.mode === "rate" ? `rate ${formatCount(s.rate!)}/s` : `concurrency ${s.concurrency}`;
  const early = s.interrupted ? " (interrupted)" : s.stoppedBy ? ` (stopped: ${s.stoppedBy})` : "";
  const head = `ebb bench: ${s.method}, ${load}, ${(s.durationMs / 1_000).toFixed(1)} s${early}, ${s.target}`;
  const totals = renderTable(
    ["calls", "ok", "errors", "calls/s", "p50", "p90", "p99", "max"],
    [[formatCount(s.calls), formatCount(s.ok), formatCount(s.calls - s.ok), formatCount(s.callsPerSecond), ...[s.latencyMs.p50, s.latencyMs.p90, s.latencyMs.p99, s.latencyMs.max].map(formatMs)]],
  );
  const list = (counts: Record<string, number>) =>
    Object.entries(counts)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, n]) => `${key} ${formatCount(n)}`)
      .join(", ") || "none";
  const sent = Object.values(s.nodes).reduce((a, b) => a + b, 0);
  const nodes =
    Object.entries(s.nodes)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([id, n]) => `${id} ${formatCount(n)} (${((n / sent) * 100).toFixed(1)}%)`)
      .join(", ") || "none";
  const rows = [
    ["errors", list(s.errors)],
    ["retries", list(s.retries)],
    ["nodes", nodes],
  ];
  if (s.skipped > 0) rows.push(["skipped", `${formatCount(s.skipped)} calls due while ${formatCount(MAX_INFLIGHT)} were in flight`]);
  return [head, "", totals, "", renderTable(undefined, rows)].join("\n");
}

function formatMs(ms: number): string {
  return `${ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0)} ms`;
}

function round(ms: number): number {
  return Math.round(ms * 1_000) / 1_000;
}
