import { type ClusterClient, type ClusterClientOptions, createClusterClient } from "./cluster/client.ts";
import type { Config } from "./config/load.ts";
import type { ServiceClient } from "./rpc/client.ts";
import { createHttpApp } from "./http/app.ts";
import type { Sample } from "./http/metrics.ts";
import { InflightCounter } from "./lifecycle/inflight.ts";
import { runStartupHooks, StartupError, type StartupHook } from "./lifecycle/startup.ts";
import { Lifecycle, type LifecycleState, type StateListener } from "./lifecycle/state.ts";
import { type Logger, silentLogger } from "./log.ts";
import { Membership } from "./membership/membership.ts";
import { SwimGate } from "./membership/schema.ts";
import { realClock, RpcSwimTransport } from "./membership/transport.ts";
import type { Member, MemberEvent, MemberMeta } from "./membership/types.ts";
import type { Implementation, ServiceContract } from "./rpc/contract.ts";
import { Dispatcher } from "./rpc/dispatch.ts";
import { CallStats } from "./rpc/call-stats.ts";
import { RpcError } from "./rpc/errors.ts";
import { Router } from "./rpc/router.ts";
import { RpcServer } from "./rpc/server.ts";
import { detectRuntime } from "./runtime/detect.ts";
import type { HttpServer, Listener, Runtime } from "./runtime/types.ts";

/** The version of ebb, reported by `$info`. */
export const VERSION = "0.1.0";

/** Event-loop lag check: every LAG_CHECK_MS, a tick later than LAG_THRESHOLD_MS raises Lifeguard's health score. */
const LAG_CHECK_MS = 250;
const LAG_THRESHOLD_MS = 100;

/** After the drain, how long connections get to close their side before they are closed for them. */
export const CONNECTION_LINGER_MS = 500;

/** At the very end of the stop sequence, how long HTTP responses still being written get before exit. */
export const HTTP_STOP_GRACE_MS = 500;

/** After the HTTP listener fails (out of descriptors), how long before it serves again. */
export const HTTP_ACCEPT_RETRY_MS = 1_000;

/** Options of `createNode`. */
export interface NodeOptions {
  config: Config;
  log?: Logger;
  /** Defaults to the runtime this process runs on. */
  runtime?: Runtime;
}

/** What a drain did, logged in one line at the end and returned by `shutdown()`. */
export interface ShutdownSummary {
  /** What started the drain: a signal name, "shutdown()", "startup failed". */
  reason: string;
  /** From the start of draining until every connection was closed. */
  drainMs: number;
  /** Requests in flight at the start of draining or admitted during the drain delay, that completed. */
  completed: number;
  /** Requests answered SHUTTING_DOWN by the baffle without running a handler. */
  baffled: number;
  /** Requests still running at the shutdown timeout: aborted, their callers answered CANCELLED. */
  cancelled: number;
  /** True when the shutdown timeout passed with work still in flight. */
  timedOut: boolean;
  /** Handler entries over the node's whole life. */
  handled: number;
  /** 0 drained cleanly, 1 the drain timed out and work was cancelled. */
  exitCode: 0 | 1;
}

/** Counters for metrics and tests. */
export interface NodeStats {
  /** Connections accepted, rejected for bad input, reads paused for a slow peer. */
  accepted: number;
  rejected: number;
  pausedReads: number;
  /** Requests in flight now (RPC and HTTP). */
  inflight: number;
  /** Handler entries since start (RPC and HTTP). */
  handled: number;
  /** Requests refused before a handler: not ready yet, or baffled while draining. */
  notReady: number;
  baffled: number;
  /** RPC connections open now, and the bytes of partial messages they hold (EBB_MAX_BUFFERED_BYTES). */
  connections: number;
  bufferedBytes: number;
}

