import { z } from "zod";
import { DEFAULT_WARMUP_MS } from "../cluster/balancer.ts";
import { DEFAULT_SWIM_CONFIG, type SwimConfig } from "../membership/types.ts";
import { isMemberAddress } from "../membership/schema.ts";
import { DEFAULT_KEEPALIVE_MS, DEFAULT_MAX_MESSAGE_BYTES } from "../rpc/channel.ts";
import { type ConnectionLimits, DEFAULT_CONNECTION_LIMITS as LIMITS, MIN_KEEPALIVE_MS } from "../rpc/server.ts";
import { ADDRESS_LIST_PATTERN, ADDRESS_PATTERN } from "../runtime/address.ts";
import { DEFAULT_CLUSTER_ID, MAX_CLUSTER_KEYS } from "../rpc/auth.ts";
import { readFileSync } from "node:fs";
import { type PemKind, readPem } from "../security/tls.ts";
import { clusterKeyProblem } from "./cluster-key.ts";
import { integer, milliseconds, type Variable, variable } from "./table.ts";

/*
 * The node's EBB_* variables, each written once. The three groups are the
 * shape of `Config` (load.ts): the top level (MAIN_VARIABLES), `limits` and
 * `swim`; the schema, `--help` and the README check read CONFIG_VARIABLES.
 * Defaults that belong to a part (connection limits, SWIM timings, the
 * message size) are that part's own constants, so they cannot drift apart.
 */

/** True for an address that means "every interface": 0.0.0.0 and :: (bracketed or not, any spelling). */
export function isUnspecified(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  return /^0+(\.0+){3}$/.test(bare) || (bare.includes(":") && /^[0:]+$/.test(bare));
}

/** An address EBB_HOST can bind: an IPv4 literal (each part up to 255), an IPv6 literal, or a host name (letters, digits, "-", "_", dots). */
export function isBindHost(host: string): boolean {
  if (/^[\d.]+$/.test(host)) return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) && host.split(".").every((part) => Number(part) <= 255);
  // IPv6 has two colons at least ("::"); one is a host:port given by mistake.
  if (host.includes(":")) return host.split(":").length > 2 && /^[0-9A-Fa-f:.]+(%[\w.-]+)?$/.test(host);
  return host.length <= 253 && /^\w([\w-]*\w)?(\.\w([\w-]*\w)?)*\.?$/.test(host);
}

/** `host:port[,host:port...]`, split. */
export const addressList = z
  .string()
  .regex(ADDRESS_LIST_PATTERN, { error: "must be comma-separated host:port pairs" })
  .transform((value) => value.split(","));

