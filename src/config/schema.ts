import { z } from "zod";
import { DEFAULT_CONNECTION_LIMITS as LIMITS } from "../rpc/server.ts";
import { clusterKeyProblem } from "./cluster-key.ts";
import { isMemberAddress } from "../membership/schema.ts";

/** Documented defaults of every EBB_* variable. */
export const DEFAULTS = {
  host: "127.0.0.1", // EBB_HOST: address both listeners bind
  rpcPort: 7400, // EBB_RPC_PORT: msgpack-rpc TCP port; 0 picks a free one
  httpPort: 7401, // EBB_HTTP_PORT: /healthz and /readyz; 0 disables, "auto" picks a free one
  httpIdleTimeoutMs: 10_000, // EBB_HTTP_IDLE_TIMEOUT_MS: an HTTP connection silent this long (idle keep-alive, or a half-sent request) is closed; Bun's own default; 0 never
  maxMessageBytes: 8 * 1024 * 1024, // EBB_MAX_MESSAGE_BYTES: larger messages close their connection
  shutdownTimeoutMs: 10_000, // EBB_SHUTDOWN_TIMEOUT_MS: drain waits this long for calls in flight, then cancels them
  drainDelayMs: 0, // EBB_DRAIN_DELAY_MS: keep serving this long after draining begins, for routers that learn late
  startupTimeoutMs: 30_000, // EBB_STARTUP_TIMEOUT_MS: startup hooks must finish within this, or the node exits 3
  warmupMs: 10_000, // EBB_WARMUP_MS: this node's cluster clients ramp a newly ready node's share over this window
  maxInflight: 10_000, // EBB_MAX_INFLIGHT: more requests in flight than this are answered OVERLOADED (processed false); 0: no limit
  maxInflightPerConnection: LIMITS.maxInflightPerConnection, // EBB_MAX_INFLIGHT_PER_CONNECTION: one connection's share of EBB_MAX_INFLIGHT
  maxConnections: LIMITS.maxConnections, // EBB_MAX_CONNECTIONS: open RPC connections; more are closed on accept
  readTimeoutMs: LIMITS.readTimeoutMs, // EBB_READ_TIMEOUT_MS: a message begun must arrive whole within this
  idleTimeoutMs: LIMITS.idleTimeoutMs, // EBB_IDLE_TIMEOUT_MS: a connection with nothing running or received this long is closed; 0: never
  maxBufferedBytes: LIMITS.maxBufferedBytes, // EBB_MAX_BUFFERED_BYTES: partial messages of all connections together
  maxElements: LIMITS.maxElements, // EBB_MAX_MESSAGE_ELEMENTS: items in one message
  maxDepth: LIMITS.maxDepth, // EBB_MAX_DEPTH: nesting levels of one message, in and out
  tcpKeepAliveMs: LIMITS.keepAliveMs, // EBB_TCP_KEEPALIVE_MS: TCP keep-alive after this much silence; 0: off
  demoWarmupMs: 0, // EBB_DEMO_WARMUP_MS: the demo's startup hook makes 100 warm-up calls, then waits out this long (a stand-in for cache warm-up)
  logLevel: "info", // EBB_LOG_LEVEL: debug, info, warn or error
  logFormat: "auto", // EBB_LOG_FORMAT: json, pretty, or auto (pretty on a terminal, JSON lines otherwise)
  demoRecord: false, // EBB_DEMO_RECORD: the demo service logs the request ids it executed when the node stops (for tests)
  seeds: "", // EBB_SEEDS: comma-separated host:port of members to join through; empty starts a new cluster
  clusterKey: "", // EBB_CLUSTER_KEY: shared secret; when set, every connection and HTTP call must prove it
  advertise: "", // EBB_ADVERTISE: host:port other members use for this one; default EBB_HOST and the bound RPC port
  swimProbeIntervalMs: 1_000, // EBB_SWIM_PROBE_INTERVAL_MS: failure check of one member every second
  swimProbeTimeoutMs: 500, // EBB_SWIM_PROBE_TIMEOUT_MS: direct ack expected within this
  swimIndirectChecks: 3, // EBB_SWIM_INDIRECT_CHECKS: members asked to probe indirectly (k)
  swimGossipIntervalMs: 200, // EBB_SWIM_GOSSIP_INTERVAL_MS: gossip tick
  swimGossipNodes: 3, // EBB_SWIM_GOSSIP_NODES: members gossiped to per tick
  swimSuspicionMult: 4, // EBB_SWIM_SUSPICION_MULT: suspicion lasts mult * log10(n) probe intervals at least
  swimPushPullIntervalMs: 30_000, // EBB_SWIM_PUSH_PULL_INTERVAL_MS: anti-entropy with a random member
  swimMaxMembers: 10_000, // EBB_SWIM_MAX_MEMBERS: most members the table holds; news of more is dropped
} as const;