/** An ebb node: services, startup hooks, an RPC and an HTTP listener, and a graceful lifecycle. */
export interface EbbNode {
  readonly id: string;
  /** starting -> ready -> draining -> stopped. */
  readonly state: LifecycleState;
  /** Registers a service's handlers. Call before `start`. */
  register<C extends ServiceContract>(contract: C, implementation: Implementation<C>): EbbNode;
  /** Adds a startup hook; hooks run in order after the listeners open and before the node is ready. */
  onStartup(name: string, hook: StartupHook): EbbNode;
  /** Subscribes to state changes; returns the unsubscribe function. */
  onStateChange(listener: StateListener): () => void;
  /** The cluster as this node sees it (itself included); empty before `start`. */
  members(): Member[];
  /** Subscribes to membership events: join, update, suspect, dead, left. */
  onMemberEvent(listener: (event: MemberEvent) => void): () => void;
  /** A typed client of a service anywhere in the cluster, found through this node's membership. */
  client<C extends ServiceContract>(contract: C, options?: Omit<ClusterClientOptions, "membership" | "seeds" | "addresses">): ServiceClient<C>;
  /**
   * Listens, runs the startup hooks, becomes ready. Rejects with a `StartupError`
   * when a hook fails or times out, or when shutdown begins during startup.
   */
  start(): Promise<void>;
  /** The bound RPC address; available once `start` has begun listening. */
  readonly rpcAddress: { host: string; port: number };
  /** The bound HTTP address, or undefined when HTTP is off. */
  readonly httpAddress: { host: string; port: number } | undefined;
  readonly stats: NodeStats;
  /**
   * Drains and stops: the sequence in README "Stopping". Idempotent: every call
   * returns the same promise, whether before `start`, during it, or twice at once.
   */
  shutdown(reason?: string): Promise<ShutdownSummary>;
}