const BOTH = ["node", "cli"] as const;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** The top level of `Config`. */
export const MAIN_VARIABLES = {
  nodeId: variable({
    name: "EBB_NODE_ID",
    schema: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, { error: "must be 1-64 letters, digits or _ . : -" }),
    unset: "random `n-xxxxxx`",
    map: (id) => id ?? `n-${crypto.randomUUID().slice(0, 6)}`,
    description: "this node's id in logs and $info",
  }),
  host: variable({
    name: "EBB_HOST",
    schema: z.string().refine(isBindHost, {
      // Bun cannot bind "[::1]": brackets belong in host:port, not in a host alone.
      error: (issue) => (String(issue.input).startsWith("[") ? "must be an IPv6 address without brackets, such as ::1" : "must be an IP address (such as 127.0.0.1, 0.0.0.0 or ::) or a host name of this machine"),
    }),
    default: "127.0.0.1",
    description: "address both listeners bind",
  }),
  rpcPort: variable({ name: "EBB_RPC_PORT", schema: integer(0, 65535), default: 7400, description: "msgpack-rpc TCP port, 0 picks a free one" }),
  /** null: no HTTP listener; 0: a free port. */
  httpPort: variable({
    name: "EBB_HTTP_PORT",
    schema: z.union([z.literal("auto"), integer(0, 65535)], { error: 'must be a port number, 0 (off) or "auto"' }),
    default: 7401,
    map: (port) => (port === "auto" ? 0 : port === 0 ? null : port),
    description: 'HTTP port (/healthz, /readyz, /metrics, /cluster, /rpc/:method); 0 disables, "auto" picks a free one',
  }),
  // Bun's HTTP server counts its idle timeout in whole seconds, at most 255.
  httpIdleTimeoutMs: variable({
    name: "EBB_HTTP_IDLE_TIMEOUT_MS",
    schema: milliseconds(255_000),
    default: 10_000, // Bun's own default
    description:
      "an HTTP connection that sends nothing this long (idle keep-alive, or a half-sent request) is closed; whole seconds, at most 255000; 0 never; Bun only: the Deno HTTP server has no timeouts",
  }),
  maxMessageBytes: variable({
    name: "EBB_MAX_MESSAGE_BYTES",
    schema: z.coerce
      .number({ error: "must be a number" })
      .int({ error: "must be a whole number" })
      .min(1024, { error: "must be at least 1024" })
      .max(1024 * 1024 * 1024, { error: "must be at most 1 GiB (1073741824)" }),
    default: DEFAULT_MAX_MESSAGE_BYTES,
    description: "largest message accepted; a larger one closes its connection",
  }),
  shutdownTimeoutMs: variable({
    name: "EBB_SHUTDOWN_TIMEOUT_MS",
    schema: milliseconds(HOUR_MS),
    default: 10_000,
    description: "how long draining waits for calls in flight before cancelling them",
  }),
  drainDelayMs: variable({
    name: "EBB_DRAIN_DELAY_MS",
    schema: milliseconds(HOUR_MS),
    default: 0,
    description: "keep serving normally this long after draining begins, for routers that learn late",
  }),
  startupTimeoutMs: variable({
    name: "EBB_STARTUP_TIMEOUT_MS",
    schema: milliseconds(HOUR_MS),
    default: 30_000,
    description: "startup hooks must finish within this, or the node exits 3",
  }),
  /** Warm-up window of the node's cluster clients (`node.client()`). */
  warmupMs: variable({
    name: "EBB_WARMUP_MS",
    schema: milliseconds(HOUR_MS),
    default: DEFAULT_WARMUP_MS,
    description: "this node's cluster clients ramp a newly ready node's share of calls over this window",
  }),
  /** Requests in flight beyond this are answered OVERLOADED; 0: no limit. */
  maxInflight: variable({
    name: "EBB_MAX_INFLIGHT",
    schema: integer(0, 10_000_000),
    default: 10_000,
    description: "requests in flight beyond this are answered OVERLOADED, processed false (try elsewhere); 0: no limit",
  }),
  /** A concurrency limit that follows latency, under EBB_MAX_INFLIGHT. */
  adaptiveConcurrency: variable({
    name: "EBB_ADAPTIVE_CONCURRENCY",
    schema: z.enum(["0", "1"], { error: "must be 0 or 1" }),
    default: "0",
    map: (value) => value === "1",
    description: "1: the node's limit of requests in flight follows their latency (Gradient2: from 20, within 4 and EBB_MAX_INFLIGHT); past it, OVERLOADED with retryAfterMs, which ebb clients honour for this node",
  }),
  logLevel: variable({
    name: "EBB_LOG_LEVEL",
    schema: z.enum(["debug", "info", "warn", "error"], { error: "must be debug, info, warn or error" }),
    default: "info",
    description: "least severe log level written: debug, info, warn, error",
  }),
  logFormat: variable({
    name: "EBB_LOG_FORMAT",
    schema: z.enum(["json", "pretty", "auto"], { error: "must be json, pretty or auto" }),
    default: "auto",
    description: "json, pretty, or auto: pretty on a terminal, JSON lines otherwise",
  }),
  /** Members to join through, host:port. */
  seeds: variable({
    name: "EBB_SEEDS",
    schema: addressList,
    unset: "none",
    map: (seeds) => seeds ?? [],
    description: "comma-separated host:port of members to join through; without them a new cluster starts",
    readers: BOTH,
  }),
  /** The keyring: the first key proves, every key is accepted (README "Rotating the cluster key"). Never logged. */
  clusterKey: variable({
    name: "EBB_CLUSTER_KEY",
    schema: z.string().transform((text, ctx) => {
      const keys = text.split(",").map((key) => key.trim());
      if (keys.length > MAX_CLUSTER_KEYS) ctx.addIssue({ code: "custom", message: `holds ${keys.length} keys; at most ${MAX_CLUSTER_KEYS}` });
      for (const [i, key] of keys.entries()) {
        const problem = key === "" ? "is empty" : clusterKeyProblem(key);
        if (problem) ctx.addIssue({ code: "custom", message: keys.length === 1 ? problem : `key ${i + 1} of ${keys.length} ${problem}` });
      }
      if (new Set(keys).size < keys.length) ctx.addIssue({ code: "custom", message: "names a key twice" });
      return keys as readonly string[];
    }),
    unset: "none",
    description: `shared secret of at least 128 random bits, base64 or hex (make one with "ebb keygen"); or a keyring of up to ${MAX_CLUSTER_KEYS} comma-separated keys, the first proving, all accepted: every RPC connection must prove one, HTTP /rpc and /cluster need Authorization: Bearer <ebb token>`,
    readers: BOTH,
    secret: true,
  }),
  /** Bound into every cluster key proof and HTTP token: another cluster with the same key cannot join or call. */
  clusterId: variable({
    name: "EBB_CLUSTER_ID",
    schema: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, { error: "must be 1-64 letters, digits or _ . : -" }),
    default: DEFAULT_CLUSTER_ID,
    description: "name of the cluster, part of every cluster key proof and HTTP token: nodes of another cluster id with the same key are refused",
    readers: BOTH,
  }),
  /** Lets a node bind off loopback with neither TLS nor a cluster key. */
  insecure: variable({
    name: "EBB_INSECURE",
    schema: z.enum(["0", "1"], { error: "must be 0 or 1" }),
    default: "0",
    map: (value) => value === "1",
    description: "1: start even when bound off loopback (EBB_HOST) with neither TLS nor EBB_CLUSTER_KEY, so anyone who reaches the port may call and join",
  }),
  /** host:port of a listener serving only /metrics and the probes; the main HTTP listener then has no /metrics. */
  metricsAddr: variable({
    name: "EBB_METRICS_ADDR",
    schema: z.string().regex(ADDRESS_PATTERN, { error: "must be host:port" }),
    unset: "/metrics on the HTTP port",
    description: "host:port of a separate listener for /metrics, /healthz and /readyz (port 0 picks one), e.g. 127.0.0.1:9400 to keep metrics off the public interface; the HTTP port then no longer serves /metrics",
  }),
  /** host:port others use for this member; undefined: EBB_HOST and the bound RPC port. */
  advertise: variable({
    name: "EBB_ADVERTISE",
    schema: z
      .string()
      // Told to every member as where to call this one: "every interface" reaches nobody else.
      .refine((addr) => !isUnspecified(addr.slice(0, addr.lastIndexOf(":"))), {
        error: "is not an address others can reach: 0.0.0.0 and :: mean every interface of this machine; give the one others call (e.g. the pod's IP)",
        abort: true,
      })
      .regex(ADDRESS_PATTERN, { error: "must be host:port" })
      // Peers refuse any other address for a member (src/membership/schema.ts): say so at startup.
      .refine(isMemberAddress, { error: "must be host:port with a port 1-65535, at most 262 characters" }),
    unset: "`EBB_HOST`:bound RPC port",
    description: "host:port other members use to reach this one",
  }),
  /** Keep-alive pings on the node's own connections (to members, and `node.client()`). */
  keepaliveMs: variable({
    name: "EBB_KEEPALIVE_MS",
    schema: milliseconds(HOUR_MS).refine((ms) => ms === 0 || ms >= MIN_KEEPALIVE_MS, { error: `must be 0 (off) or between ${MIN_KEEPALIVE_MS} and ${HOUR_MS} ms` }),
    default: DEFAULT_KEEPALIVE_MS,
    description:
      "the node's own connections (to members, and node.client()) send $ping after this much silence and are closed when it is not answered within the same time, so a half-open link is found within about three times this; 0: off",
  }),
};

