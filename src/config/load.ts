import type { SwimConfig } from "../membership/types.ts";
import type { ConnectionLimits } from "../rpc/server.ts";
import { ConfigSchema } from "./schema.ts";

/** The node's configuration, read from EBB_* variables. */
export interface Config {
  nodeId: string;
  host: string;
  rpcPort: number;
  /** null: no HTTP listener; 0: a free port. */
  httpPort: number | null;
  /** An HTTP connection silent this long is closed; 0 never. Bun only (the Deno HTTP server has no timeouts). */
  httpIdleTimeoutMs: number;
  maxMessageBytes: number;
  shutdownTimeoutMs: number;
  drainDelayMs: number;
  startupTimeoutMs: number;
  /** Warm-up window of the node's cluster clients (`node.client()`). */
  warmupMs: number;
  /** Requests in flight beyond this are answered OVERLOADED; 0: no limit. */
  maxInflight: number;
  /** What one peer can make the RPC server hold: EBB_MAX_CONNECTIONS, EBB_READ_TIMEOUT_MS and the rest. */
  limits: ConnectionLimits;
  demoWarmupMs: number;
  logLevel: "debug" | "info" | "warn" | "error";
  logFormat: "json" | "pretty" | "auto";
  /** Die at once on SIGTERM (bench comparison only). */
  benchPlainShutdown: boolean;
  /** EBB_* variables set but unknown (likely typos), as warnings to log. */
  warnings: string[];
  /** Record and log the request ids the demo service executed. */
  demoRecord: boolean;
  /** Members to join through, host:port. */
  seeds: string[];
  /** EBB_CLUSTER_KEY: when set, connections and HTTP calls must prove it. Never logged. */
  clusterKey: string | undefined;
  /** host:port others use for this member; undefined: EBB_HOST and the bound RPC port. */
  advertise: string | undefined;
  /** Membership timings: the EBB_SWIM_* subset of SwimConfig. */
  swim: Pick<SwimConfig, "probeIntervalMs" | "probeTimeoutMs" | "indirectChecks" | "gossipIntervalMs" | "gossipNodes" | "suspicionMult" | "pushPullIntervalMs" | "maxMembers">;
}

/** Every bad EBB_* variable at once, named with the reason. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`Invalid configuration: ${problems.join("; ")}`);
  }
}

/** Reads the configuration from an environment; throws `ConfigError` naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const relevant: Record<string, string> = {};
  for (const key of Object.keys(ConfigSchema.shape)) {
    const value = env[key];
    // An empty variable is unset, as shells and orchestrators often leave them.
    if (value !== undefined && value !== "") relevant[key] = value;
  }
  const parsed = ConfigSchema.safeParse(relevant);
  if (!parsed.success) {
    const seen = new Set<string>();
    const problems: string[] = [];
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0]);
      if (seen.has(name)) continue;
      seen.add(name);
      // A secret is described, never echoed.
      const shown = name === "EBB_CLUSTER_KEY" ? `(${(relevant[name] ?? "").length} characters, not shown)` : JSON.stringify(relevant[name] ?? "");
      problems.push(`${name}=${shown} ${issue.message}`);
    }
    throw new ConfigError(problems);
  }
  const c = parsed.data;
  return {
    nodeId: c.EBB_NODE_ID ?? `n-${crypto.randomUUID().slice(0, 6)}`,
    host: c.EBB_HOST,
    rpcPort: c.EBB_RPC_PORT,
    httpPort: c.EBB_HTTP_PORT === "auto" ? 0 : c.EBB_HTTP_PORT === 0 ? null : c.EBB_HTTP_PORT,
    httpIdleTimeoutMs: c.EBB_HTTP_IDLE_TIMEOUT_MS,
    maxMessageBytes: c.EBB_MAX_MESSAGE_BYTES,
    shutdownTimeoutMs: c.EBB_SHUTDOWN_TIMEOUT_MS,
    drainDelayMs: c.EBB_DRAIN_DELAY_MS,
    startupTimeoutMs: c.EBB_STARTUP_TIMEOUT_MS,
    warmupMs: c.EBB_WARMUP_MS,
    maxInflight: c.EBB_MAX_INFLIGHT,
    limits: {
      maxConnections: c.EBB_MAX_CONNECTIONS,
      maxInflightPerConnection: c.EBB_MAX_INFLIGHT_PER_CONNECTION,
      readTimeoutMs: c.EBB_READ_TIMEOUT_MS,
      idleTimeoutMs: c.EBB_IDLE_TIMEOUT_MS,
      maxBufferedBytes: c.EBB_MAX_BUFFERED_BYTES,
      maxElements: c.EBB_MAX_MESSAGE_ELEMENTS,
      maxDepth: c.EBB_MAX_DEPTH,
      keepAliveMs: c.EBB_TCP_KEEPALIVE_MS,
    },
    demoWarmupMs: c.EBB_DEMO_WARMUP_MS,
    demoRecord: c.EBB_DEMO_RECORD === "1" || c.EBB_DEMO_RECORD === "true",
    logLevel: c.EBB_LOG_LEVEL,
    logFormat: c.EBB_LOG_FORMAT,
    benchPlainShutdown: c.EBB_BENCH_PLAIN_SHUTDOWN === "1",
    warnings: unknownVariables(env),
    seeds: c.EBB_SEEDS ? c.EBB_SEEDS.split(",") : [],
    clusterKey: c.EBB_CLUSTER_KEY,
    advertise: c.EBB_ADVERTISE,
    swim: {
      probeIntervalMs: c.EBB_SWIM_PROBE_INTERVAL_MS,
      probeTimeoutMs: c.EBB_SWIM_PROBE_TIMEOUT_MS,
      indirectChecks: c.EBB_SWIM_INDIRECT_CHECKS,
      gossipIntervalMs: c.EBB_SWIM_GOSSIP_INTERVAL_MS,
      gossipNodes: c.EBB_SWIM_GOSSIP_NODES,
      suspicionMult: c.EBB_SWIM_SUSPICION_MULT,
      pushPullIntervalMs: c.EBB_SWIM_PUSH_PULL_INTERVAL_MS,
      maxMembers: c.EBB_SWIM_MAX_MEMBERS,
    },
  };
}

/** Warnings for EBB_* variables the schema does not know: a typo should not pass silently. */
function unknownVariables(env: Record<string, string | undefined>): string[] {
  const known = Object.keys(ConfigSchema.shape);
  return Object.keys(env)
    .filter((name) => name.startsWith("EBB_") && !known.includes(name))
    .sort()
    .map((name) => {
      const closest = known.reduce((best, k) => (distance(name, k) < distance(name, best) ? k : best), known[0]!);
      const hint = distance(name, closest) <= 3 ? `; did you mean ${closest}?` : "";
      return `Unknown variable ${name} is ignored${hint}`;
    });
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}

/** A complete configuration from defaults and overrides, for embedding and tests. */
export function configWith(overrides: Partial<Config> = {}): Config {
  return { ...loadConfig({}), ...overrides };
}
