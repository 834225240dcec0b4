import { type ClusterClient, type ClusterClientOptions, createClusterClient } from "./cluster/client.ts";
import type { Config } from "./config/load.ts";
import { errorText } from "./error-text.ts";
import { nodeSamples, type NodeStats, nodeStats } from "./http/node-metrics.ts";
import { serveNodeHttp } from "./http/serve.ts";
import { InflightCounter } from "./lifecycle/inflight.ts";
import { InflightLimit } from "./lifecycle/overload.ts";
import { AdaptiveLimit } from "./lifecycle/adaptive.ts";
import { type ShutdownSummary, StopSequence } from "./lifecycle/shutdown.ts";
import { runStartupHooks, StartupError, type StartupHook } from "./lifecycle/startup.ts";
import { Lifecycle, type LifecycleState, type StateListener } from "./lifecycle/state.ts";
import { type Logger, silentLogger } from "./log.ts";
import { advertisedAddress, NodeMembership } from "./membership/node-membership.ts";
import type { Member, MemberEvent, MemberMeta } from "./membership/types.ts";
import type { ServiceClient } from "./rpc/client.ts";
import type { Implementation, ServerInterceptor, ServiceContract } from "./rpc/contract.ts";
import type { Keyring } from "./rpc/auth.ts";
import { nodeBuiltins } from "./rpc/builtins.ts";
import { Dispatcher } from "./rpc/dispatch.ts";
import { Router } from "./rpc/router.ts";
import { RpcServer } from "./rpc/server.ts";
import { bound, logListening } from "./runtime/bind.ts";
import { realClock } from "./runtime/clock.ts";
import type { RuntimeSource } from "./runtime/source.ts";
import { NodeRuntime, type TlsSettings } from "./security/tls.ts";
import type { HttpServer, Listener, Runtime } from "./runtime/types.ts";

export type { NodeStats } from "./http/node-metrics.ts";
export type { ShutdownSummary } from "./lifecycle/shutdown.ts";

/** The version of ebb, reported by `$info`. */
export const VERSION = "0.1.0";

/** Options of `createNode`. */
export interface NodeOptions {
  config: Config;
  log?: Logger;
  /** The runtime, or how to get it at `start` (mod.ts passes the detecting one). */
  runtime: RuntimeSource;
}

/** An ebb node: services, startup hooks, an RPC and an HTTP listener, and a graceful lifecycle. */
export interface EbbNode {
  readonly id: string;
  /** starting -> ready -> draining -> stopped. */
  readonly state: LifecycleState;
  /** Registers a service's handlers. Call before `start`. */
  register<C extends ServiceContract>(contract: C, implementation: Implementation<C>): EbbNode;
  /** Adds a server interceptor around every call of this node's services (before `start()`); the first added is the outermost. */
  use(interceptor: ServerInterceptor): EbbNode;
  /** Adds a startup hook; hooks run in order after the listeners open and before the node is ready. */
  onStartup(name: string, hook: StartupHook): EbbNode;
  /** Subscribes to state changes; returns the unsubscribe function. */
  onStateChange(listener: StateListener): () => void;
  /** The cluster as this node sees it (itself included); empty before `start`. */
  members(): Member[];
  /** Subscribes to membership events: join, update, suspect, dead, left (this node's own state changes come as update). */
  onMemberEvent(listener: (event: MemberEvent) => void): () => void;
  /** A typed client of a service anywhere in the cluster, found through this node's membership. */
  client<C extends ServiceContract>(contract: C, options?: Omit<ClusterClientOptions, "membership" | "seeds" | "addresses" | "runtime">): ServiceClient<C>;
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
   * New RPC connections, made or accepted, use `settings` from now on; open ones carry on
   * (SIGHUP in runNode). Rejects, keeping the old certificates, when TLS was off at start
   * or a listener refuses the new ones.
   */
  reloadTls(settings: TlsSettings): Promise<void>;
  /**
   * Drains and stops: the sequence in README "Stopping". Idempotent: every call
   * returns the same promise, whether before `start`, during it, or twice at once.
   * `exitCode` overrides the summary's (runNode passes 3 after a failed start).
   */
  shutdown(reason?: string, exitCode?: number): Promise<ShutdownSummary>;
}