/** `Config.limits`: what one peer can make the RPC server hold. */
export const LIMIT_VARIABLES = {
  maxInflightPerConnection: variable({
    name: "EBB_MAX_INFLIGHT_PER_CONNECTION",
    schema: integer(1, 10_000_000),
    default: LIMITS.maxInflightPerConnection,
    description: "calls running on one connection beyond this are answered OVERLOADED, processed false, while other connections are served",
  }),
  maxConnections: variable({
    name: "EBB_MAX_CONNECTIONS",
    schema: integer(1, 10_000_000),
    default: LIMITS.maxConnections,
    description: "open RPC connections; one more is closed as soon as it is accepted, before descriptors run out",
  }),
  readTimeoutMs: variable({
    name: "EBB_READ_TIMEOUT_MS",
    schema: integer(1, HOUR_MS, " ms"),
    default: LIMITS.readTimeoutMs,
    description: "a message whose first bytes arrived must be complete within this, or its connection is closed",
  }),
  idleTimeoutMs: variable({
    name: "EBB_IDLE_TIMEOUT_MS",
    schema: milliseconds(DAY_MS),
    default: LIMITS.idleTimeoutMs,
    description: "a connection with no call running and nothing received for this long is closed gracefully; ebb clients reconnect; 0: never",
  }),
  maxBufferedBytes: variable({
    name: "EBB_MAX_BUFFERED_BYTES",
    schema: integer(1024, 64 * 1024 * 1024 * 1024),
    default: LIMITS.maxBufferedBytes,
    description: "bytes of partial messages held for all connections together; the connection that passes it is closed",
  }),
  maxElements: variable({
    name: "EBB_MAX_MESSAGE_ELEMENTS",
    schema: integer(16, 1_000_000_000),
    default: LIMITS.maxElements,
    description: "items (values at any level) in one message; a message with more closes its connection",
  }),
  maxDepth: variable({
    name: "EBB_MAX_DEPTH",
    schema: integer(4, 1_000),
    default: LIMITS.maxDepth,
    description: "nesting levels of one message, the message array being level 1; deeper requests close their connection, deeper answers become INTERNAL errors",
  }),
  keepAliveMs: variable({
    name: "EBB_TCP_KEEPALIVE_MS",
    schema: milliseconds(DAY_MS),
    default: LIMITS.keepAliveMs,
    description: "TCP keep-alive on every RPC connection after this much silence, so vanished peers are found (Deno: the system's timing); 0: off",
  }),
} satisfies Record<keyof ConnectionLimits, Variable<number>>;