const integer = (min: number, max: number, unit = "") =>
  z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be a whole number" })
    .min(min, { error: `must be between ${min} and ${max}${unit}` })
    .max(max, { error: `must be between ${min} and ${max}${unit}` });

const milliseconds = (max: number) => integer(0, max, " ms");

/** The EBB_* environment, parsed. Unset variables take their defaults. */
export const ConfigSchema = z.object({
  EBB_NODE_ID: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,64}$/, { error: "must be 1-64 letters, digits or _ . : -" })
    .optional(),
  EBB_HOST: z.string().min(1, { error: "must not be empty" }).default(DEFAULTS.host),
  EBB_RPC_PORT: integer(0, 65535).default(DEFAULTS.rpcPort),
  EBB_HTTP_PORT: z
    .union([z.literal("auto"), integer(0, 65535)], { error: 'must be a port number, 0 (off) or "auto"' })
    .default(DEFAULTS.httpPort),
  // Bun.serve counts its idle timeout in whole seconds, at most 255.
  EBB_HTTP_IDLE_TIMEOUT_MS: milliseconds(255_000).default(DEFAULTS.httpIdleTimeoutMs),
  EBB_MAX_MESSAGE_BYTES: z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be a whole number" })
    .min(1024, { error: "must be at least 1024" })
    .max(1024 * 1024 * 1024, { error: "must be at most 1 GiB (1073741824)" })
    .default(DEFAULTS.maxMessageBytes),
  EBB_SHUTDOWN_TIMEOUT_MS: milliseconds(3_600_000).default(DEFAULTS.shutdownTimeoutMs),
  EBB_DRAIN_DELAY_MS: milliseconds(3_600_000).default(DEFAULTS.drainDelayMs),
  EBB_STARTUP_TIMEOUT_MS: milliseconds(3_600_000).default(DEFAULTS.startupTimeoutMs),
  EBB_WARMUP_MS: milliseconds(3_600_000).default(DEFAULTS.warmupMs),
  EBB_MAX_INFLIGHT: integer(0, 10_000_000).default(DEFAULTS.maxInflight),
  EBB_MAX_INFLIGHT_PER_CONNECTION: integer(1, 10_000_000).default(DEFAULTS.maxInflightPerConnection),
  EBB_MAX_CONNECTIONS: integer(1, 10_000_000).default(DEFAULTS.maxConnections),
  EBB_READ_TIMEOUT_MS: integer(1, 3_600_000, " ms").default(DEFAULTS.readTimeoutMs),
  EBB_IDLE_TIMEOUT_MS: milliseconds(86_400_000).default(DEFAULTS.idleTimeoutMs),
  EBB_MAX_BUFFERED_BYTES: integer(1024, 64 * 1024 * 1024 * 1024).default(DEFAULTS.maxBufferedBytes),
  EBB_MAX_MESSAGE_ELEMENTS: integer(16, 1_000_000_000).default(DEFAULTS.maxElements),
  EBB_MAX_DEPTH: integer(4, 1_000).default(DEFAULTS.maxDepth),
  EBB_TCP_KEEPALIVE_MS: milliseconds(86_400_000).default(DEFAULTS.tcpKeepAliveMs),
  EBB_DEMO_WARMUP_MS: milliseconds(3_600_000).default(DEFAULTS.demoWarmupMs),
  EBB_LOG_LEVEL: z.enum(["debug", "info", "warn", "error"], { error: "must be debug, info, warn or error" }).default(DEFAULTS.logLevel),
  EBB_LOG_FORMAT: z.enum(["json", "pretty", "auto"], { error: "must be json, pretty or auto" }).default(DEFAULTS.logFormat),
  EBB_BENCH_PLAIN_SHUTDOWN: z.enum(["0", "1"], { error: "must be 0 or 1" }).default("0"),
  EBB_DEMO_RECORD: z.enum(["0", "1", "true", "false"], { error: 'must be 1, 0, true or false' }).default("0"),
  EBB_SEEDS: z
    .string()
    .regex(/^([^,:\s]+:\d{1,5})(,[^,:\s]+:\d{1,5})*$/, { error: "must be comma-separated host:port pairs" })
    .optional(),
  EBB_CLUSTER_KEY: z
    .string()
    .superRefine((key, ctx) => {
      const problem = clusterKeyProblem(key);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    })
    .optional(),
  EBB_ADVERTISE: z
    .string()
    .regex(/^[^,:\s]+:\d{1,5}$/, { error: "must be host:port" })
    // Peers refuse any other address for a member (src/membership/schema.ts): say so at startup.
    .refine(isMemberAddress, { error: "must be host:port with a port 1-65535, at most 262 characters" })
    .optional(),
  EBB_SWIM_PROBE_INTERVAL_MS: integer(10, 60_000, " ms").default(DEFAULTS.swimProbeIntervalMs),
  EBB_SWIM_PROBE_TIMEOUT_MS: integer(5, 60_000, " ms").default(DEFAULTS.swimProbeTimeoutMs),
  EBB_SWIM_INDIRECT_CHECKS: integer(0, 16).default(DEFAULTS.swimIndirectChecks),
  EBB_SWIM_GOSSIP_INTERVAL_MS: integer(5, 60_000, " ms").default(DEFAULTS.swimGossipIntervalMs),
  EBB_SWIM_GOSSIP_NODES: integer(1, 16).default(DEFAULTS.swimGossipNodes),
  EBB_SWIM_SUSPICION_MULT: integer(1, 32).default(DEFAULTS.swimSuspicionMult),
  EBB_SWIM_PUSH_PULL_INTERVAL_MS: integer(100, 3_600_000, " ms").default(DEFAULTS.swimPushPullIntervalMs),
  EBB_SWIM_MAX_MEMBERS: integer(2, 1_000_000).default(DEFAULTS.swimMaxMembers),
});