/** Composes router, dispatcher, servers and lifecycle into a node. */
export function createNode(options: NodeOptions): EbbNode {
  const { config } = options;
  const log = options.log ?? silentLogger;
  const router = new Router();
  const lifecycle = new Lifecycle(config.nodeId, (error) => log.error("a state listener failed", { error: errorText(error) }));
  /** Every inbound `$swim.*` message is parsed here before the membership sees it. */
  const swimGate = new SwimGate(log);
  const inflight = new InflightCounter();
  const hooks: { name: string; run: StartupHook }[] = [];
  const startupAbort = new AbortController();
  let runtime: Runtime | undefined = options.runtime;
  let server: RpcServer | undefined;
  let rpcListener: Listener | undefined;
  let http: HttpServer | undefined;
  let listening: Promise<void> | undefined;
  let stopping: Promise<ShutdownSummary> | undefined;
  let membership: Membership | undefined;
  let swimTransport: RpcSwimTransport | undefined;
  let lagMonitor: ReturnType<typeof setInterval> | undefined;
  const memberListeners = new Set<(event: MemberEvent) => void>();
  const clusterClients: ClusterClient[] = [];
  let lastLagMs = 0;

  const meta = (): MemberMeta => ({
    state: lifecycle.state,
    services: router.serviceNames(),
    version: VERSION,
    http: http?.port ?? null,
  });

  lifecycle.onChange((state, previous) => {
    log.info(`state ${previous} -> ${state}`, { state });
    // Ready and draining are pushed to every member at once; left is announced by leave().
    if (state === "ready" || state === "draining") membership?.updateMeta(meta());
  });

  /** Everything /metrics reports, gathered when scraped. */
  let drainStartedAt: number | undefined;
  const samples = (): Sample[] => {
    const out: Sample[] = [];
    for (const [method, stats] of dispatcher.stats.methods) {
      for (const [code, n] of stats.codes) out.push(["ebb_calls_total", { method, code }, n]);
      for (const [le, n] of CallStats.cumulative(stats)) out.push(["ebb_call_duration_seconds_bucket", { method, le }, n]);
      out.push(["ebb_call_duration_seconds_sum", { method }, stats.sumSeconds], ["ebb_call_duration_seconds_count", { method }, stats.count]);
    }
    out.push(["ebb_inflight", {}, inflight.count], ["ebb_handled_total", {}, inflight.entered]);
    out.push(["ebb_baffled_total", {}, lifecycle.baffledCount], ["ebb_not_ready_total", {}, lifecycle.notReadyCount], ["ebb_overloaded_total", {}, overloadedCount + (server?.stats.overloaded ?? 0)]);
    out.push(["ebb_connections_accepted_total", {}, server?.stats.accepted ?? 0], ["ebb_connections_rejected_total", {}, server?.stats.rejected ?? 0]);
    if (server) {
      const { stats } = server;
      out.push(["ebb_connections_open", {}, server.connections.size], ["ebb_connections_refused_total", {}, stats.refusedOverCap], ["ebb_accept_errors_total", {}, stats.acceptErrors]);
      out.push(["ebb_connections_timed_out_total", { kind: "read" }, stats.readTimeouts], ["ebb_connections_timed_out_total", { kind: "idle" }, stats.idleClosed], ["ebb_buffered_bytes", {}, server.bufferedBytes]);
    }
    out.push(["ebb_auth_failures_total", {}, server?.authGuard?.stats.failures ?? 0], ["ebb_auth_throttled_total", {}, server?.authGuard?.stats.throttled ?? 0]);
    const retries = new Map<string, number>();
    let clientCalls = 0;
    for (const cluster of clusterClients) {
      const m = cluster.metrics();
      clientCalls += m.calls;
      for (const [reason, n] of Object.entries(m.retries)) retries.set(reason, (retries.get(reason) ?? 0) + n);
    }
    out.push(["ebb_client_calls_total", {}, clientCalls]);
    // The share each callable node gets during its warm-up, as this node's clients weigh it (the highest of them).
    const weights = new Map<string, number>();
    for (const cluster of clusterClients) for (const c of cluster.candidates()) weights.set(c.id, Math.max(weights.get(c.id) ?? 0, c.weight));
    for (const [id, weight] of weights) out.push(["ebb_client_weight", { node: id }, weight]);
    for (const [reason, n] of retries) out.push(["ebb_client_retries_total", { reason }, n]);
    const byStatus: Record<string, number> = { alive: 0, suspect: 0, dead: 0, left: 0 };
    for (const member of membership?.list() ?? []) byStatus[member.status] = (byStatus[member.status] ?? 0) + 1;
    for (const [status, n] of Object.entries(byStatus)) out.push(["ebb_members", { status }, n]);
    for (const state of ["starting", "ready", "draining", "stopped"]) out.push(["ebb_lifecycle_state", { state }, lifecycle.state === state ? 1 : 0]);
    out.push(["ebb_drain_seconds", {}, drainStartedAt === undefined ? 0 : (Date.now() - drainStartedAt) / 1000]);
    out.push(["ebb_rejected_total", { reason: "swim" }, swimGate.rejected], ["ebb_rejected_total", { reason: "swim_member_cap" }, membership?.stats.overCap ?? 0]);
    out.push(["ebb_rejected_total", { reason: "swim_address_conflict" }, membership?.stats.addressConflicts ?? 0]);
    out.push(["ebb_rejected_total", { reason: "swim_incarnation_jump" }, membership?.stats.incarnationJumps ?? 0]);
    out.push(["ebb_event_loop_lag_seconds", {}, lastLagMs / 1000], ["ebb_membership_health_score", {}, membership?.healthScore ?? 0]);
    return out;
  };

  /** A startup hook's in-process call to this node's own services (admitted while starting). */
  const warmupCall = (method: string, input?: unknown): Promise<unknown> =>
    new Promise((resolve, reject) => {
      dispatcher.dispatch({ method, params: input === undefined ? [] : [input], meta: undefined, peer: "startup", warmup: true }, (error, result) =>
        error ? reject(error) : resolve(result),
      );
    });

  /** EBB_MAX_INFLIGHT: past the limit, a new request is refused unprocessed, so the caller tries another node. */
  let overloadedCount = 0;
  const overloaded = (): RpcError | undefined => {
    if (config.maxInflight === 0 || inflight.count < config.maxInflight) return undefined;
    overloadedCount++;
    return new RpcError(`Node ${config.nodeId} has ${inflight.count} requests in flight, its limit (EBB_MAX_INFLIGHT)`, "OVERLOADED", {
      data: { inflight: inflight.count, limit: config.maxInflight },
    });
  };

  /** Answers a `$swim.*` request through the membership. */
  const swim = (input: unknown, peer: string): Promise<unknown> =>
    new Promise((resolve, reject) => {
      if (!membership) return reject(new RpcError("Membership is not running", "UNAVAILABLE"));
      const message = swimGate.admit(input, peer);
      if (!message) return reject(new RpcError("Invalid membership message", "INVALID_PARAMS"));
      membership.handle(message, resolve);
    });

  const dispatcher = new Dispatcher({
    router,
    log,
    hooks: {
      admit: () => lifecycle.admit() ?? overloaded(),
      enter: () => inflight.enter(),
      leave: () => inflight.leave(),
    },
    builtins: {
      $ping: () => ({ node: config.nodeId, time: Date.now(), state: lifecycle.state }),
      $info: () => ({
        node: config.nodeId,
        version: VERSION,
        runtime: runtime?.name,
        runtimeVersion: runtime?.version,
        state: lifecycle.state,
        services: router.describe(),
      }),
      $members: () => membership?.list() ?? [],
      "$swim.ping": swim,
      "$swim.ping-req": swim,
      "$swim.sync": swim,
    },
  });

  /** Opens a listener; a failure names the listener, address and variable (a port in use is the usual one). */
  async function bound<T>(what: "RPC" | "HTTP", port: number, open: () => Promise<T>): Promise<T> {
    try {
      return await open();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      const variable = what === "RPC" ? "EBB_RPC_PORT" : "EBB_HTTP_PORT";
      throw new Error(`Cannot listen for ${what} on ${config.host}:${port} (${variable}): ${reason}`, { cause: error });
    }
  }

  async function listen(rt: Runtime): Promise<void> {
    server = new RpcServer(rt, {
      dispatcher,
      log,
      maxMessageBytes: config.maxMessageBytes,
      clusterKey: config.clusterKey,
      limits: config.limits,
      onNotification: (method, params, peer) => {
        if (!method.startsWith("$swim.") || !membership) return;
        const message = swimGate.admit(params[0], peer);
        if (message) membership.handle(message, () => {});
      },
    });
    rpcListener = await bound("RPC", config.rpcPort, () => server!.listen(config.host, config.rpcPort));
    if (config.httpPort !== null) {
      const app = createHttpApp({ nodeId: config.nodeId, lifecycle, inflight, dispatcher, metrics: samples, members: () => membership?.list() ?? [], maxBodyBytes: config.maxMessageBytes, maxDepth: config.limits.maxDepth, clusterKey: config.clusterKey });
      const port = config.httpPort;
      http = await bound("HTTP", port, () =>
        rt.serve({
          host: config.host,
          port,
          fetch: app.fetch,
          idleTimeoutMs: config.httpIdleTimeoutMs,
          acceptRetryMs: HTTP_ACCEPT_RETRY_MS,
          onListenerError: (error, retryMs) => log.warn(`HTTP listener failed: serving again in ${retryMs} ms`, { error }),
          onListenerRecovered: () => log.info("HTTP listener serving again"),
        }),
      );
    }
    const rpc = `${rpcListener.host}:${rpcListener.port}`;
    const fields: Record<string, unknown> = { rpc, runtime: rt.name };
    if (http) fields.http = `${http.host}:${http.port}`;
    log.info(`listening on ${rpc}${http ? `, http ${http.host}:${http.port}` : ""}`, fields);
    joinCluster(rt, rpcListener.port);
  }

  /** Joins the membership as `starting`: the node learns the cluster while its hooks run. */
  function joinCluster(rt: Runtime, rpcPort: number): void {
    const wildcard = config.host === "0.0.0.0" || config.host === "::";
    const addr = config.advertise ?? `${wildcard ? "127.0.0.1" : config.host}:${rpcPort}`;
    if (wildcard && !config.advertise) log.warn(`bound to ${config.host} without EBB_ADVERTISE: other members are told ${addr}`);
    swimTransport = new RpcSwimTransport(rt, log, config.maxMessageBytes, config.clusterKey, swimGate);
    membership = new Membership({
      id: config.nodeId,
      addr,
      meta: meta(),
      clock: realClock,
      transport: swimTransport,
      config: config.swim,
      onEvent: (event) => {
        const { id, status, incarnation, meta: m } = event.member;
        log.info(`member ${id} ${event.type}`, { member: id, event: event.type, status, incarnation, memberState: m.state });
        for (const listener of memberListeners) {
          try {
            listener(event);
          } catch (error) {
            log.error("a member event listener failed", { event: event.type, member: id, error: errorText(error) });
          }
        }
      },
      onError: (error, where) => log.warn(`membership: ${errorText(error)}`, { where }),
    });
    membership.start(config.seeds);
    // Lifeguard: a lagging event loop means our own timeouts are unreliable.
    let last = Date.now();
    lagMonitor = setInterval(() => {
      const now = Date.now();
      lastLagMs = Math.max(0, now - last - LAG_CHECK_MS);
      if (lastLagMs > LAG_THRESHOLD_MS) membership?.reportLag(1);
      last = now;
    }, LAG_CHECK_MS);
  }

  /** Announces `left`, lets it spread briefly, then stops the membership. */
  async function leaveCluster(): Promise<void> {
    if (lagMonitor !== undefined) clearInterval(lagMonitor);
    const leaving = membership;
    if (!leaving) return;
    await new Promise<void>((resolve) => leaving.leave(resolve));
    swimTransport?.close();
  }

  async function drain(reason: string): Promise<ShutdownSummary> {
    startupAbort.abort(new StartupError(`Startup aborted: ${reason}`, undefined, true));
    await listening?.catch(() => undefined);
    const started = (drainStartedAt = Date.now());
    const summary: ShutdownSummary = { reason, drainMs: 0, completed: 0, baffled: 0, cancelled: 0, timedOut: false, handled: 0, exitCode: 0 };
    if (!server) {
      lifecycle.advance("stopped");
      return summary;
    }
    const rpc = server;
    const baffledBefore = lifecycle.baffledCount;
    const inflightAtStart = inflight.count;
    const enteredAtStart = inflight.entered;

    // 1-2. Draining: readiness fails now, and every client hears $goaway at once.
    lifecycle.advance("draining");
    rpc.broadcastGoaway({ node: config.nodeId, reason: "draining" });
    log.info("draining", { reason, inflight: inflightAtStart, drainDelayMs: config.drainDelayMs });

    // 3. The baffle, after the optional delay for routers that learn late.
    if (config.drainDelayMs > 0) await delay(config.drainDelayMs);
    lifecycle.closeBaffle();

    // 4. Stop accepting RPC connections. HTTP keeps answering (probes, scrapes, the
    //    baffled gateway, with Connection: close) until the very end, below.
    await rpc.stopAccepting();

    // 5. Wait for the in-flight counter, up to the shutdown timeout; then cancel what is left.
    const admitted = inflightAtStart + (inflight.entered - enteredAtStart);
    summary.timedOut = !(await within(inflight.idle(), config.shutdownTimeoutMs));
    if (summary.timedOut) {
      summary.cancelled = inflight.count;
      dispatcher.abortAll(new RpcError(`Node ${config.nodeId} stopped before the call finished (shutdown timeout ${config.shutdownTimeoutMs} ms)`, "CANCELLED"));
      log.warn("shutdown timeout: cancelling what is still in flight", { cancelled: summary.cancelled });
    }
    summary.completed = admitted - summary.cancelled;

    // 6. Leave the membership (announce left, let it spread), then half-close every
    //    connection once its answers are written (a final $goaway first),
    //    give peers a moment to close their side, then close what is left.
    await leaveCluster();
    rpc.endAll();
    await within(rpc.whenAllClosed(), CONNECTION_LINGER_MS);
    rpc.closeAll();
    // Last, HTTP stops: its responses in flight get a short grace, then the process may exit.
    if (http) await within(http.stop(), HTTP_STOP_GRACE_MS);

    for (const cluster of clusterClients) cluster.close();
    lifecycle.advance("stopped");
    summary.baffled = lifecycle.baffledCount - baffledBefore;
    summary.handled = inflight.entered;
    summary.drainMs = Date.now() - started;
    summary.exitCode = summary.timedOut ? 1 : 0;
    log.info(
      `stopped: drained in ${summary.drainMs} ms, ${summary.completed} completed, ${summary.baffled} baffled, ${summary.cancelled} cancelled`,
      { ...summary },
    );
    return summary;
  }

  const node: EbbNode = {
    id: config.nodeId,
    get state() {
      return lifecycle.state;
    },
    register(contract, implementation) {
      if (listening) throw new Error("Register services before start()");
      router.register(contract, implementation);
      return node;
    },
    onStartup(name, hook) {
      if (listening) throw new Error("Add startup hooks before start()");
      hooks.push({ name, run: hook });
      return node;
    },
    onStateChange(listener) {
      return lifecycle.onChange(listener);
    },
    members() {
      return membership?.list() ?? [];
    },
    onMemberEvent(listener) {
      memberListeners.add(listener);
      return () => memberListeners.delete(listener);
    },
    client(contract, clientOptions) {
      const cluster = createClusterClient({ runtime, log, warmupMs: config.warmupMs, clusterKey: config.clusterKey, ...clientOptions, membership: node });
      clusterClients.push(cluster);
      return cluster.client(contract);
    },
    async start() {
      if (listening) throw new Error("start() was already called");
      if (stopping) throw new StartupError("Startup aborted: the node is already shutting down", undefined, true);
      listening = (async () => listen((runtime ??= await detectRuntime())))();
      await listening;
      await runStartupHooks(hooks, { timeoutMs: config.startupTimeoutMs, abort: startupAbort.signal, log, context: { call: warmupCall } });
      if (lifecycle.state !== "starting") throw new StartupError("Startup aborted: the node is shutting down", undefined, true);
      lifecycle.advance("ready");
    },
    get rpcAddress() {
      if (!rpcListener) throw new Error("The node is not listening yet");
      return { host: rpcListener.host, port: rpcListener.port };
    },
    get httpAddress() {
      return http ? { host: http.host, port: http.port } : undefined;
    },
    get stats() {
      return {
        accepted: server?.stats.accepted ?? 0,
        rejected: server?.stats.rejected ?? 0,
        pausedReads: server?.stats.pausedReads ?? 0,
        inflight: inflight.count,
        handled: inflight.entered,
        notReady: lifecycle.notReadyCount,
        baffled: lifecycle.baffledCount,
        connections: server?.connections.size ?? 0,
        bufferedBytes: server?.bufferedBytes ?? 0,
      };
    },
    shutdown(reason = "shutdown()") {
      stopping ??= drain(reason);
      return stopping;
    },
  };
  return node;
}

/** Resolves true if `promise` settles within `ms`, false otherwise; the timer never outlives it. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