/** Composes router, dispatcher, servers, membership and lifecycle into a node. */
export function createNode(options: NodeOptions): EbbNode {
  const { config } = options;
  const log = options.log ?? silentLogger;
  const router = new Router();
  const lifecycle = new Lifecycle(config.nodeId, (error) => log.error("a state listener failed", { error: errorText(error) }));
  // EBB_CLUSTER_KEY's ring and EBB_CLUSTER_ID, proven by every connection in and out.
  const clusterKey: Keyring | undefined = config.clusterKey && { keys: config.clusterKey, clusterId: config.clusterId };
  const membership = new NodeMembership({ id: config.nodeId, log, maxMessageBytes: config.maxMessageBytes, clusterKey, swim: config.swim, keepaliveMs: config.keepaliveMs });
  const inflight = new InflightCounter();
  const adaptive = config.adaptiveConcurrency ? new AdaptiveLimit({ max: config.maxInflight || 100_000 }, performance.now()) : undefined;
  const limit = new InflightLimit(config.nodeId, config.maxInflight, inflight, adaptive);
  const hooks: { name: string; run: StartupHook }[] = [];
  const startupAbort = new AbortController();
  const clusterClients: ClusterClient[] = [];
  // With EBB_TLS_* set, every connection the node makes or accepts (RPC, membership, clients, HTTP) is TLS.
  const runtimes = new NodeRuntime(options.runtime, config.tls);
  let runtime: Runtime | undefined;
  let server: RpcServer | undefined;
  let rpcListener: Listener | undefined;
  let http: HttpServer | undefined;
  let metricsHttp: HttpServer | undefined;
  let listening: Promise<void> | undefined;
  let stopping: Promise<ShutdownSummary> | undefined;

  const meta = (): MemberMeta => ({ state: lifecycle.state, services: router.serviceNames(), version: VERSION, http: http?.port ?? null });
  lifecycle.onChange((state, previous) => {
    log.info(`state ${previous} -> ${state}`, { state });
    // Ready and draining are pushed to every member at once; left is announced by leave().
    if (state === "ready" || state === "draining") membership.updateMeta(meta());
  });

  const dispatcher = new Dispatcher({
    router,
    log,
    hooks: { admit: () => lifecycle.admit() ?? limit.check(), enter: () => inflight.enter(), leave: () => inflight.leave(), observe: adaptive ? (ms) => limit.observe(ms) : undefined },
    builtins: nodeBuiltins({ nodeId: config.nodeId, version: VERSION, lifecycle, router, membership, runtime: () => runtime }),
  });

  const stop = new StopSequence(
    {
      lifecycle,
      inflight,
      server: () => server,
      abortAll: (error) => dispatcher.abortAll(error),
      leave: () => membership.leave(),
      stopHttp: async () => void (await Promise.all([http?.stop(), metricsHttp?.stop()])),
      closeClients: () => clusterClients.forEach((cluster) => cluster.close()),
    },
    { nodeId: config.nodeId, drainDelayMs: config.drainDelayMs, shutdownTimeoutMs: config.shutdownTimeoutMs, clock: realClock, log },
  );
  const samples = () => nodeSamples({ dispatcher, inflight, lifecycle, membership, overloaded: () => limit.refused, inflightLimit: () => limit.current, server: () => server, clusterClients, drainSeconds: () => stop.drainSeconds() });

  async function listen(rt: Runtime): Promise<void> {
    const { maxMessageBytes, limits } = config;
    const onNotification = (method: string, params: unknown[], peer: string) => membership.notify(method, params, peer);
    const rpc = (server = new RpcServer(rt, { dispatcher, log, maxMessageBytes, clusterKey, limits, onNotification }));
    const listener = (rpcListener = await bound("RPC", config.host, config.rpcPort, () => rpc.listen(config.host, config.rpcPort)));
    const { nodeId, host, httpPort: port, metricsAddr, httpIdleTimeoutMs: idleTimeoutMs } = config;
    const members = () => membership.list();
    ({ http, metrics: metricsHttp } = await serveNodeHttp(rt, { nodeId, lifecycle, inflight, dispatcher, metrics: samples, members, maxBodyBytes: maxMessageBytes, maxDepth: limits.maxDepth, clusterKey, host, port, metricsAddr, idleTimeoutMs, log }));
    logListening(log, rt.name, { rpc: listener, http, metrics: metricsHttp });
    // Joins as `starting`: the node learns the cluster while its hooks run.
    membership.start(rt, advertisedAddress(config.host, listener.port, config.advertise, log), meta(), config.seeds);
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
    use(interceptor) {
      if (listening) throw new Error("Add interceptors before start()");
      router.use(interceptor);
      return node;
    },
    onStartup(name, hook) {
      if (listening) throw new Error("Add startup hooks before start()");
      hooks.push({ name, run: hook });
      return node;
    },
    onStateChange: (listener) => lifecycle.onChange(listener),
    members: () => membership.list(),
    onMemberEvent: (listener) => membership.onMemberEvent(listener),
    client(contract, clientOptions) {
      const cluster = createClusterClient({ runtime: runtime ?? (() => runtimes.get()), log, warmupMs: config.warmupMs, keepaliveMs: config.keepaliveMs, clusterKey, ...clientOptions, membership: node });
      clusterClients.push(cluster);
      return cluster.client(contract);
    },
    async start() {
      if (listening) throw new Error("start() was already called");
      if (stopping) throw new StartupError("Startup aborted: the node is already shutting down", undefined, true);
      listening = (async () => listen((runtime = await runtimes.get())))();
      await listening;
      await runStartupHooks(hooks, { timeoutMs: config.startupTimeoutMs, abort: startupAbort.signal, log, context: { call: (method, input) => dispatcher.warmupCall(method, input) } });
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
      return nodeStats(server, inflight, lifecycle);
    },
    reloadTls: (settings) => runtimes.reload(settings),
    shutdown(reason = "shutdown()", exitCode?: number) {
      stopping ??= (async () => {
        startupAbort.abort(new StartupError(`Startup aborted: ${reason}`, undefined, true));
        await listening?.catch(() => undefined);
        return stop.run(reason, exitCode);
      })();
      return stopping;
    },
  };
  return node;
}