/** Descriptions for `--help`, one per variable. */
export const DESCRIPTIONS: Record<keyof z.input<typeof ConfigSchema>, string> = {
  EBB_NODE_ID: "this node's id in logs and $info (default: random, e.g. n-3f9a1c)",
  EBB_HOST: `address both listeners bind (default ${DEFAULTS.host})`,
  EBB_RPC_PORT: `msgpack-rpc TCP port, 0 picks a free one (default ${DEFAULTS.rpcPort})`,
  EBB_HTTP_PORT: `HTTP port (/healthz, /readyz, /metrics, /cluster, /rpc/:method); 0 disables, "auto" picks a free one (default ${DEFAULTS.httpPort})`,
  EBB_HTTP_IDLE_TIMEOUT_MS: `an HTTP connection that sends nothing this long (idle keep-alive, or a half-sent request) is closed; whole seconds, at most 255000; 0 never; Bun only: the Deno HTTP server has no timeouts (default ${DEFAULTS.httpIdleTimeoutMs})`,
  EBB_MAX_MESSAGE_BYTES: `largest message accepted; a larger one closes its connection (default ${DEFAULTS.maxMessageBytes})`,
  EBB_SHUTDOWN_TIMEOUT_MS: `how long draining waits for calls in flight before cancelling them (default ${DEFAULTS.shutdownTimeoutMs})`,
  EBB_DRAIN_DELAY_MS: `keep serving normally this long after draining begins, for routers that learn late (default ${DEFAULTS.drainDelayMs})`,
  EBB_STARTUP_TIMEOUT_MS: `startup hooks must finish within this, or the node exits 3 (default ${DEFAULTS.startupTimeoutMs})`,
  EBB_WARMUP_MS: `this node's cluster clients ramp a newly ready node's share of calls over this window (default ${DEFAULTS.warmupMs})`,
  EBB_MAX_INFLIGHT: `requests in flight beyond this are answered OVERLOADED, processed false (try elsewhere); 0: no limit (default ${DEFAULTS.maxInflight})`,
  EBB_MAX_INFLIGHT_PER_CONNECTION: `calls running on one connection beyond this are answered OVERLOADED, processed false, while other connections are served (default ${DEFAULTS.maxInflightPerConnection})`,
  EBB_MAX_CONNECTIONS: `open RPC connections; one more is closed as soon as it is accepted, before descriptors run out (default ${DEFAULTS.maxConnections})`,
  EBB_READ_TIMEOUT_MS: `a message whose first bytes arrived must be complete within this, or its connection is closed (default ${DEFAULTS.readTimeoutMs})`,
  EBB_IDLE_TIMEOUT_MS: `a connection with no call running and nothing received for this long is closed gracefully; ebb clients reconnect; 0: never (default ${DEFAULTS.idleTimeoutMs})`,
  EBB_MAX_BUFFERED_BYTES: `bytes of partial messages held for all connections together; the connection that passes it is closed (default ${DEFAULTS.maxBufferedBytes})`,
  EBB_MAX_MESSAGE_ELEMENTS: `items (values at any level) in one message; a message with more closes its connection (default ${DEFAULTS.maxElements})`,
  EBB_MAX_DEPTH: `nesting levels of one message, the message array being level 1; deeper requests close their connection, deeper answers become INTERNAL errors (default ${DEFAULTS.maxDepth})`,
  EBB_TCP_KEEPALIVE_MS: `TCP keep-alive on every RPC connection after this much silence, so vanished peers are found (Deno: the system's timing); 0: off (default ${DEFAULTS.tcpKeepAliveMs})`,
  EBB_DEMO_WARMUP_MS: `above 0, the demo's startup hook makes 100 warm-up calls to demo.echo, then waits until this long has passed, a stand-in for warming caches (default ${DEFAULTS.demoWarmupMs})`,
  EBB_LOG_LEVEL: `least severe log level written: debug, info, warn, error (default ${DEFAULTS.logLevel})`,
  EBB_LOG_FORMAT: `json, pretty, or auto: pretty on a terminal, JSON lines otherwise (default ${DEFAULTS.logFormat})`,
  EBB_BENCH_PLAIN_SHUTDOWN: "1: die at once on SIGTERM, no drain; only for npm run bench:restart's comparison (default 0)",
  EBB_DEMO_RECORD: "1: the demo service logs the request ids it executed when the node stops, for at-most-once checks (default 0)",
  EBB_SEEDS: "comma-separated host:port of members to join through (default: none, a new cluster)",
  EBB_CLUSTER_KEY: 'shared secret of at least 128 random bits, base64 or hex (make one with "ebb keygen"): every RPC connection must prove it, HTTP /rpc and /cluster need Authorization: Bearer <key> (default: none)',
  EBB_ADVERTISE: "host:port other members use to reach this one (default: EBB_HOST and the bound RPC port)",
  EBB_SWIM_PROBE_INTERVAL_MS: `failure check of one member every interval (default ${DEFAULTS.swimProbeIntervalMs})`,
  EBB_SWIM_PROBE_TIMEOUT_MS: `direct ack expected within this before asking others (default ${DEFAULTS.swimProbeTimeoutMs})`,
  EBB_SWIM_INDIRECT_CHECKS: `members asked to probe indirectly, k (default ${DEFAULTS.swimIndirectChecks})`,
  EBB_SWIM_GOSSIP_INTERVAL_MS: `gossip tick (default ${DEFAULTS.swimGossipIntervalMs})`,
  EBB_SWIM_GOSSIP_NODES: `members gossiped to per tick (default ${DEFAULTS.swimGossipNodes})`,
  EBB_SWIM_SUSPICION_MULT: `suspicion lasts at least mult x log10(n) probe intervals (default ${DEFAULTS.swimSuspicionMult})`,
  EBB_SWIM_PUSH_PULL_INTERVAL_MS: `anti-entropy with a random member every interval (default ${DEFAULTS.swimPushPullIntervalMs})`,
  EBB_SWIM_MAX_MEMBERS: `most members the table holds, self included; news of more is dropped and counted (default ${DEFAULTS.swimMaxMembers})`,
};