/** `Config.swim`: the membership timings one may tune; the rest of `SwimConfig` keeps its defaults. */
export const SWIM_VARIABLES = {
  probeIntervalMs: variable({
    name: "EBB_SWIM_PROBE_INTERVAL_MS",
    schema: integer(10, 60_000, " ms"),
    default: DEFAULT_SWIM_CONFIG.probeIntervalMs,
    description: "failure check of one member every interval",
  }),
  probeTimeoutMs: variable({
    name: "EBB_SWIM_PROBE_TIMEOUT_MS",
    schema: integer(5, 60_000, " ms"),
    default: DEFAULT_SWIM_CONFIG.probeTimeoutMs,
    description: "direct ack expected within this before asking others",
  }),
  indirectChecks: variable({
    name: "EBB_SWIM_INDIRECT_CHECKS",
    schema: integer(0, 16),
    default: DEFAULT_SWIM_CONFIG.indirectChecks,
    description: "members asked to probe indirectly, k",
  }),
  gossipIntervalMs: variable({
    name: "EBB_SWIM_GOSSIP_INTERVAL_MS",
    schema: integer(5, 60_000, " ms"),
    default: DEFAULT_SWIM_CONFIG.gossipIntervalMs,
    description: "gossip tick",
  }),
  gossipNodes: variable({
    name: "EBB_SWIM_GOSSIP_NODES",
    schema: integer(1, 16),
    default: DEFAULT_SWIM_CONFIG.gossipNodes,
    description: "members gossiped to per tick",
  }),
  suspicionMult: variable({
    name: "EBB_SWIM_SUSPICION_MULT",
    schema: integer(1, 32),
    default: DEFAULT_SWIM_CONFIG.suspicionMult,
    description: "suspicion lasts at least mult x log10(n) probe intervals",
  }),
  pushPullIntervalMs: variable({
    name: "EBB_SWIM_PUSH_PULL_INTERVAL_MS",
    schema: integer(100, HOUR_MS, " ms"),
    default: DEFAULT_SWIM_CONFIG.pushPullIntervalMs,
    description: "anti-entropy with a random member every interval",
  }),
  maxMembers: variable({
    name: "EBB_SWIM_MAX_MEMBERS",
    schema: integer(2, 1_000_000),
    default: DEFAULT_SWIM_CONFIG.maxMembers,
    description: "most members the table holds, self included; news of more is dropped and counted",
  }),
} satisfies Partial<Record<keyof SwimConfig, Variable<number>>>;

/** PEM text, or the path of a PEM file read now (node:fs works on Bun, Deno and the binary); parsed, so a bad file is named at startup. */
const pem = (kind: PemKind) =>
  z.string().transform((value, ctx) => {
    try {
      return readPem(value, kind, (path) => readFileSync(path, "utf8"));
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
      return z.NEVER;
    }
  });

/** `Config.tls` (src/security/tls.ts makes them one setting): TLS on every RPC, membership and HTTP connection. */
export const TLS_VARIABLES = {
  tlsCert: variable({
    name: "EBB_TLS_CERT",
    schema: pem("certificate"),
    unset: "TLS off",
    description: "this node's certificate chain, PEM text or a PEM file's path; with EBB_TLS_KEY and EBB_TLS_CA, every connection (RPC, membership, CLI, HTTP) is TLS",
    readers: BOTH,
  }),
  tlsKey: variable({
    name: "EBB_TLS_KEY",
    schema: pem("private key"),
    unset: "TLS off",
    description: "the private key of EBB_TLS_CERT, PEM text or a PEM file's path",
    readers: BOTH,
    secret: true,
  }),
  tlsCa: variable({
    name: "EBB_TLS_CA",
    schema: pem("certificate"),
    unset: "TLS off",
    description: "CA certificates (PEM text or file) that servers' certificates must chain to, and clients' with EBB_TLS_CLIENT_AUTH; the client commands speak TLS when it is set",
    readers: BOTH,
  }),
  tlsServerName: variable({
    name: "EBB_TLS_SERVER_NAME",
    schema: z.string().regex(/^[A-Za-z0-9.-]{1,253}$/, { error: "must be a DNS name" }),
    unset: "the host dialled",
    description: "the name clients check in servers' certificates instead of the host they dial",
    readers: BOTH,
  }),
  tlsClientAuth: variable({
    name: "EBB_TLS_CLIENT_AUTH",
    schema: z.enum(["0", "1"], { error: "must be 0 or 1" }),
    default: "0",
    map: (value) => value === "1",
    description: "1: the RPC listener requires a client certificate chaining to EBB_TLS_CA (mutual TLS; Bun only, Deno cannot request one); HTTP never asks",
  }),
};

/** Every variable of the node, in the order `--help`, the README and error messages use. */
export const CONFIG_VARIABLES: readonly Variable[] = [
  ...Object.values(MAIN_VARIABLES),
  ...Object.values(TLS_VARIABLES),
  ...Object.values(LIMIT_VARIABLES),
  ...Object.values(SWIM_VARIABLES),
];
