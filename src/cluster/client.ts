import { type Logger, silentLogger } from "../log.ts";
import { type Clock, realClock, type TimerHandle } from "../runtime/clock.ts";
import { type CallOptions, type Channel, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_MAX_MESSAGE_BYTES, type Transport } from "../rpc/channel.ts";
import type { ClusterKey } from "../rpc/auth.ts";
import { createClient, type ServiceClient } from "../rpc/client.ts";
import type { ServiceContract } from "../rpc/contract.ts";
import { RpcError } from "../rpc/errors.ts";
import { parseInfo } from "../rpc/info.ts";
import { currentCall, enableCallScope, inherit } from "../rpc/call-scope.ts";
import type { RuntimeSource } from "../runtime/source.ts";
import type { ErrorCode } from "../wire/codes.ts";
import { DEFAULT_WARMUP_MS, pickTwoChoices } from "./balancer.ts";
import { Discovery, type MembershipView } from "./discovery.ts";
import { type Endpoint, EndpointTable } from "./endpoints.ts";
import { ConnectionPool } from "./pool.ts";
import { type RetryReason, retryReason } from "./retry.ts";
import { RetryBudget, type RetryBudgetOptions } from "./budget.ts";
import { isNodeFault, OutlierDetector, type OutlierOptions } from "./outliers.ts";
import { DEFAULT_HEDGING, type HedgingOptions, LatencyTracker } from "./hedging.ts";

export type { MembershipView } from "./discovery.ts";

/** Options of `createClusterClient`. */
export interface ClusterClientOptions {
  /** Discovery: nodes to ask for the member list (`$members`), refreshed every `refreshMs`. */
  seeds?: string[];
  /** Static mode: fixed node addresses, no membership. */
  addresses?: string[];
  /** A node's own membership view (what `node.client()` uses). */
  membership?: MembershipView;
  /** The runtime, or how to get it at the first connection (mod.ts's `createClusterClient` passes the detecting one). */
  runtime: RuntimeSource;
  /** Time and timers; the real clock by default. */
  clock?: Clock;
  log?: Logger;
  /** Ramp of a node's share after this client first saw it ready. Default 10 s. */
  warmupMs?: number;
  /** Weight of a node at the start of its warm-up. Default 0.1. */
  warmupFloor?: number;
  /** Member-list refresh interval in seeds mode, while no membership watch runs. Default 1 s. */
  refreshMs?: number;
  /**
   * Seeds mode: watch a connected node's membership (`$watch`: its list, then each change as it
   * happens) instead of polling `$members` every `refreshMs`; the poll goes on every
   * `watchRefreshMs` (60 s) as a safety net. Default true; `false`: poll only.
   */
  watch?: boolean;
  /** The safety-net poll's interval while a watch runs. Default 60 s. */
  watchRefreshMs?: number;
  /** For this long after a watch begins, the poll keeps its `refreshMs` pace (the watched node's view may be partial). Default 10 s. */
  watchSettleMs?: number;
  /** Deadline of calls that set none. Default 30 s. */
  timeoutMs?: number;
  /** Retry calls of idempotent methods whose connection was lost mid-call. Default true. */
  idempotentRetries?: boolean;
  /**
   * Per-attempt timeout of idempotent methods (gRPC's `perAttemptRecvTimeout`): a try with no answer
   * this long is given up and the call goes to another node, within its deadline. Set it above the
   * method's p99 so that only a node that is lossy or stalled is left. Default: none (one try has the whole deadline).
   */
  attemptTimeoutMs?: number;
  /** How long to wait for a connection to open. Default 5 s. */
  connectTimeoutMs?: number;
  /** Keep-alive ping after this much silence on a connection; no answer closes it (see `ChannelOptions.keepaliveMs`). Default 10 s; 0: off. */
  keepaliveMs?: number;
  /** How long a call waits for a candidate to appear before failing UNAVAILABLE. Default 1 s. */
  candidateWaitMs?: number;
  maxMessageBytes?: number;
  /** EBB_CLUSTER_KEY of the cluster: every connection proves it. */
  clusterKey?: ClusterKey;
  /** Middleware around every call (see ClientInterceptor); the first is the outermost. */
  interceptors?: ClientInterceptor[];
  /**
   * Bounds retries (see RetryBudget; defaults in DEFAULT_RETRY_BUDGET: 10% of calls plus 10 a second
   * over 10 s). Drains stay free: a baffled call, a node not ready yet or one that refuses the
   * connection is sent elsewhere whatever the budget. `false`: unbounded.
   */
  retryBudget?: RetryBudgetOptions | false;
  /** Leaves out nodes whose calls keep failing (see OutlierDetector; defaults in DEFAULT_OUTLIER_EJECTION). `false`: off. */
  outlierEjection?: OutlierOptions | false;
  /** Hedged calls of idempotent methods (see `ClusterClient.hedged`, HedgingOptions). Off unless given: `{}` takes the defaults. */
  hedging?: HedgingOptions | false;
}

/** One call as a client interceptor sees it. */
export interface ClientCall {
  readonly method: string;
  readonly input: unknown;
  readonly options: CallOptions;
}

/** What sends a call: the next interceptor, or, at the end of the chain, the cluster client. */
export type ClientNext = (call: ClientCall) => Promise<unknown>;

/**
 * Client-side middleware, connect-es's shape: `(next) => async (call) => …`. It sees each call of the
 * cluster client once, whatever retries the client makes inside it (baffled, overloaded, lost
 * connections); a typed method's retry policy calls it once per try. It may
 * change the input or options, short-circuit by throwing an `RpcError` (nothing is sent), and see
 * the result or the error.
 */
export type ClientInterceptor = (next: ClientNext) => ClientNext;

/** Counters the client keeps. */
export interface ClusterClientMetrics {
  calls: number;
  /** Calls that failed, by the code the caller saw. */
  errors: Partial<Record<ErrorCode, number>>;
  /** Transparent retries by reason: baffled (SHUTTING_DOWN), overloaded, not ready, unreachable, connection lost (idempotent). */
  retries: Record<string, number>;
  /** Calls in flight per node id. */
  inflight: Record<string, number>;
  /** Calls sent to each node id (tries, retries included). */
  sentByNode: Record<string, number>;
  /** Retries the budget refused: the caller got the error it had. */
  retriesRefused: number;
  /** Times a node was ejected for failing calls. */
  ejections: number;
  /** Hedges sent, and hedges whose answer came first. */
  hedges: number;
  hedgesWon: number;
}

/** A call's retries so far, for `mayRetry`. */
interface RetryCount {
  made: number;
  freeUsed: boolean;
}

/** Most tries of one call, retries included: a bound on what one call can cost, whatever the budget has left. */
const MAX_TRIES = 10;

/** The longest a node's `retryAfterMs` keeps it out of this client's picks (a bound on what a node can ask). */
const MAX_PUSHBACK_MS = 10_000;

/** The abort reason of a hedged call's tries that lost: another answered first. */
const HEDGE_LOST = new RpcError("Another try of this call answered first", "CANCELLED");
/** Failures of one try of a hedged call that leave its other tries running: the node's, not the request's. */
const HEDGE_GOES_ON: ReadonlySet<ErrorCode> = new Set(["UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "OVERLOADED", "SHUTTING_DOWN"]);

/** Retries that cost nothing from the budget: a drain or a restart, where sending elsewhere is the whole point and the node count bounds them. */
const FREE_RETRIES: ReadonlySet<RetryReason | "unreachable"> = new Set(["baffled", "not ready", "unreachable"]);

/** How long a new connection's `$info` question may take. */
const INFO_TIMEOUT_MS = 2_000;
/** Most method names a generic client learns from `$info` (a bound on what a node can make it hold). */
const MAX_LEARNED_METHODS = 4_096;

/** The service a method belongs to; undefined for ebb's own `$` methods, which every node offers. */
export function serviceOf(method: string): string | undefined {
  const dot = method.indexOf(".");
  return method.startsWith("$") || dot < 0 ? undefined : method.slice(0, dot);
}

/**
 * Calls a cluster: finds nodes (membership, seeds or static addresses; see
 * Discovery), balances by power of two choices with warm-up over the
 * EndpointTable, connects through the ConnectionPool, and retries at once on
 * another node whatever a node promised it did not process (see retryReason).
 */
export class ClusterClient implements Transport {
  private readonly idempotent = new Set<string>();
  /** Services this client has a contract of: their idempotency comes from it, never from `$info`. */
  private readonly typed = new Set<string>();
  private readonly timeoutMs: number;
  private readonly idempotentRetries: boolean;
  private readonly candidateWaitMs: number;
  private readonly attemptTimeoutMs: number | undefined;
  private readonly clock: Clock;
  private readonly table: EndpointTable<Channel>;
  private readonly pool: ConnectionPool;
  private readonly discovery: Discovery;
  private waiters: (() => void)[] = [];
  /** The interceptors around `send`, when there are any. */
  private readonly chain: ClientNext | undefined;
  private closed = false;
  /**
   * Request ids, kept across a call's retries: about 55 random bits in base 36 and "-" (unique across
   * clients), then a counter. A third the length of a UUID: the server decodes a string at ~13 ns a character.
   */
  private readonly idPrefix = `${crypto.getRandomValues(new Uint32Array(2)).reduce((text, word) => text + word.toString(36).padStart(7, "0"), "").slice(0, 12)}-`;
  private idCounter = 0;
  private readonly stats: ClusterClientMetrics = { calls: 0, errors: {}, retries: {}, inflight: {}, sentByNode: {}, retriesRefused: 0, ejections: 0, hedges: 0, hedgesWon: 0 };
  private readonly hedging: { options: Required<Omit<HedgingOptions, "delayMs">> & Pick<HedgingOptions, "delayMs">; latency: LatencyTracker } | undefined;
  private readonly budget: RetryBudget | undefined;
  private readonly outliers: OutlierDetector | undefined;
  private readonly log: Logger;

  constructor(source: ClusterClientOptions) {
    // The core is given its runtime; mod.ts's createClusterClient supplies the detected one.
    if (!source.runtime) throw new TypeError("ClusterClient needs a runtime: use createClusterClient (from mod.ts), which detects it, or pass `runtime`");
    // Handlers in this process now run inside their call's scope, so that their calls through this client inherit it.
    enableCallScope();
    this.clock = source.clock ?? realClock;
    this.timeoutMs = source.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.idempotentRetries = source.idempotentRetries ?? true;
    this.candidateWaitMs = source.candidateWaitMs ?? 1_000;
    this.attemptTimeoutMs = source.attemptTimeoutMs;
    this.budget = source.retryBudget === false ? undefined : new RetryBudget(source.retryBudget ?? {}, () => this.clock.now());
    this.outliers = source.outlierEjection === false ? undefined : new OutlierDetector(source.outlierEjection ?? {});
    if (source.hedging) {
      const options = { ...DEFAULT_HEDGING, ...source.hedging };
      if (!(Number.isInteger(options.maxHedges) && options.maxHedges >= 0 && options.maxHedges <= 4) || !(options.floorMs >= 0) || !(options.quantile > 0 && options.quantile < 1) || (options.delayMs !== undefined && !(options.delayMs >= 0))) {
        throw new RangeError(`hedging: maxHedges a whole number from 0 to 4, floorMs and delayMs 0 or more, quantile between 0 and 1; not ${JSON.stringify(source.hedging)}`);
      }
      this.hedging = { options, latency: new LatencyTracker(options.quantile, options.floorMs) };
    }
    this.table = new EndpointTable({ warmupMs: source.warmupMs ?? DEFAULT_WARMUP_MS, warmupFloor: source.warmupFloor ?? 0.1, addresses: source.addresses });
    const onChange = () => this.wake();
    const log = (this.log = source.log ?? silentLogger);
    const { runtime, clusterKey, connectTimeoutMs, keepaliveMs } = source;
    const onConnected = (channel: Channel) => this.learnFrom(channel);
    const onNotification = (method: string, params: unknown[], endpoint: Endpoint<Channel>) => method === "$watch" && this.discovery.changed(params, endpoint);
    this.pool = new ConnectionPool(this.table, { runtime, clock: this.clock, log, maxMessageBytes: source.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES, clusterKey, connectTimeoutMs, keepaliveMs, onChange, onConnected, onNotification });
    const membersFrom = (addr: string) => this.pool.membersFrom(addr);
    const interceptors = source.interceptors ?? [];
    if (interceptors.length > 0) {
      let next: ClientNext = (call) => this.send(call.method, call.input, call.options);
      for (let i = interceptors.length - 1; i >= 0; i--) next = interceptors[i]!(next);
      this.chain = next;
    }
    const watch = source.watch === false ? undefined : (endpoint: Endpoint) => this.pool.watch(endpoint as Endpoint<Channel>);
    this.discovery = new Discovery(this.table, { ...source, refreshMs: source.refreshMs ?? 1_000, clock: this.clock, membersFrom, onChange, log, watch });
    this.discovery.start();
  }

  /** A typed client of one service over this cluster; its idempotent methods may be retried after a lost connection. */
  client<C extends ServiceContract>(contract: C): ServiceClient<C> {
    this.typed.add(contract.name);
    for (const [method, spec] of Object.entries(contract.methods)) {
      if (spec.idempotent) this.idempotent.add(`${contract.name}.${method}`);
      else this.idempotent.delete(`${contract.name}.${method}`);
    }
    return createClient(contract, this);
  }

  /** A method's `retry` policy asks before each retry: its retries come out of the retry budget too. */
  allowRetry(): boolean {
    if (!this.budget || this.budget.tryWithdraw()) return true;
    this.stats.retriesRefused++;
    return false;
  }

  /** Deadline of calls that set none. */
  get defaultTimeoutMs(): number {
    return this.timeoutMs;
  }

  /** Counters: calls, errors by code, retries by reason, in flight per node. */
  metrics(): ClusterClientMetrics {
    const inflight: Record<string, number> = {};
    for (const e of this.table.values()) if (e.inflight > 0) inflight[e.id] = e.inflight;
    const { calls, errors, retries, sentByNode, retriesRefused, ejections, hedges, hedgesWon } = this.stats;
    return { calls, errors: { ...errors }, retries: { ...retries }, inflight, sentByNode: { ...sentByNode }, retriesRefused, ejections, hedges, hedgesWon };
  }

  /** Nodes this client may call now: ids and weights, for tools and tests. */
  candidates(service?: string): { id: string; addr: string; weight: number; inflight: number }[] {
    const now = this.clock.now();
    return this.table.eligible(service, undefined, now).map((e) => ({ id: e.id, addr: e.addr, weight: this.table.weight(e, now), inflight: e.inflight }));
  }

  /** Resolves once at least `count` nodes offering `service` can be called; rejects after `timeoutMs`. */
  async whenAvailable(service: string | undefined, count = 1, timeoutMs = 10_000): Promise<void> {
    const until = this.clock.now() + timeoutMs;
    while (this.table.eligible(service, undefined, this.clock.now()).length < count) {
      if (this.refusedByKey) throw this.discovery.error!;
      if (this.closed || this.clock.now() >= until) throw new RpcError(`Fewer than ${count} nodes offering "${service ?? "$"}" within ${timeoutMs} ms`, "UNAVAILABLE", { processed: false });
      await this.changed(until - this.clock.now());
    }
  }

  /**
   * Calls `method` on some node, through the interceptors; see the class comment for the retry rules.
   * Made inside a handler, the call inherits that handler's call (see `inherit`): what is left of its
   * deadline, its cancellation, request id and trace.
   */
  call(method: string, input: unknown, options: CallOptions = {}): Promise<unknown> {
    const parent = options.inherit === false ? undefined : currentCall();
    if (parent) {
      options = inherit(parent, options);
      // The handler's caller stopped waiting: nothing is sent (a timer or a shared promise that outlived the handler passes `inherit: false`).
      if (options.timeoutMs === 0) return Promise.reject(new RpcError(`Not sent: the deadline of ${parent.method}, which "${method}" was called for, has passed`, "DEADLINE_EXCEEDED", { processed: false }));
    }
    if (!this.chain) return this.send(method, input, options);
    // An interceptor that throws, or returns a plain value, still gives the caller a promise.
    try {
      return Promise.resolve(this.chain({ method, input, options }));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** One call, its retries and hedges included. */
  private send(method: string, input: unknown, options: CallOptions): Promise<unknown> {
    this.stats.calls++;
    this.budget?.deposit();
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const deadline = this.clock.now() + timeoutMs;
    const requestId = options.requestId ?? `${this.idPrefix}${(this.idCounter++).toString(36)}`;
    if (this.hedging && this.idempotent.has(method)) return this.hedged(method, input, options, requestId, deadline);
    return this.tries(method, input, options, requestId, deadline, undefined);
  }

  /**
   * Hedged calls of an idempotent method (gRPC A6): the first try goes out at once; if no answer came
   * within the hedge delay (`hedgeDelayMs`, the client's fixed one, or the method's observed latency
   * at the hedging quantile) the same request, same request id, goes to another node, up to
   * `maxHedges` times, each taken from the retry budget. The first answer wins and the other tries
   * are cancelled (`$cancel`). A try that fails with a node's fault or refusal leaves the others
   * running; an answer about the request (APPLICATION, INVALID_PARAMS…) ends the call.
   */
  private hedged(method: string, input: unknown, options: CallOptions, requestId: string, deadline: number): Promise<unknown> {
    const hedging = this.hedging!;
    const delayMs = options.hedgeDelayMs ?? hedging.options.delayMs ?? hedging.latency.delay(method);
    // The latency of the try that answered, from its own start: a hedge's wait is not the method's
    // latency (counted in, a frozen node would raise the delay with every hedge it causes).
    const record = (started: number) => (result: unknown) => {
      hedging.latency.record(method, this.clock.now() - started);
      return result;
    };
    if (delayMs === undefined || hedging.options.maxHedges === 0) return this.tries(method, input, options, requestId, deadline, undefined).then(record(this.clock.now()));
    return new Promise((resolve, reject) => {
      // Nodes any try of this call has taken or tried: each hedge goes elsewhere.
      const taken = new Set<Endpoint<Channel>>();
      const controllers: AbortController[] = [];
      const service = serviceOf(method);
      let running = 0;
      let hedges = 0;
      let done = false;
      let timer: TimerHandle | undefined;
      const finish = (winner: AbortController | undefined) => {
        done = true;
        timer?.cancel();
        for (const controller of controllers) if (controller !== winner) controller.abort(HEDGE_LOST);
      };
      const launch = (hedge: boolean) => {
        const controller = new AbortController();
        controllers.push(controller);
        running++;
        const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
        const answered = record(this.clock.now());
        this.tries(method, input, { ...options, signal }, requestId, deadline, taken).then(
          (result) => {
            if (done) return;
            if (hedge) this.stats.hedgesWon++;
            finish(controller);
            resolve(answered(result));
          },
          (error: RpcError) => {
            running--;
            if (done) return;
            // Another try still running may answer: a node's fault or refusal says nothing of the request. With
            // none running, the failed try already made the retries it could: the caller has its error now.
            if (running > 0 && HEDGE_GOES_ON.has(error.code) && !options.signal?.aborted) return;
            finish(undefined);
            reject(error);
          },
        );
      };
      const arm = () => {
        timer = this.clock.setTimer(delayMs, () => {
          timer = undefined;
          // A hedge needs time left, a node no try has taken, and the budget's leave; refused any of
          // them, the tries out there go on alone and no other hedge is tried for this call.
          if (done || options.signal?.aborted || this.clock.now() >= deadline) return;
          if (this.pick(service, taken) === undefined) return;
          if (this.budget && !this.budget.tryWithdraw()) {
            this.stats.retriesRefused++;
            return;
          }
          hedges++;
          this.stats.hedges++;
          launch(true);
          if (hedges < hedging.options.maxHedges) arm();
        });
      };
      launch(false);
      arm();
    });
  }

  /** The tries of one call, one at a time: the first, then retries on other nodes (see retryReason); `taken` is shared by a call's hedges. */
  private async tries(method: string, input: unknown, options: CallOptions, requestId: string, deadline: number, taken: Set<Endpoint<Channel>> | undefined): Promise<unknown> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const service = serviceOf(method);
    let idempotent = this.idempotent.has(method);
    // The nodes this call already tried (and, hedged, the ones its other tries took); allocated on the first retry only.
    let tried = taken;
    // The last try's error, when it ran out of its attempt timeout: what the caller sees if no other node is left.
    let timedOut: RpcError | undefined;
    // This call's retries so far; made on the first one, so a call that needs none allocates nothing for them.
    let retries: RetryCount | undefined;
    for (;;) {
      // The hot path stays synchronous: a node to call now, on an open connection.
      const endpoint = this.pick(service, tried) ?? (timedOut ? undefined : await this.choose(service, (tried ??= new Set()), deadline, options.signal));
      if (!endpoint) return this.fail(timedOut ?? this.table.noCandidate(service, tried ?? new Set(), this.discovery.error));
      taken?.add(endpoint);
      let channel: Channel;
      try {
        // Waiting for a connection sends nothing, so any call may give up on a slow one and go elsewhere:
        // within its attempt timeout when it has one, and always within its deadline.
        const waitMs = Math.min(this.attemptTimeoutMs ?? Infinity, deadline - this.clock.now());
        channel = endpoint.channel && !endpoint.channel.closed ? endpoint.channel : await this.pool.connect(endpoint, waitMs);
      } catch (error) {
        // A key mismatch is the same on every node: say so rather than try them all.
        if (error instanceof RpcError && error.code === "UNAUTHENTICATED") return this.fail(error);
        (tried ??= new Set()).add(endpoint);
        if (!this.mayRetry((retries ??= { made: 0, freeUsed: false }), true)) return this.fail(RpcError.from(error, "UNAVAILABLE"));
        this.retried("unreachable", endpoint.id, options);
        continue;
      }
      const left = deadline - this.clock.now();
      if (left <= 0) return this.fail(new RpcError(`Deadline of ${timeoutMs} ms passed before "${method}" could be sent`, "DEADLINE_EXCEEDED", { processed: false }));
      const attemptMs = idempotent && this.idempotentRetries && this.attemptTimeoutMs !== undefined && this.attemptTimeoutMs < left ? this.attemptTimeoutMs : left;
      endpoint.inflight++;
      this.stats.sentByNode[endpoint.id] = (this.stats.sentByNode[endpoint.id] ?? 0) + 1;
      try {
        const { signal, headers, onHeaders, traceparent, tracestate } = options;
        const result = await channel.call(method, input, { timeoutMs: attemptMs, signal, requestId, headers, onHeaders, traceparent, tracestate });
        endpoint.answeredAt = deadline - left; // when it was sent: no clock read on the hot path
        if (endpoint.faults > 0) endpoint.faults = 0;
        return result;
      } catch (error) {
        const rpcError = RpcError.from(error);
        // A hedge that lost: another try answered; nothing to count.
        if (options.signal?.reason === HEDGE_LOST) throw rpcError;
        if (rpcError.code === "OVERLOADED") this.pushback(endpoint, rpcError.data);
        const attemptTimedOut = attemptMs < left;
        // A cancel is the caller's doing, not the node's.
        if (!options.signal?.aborted) this.judge(endpoint, rpcError);
        // Read again: a generic client may have learned it from `$info` meanwhile (asked first on every new connection).
        idempotent = this.idempotent.has(method);
        const reason = retryReason({ code: rpcError.code, processed: rpcError.processed, idempotent, idempotentRetries: this.idempotentRetries, attemptTimedOut });
        if (!reason) return this.fail(rpcError);
        if (!this.mayRetry((retries ??= { made: 0, freeUsed: false }), FREE_RETRIES.has(reason))) return this.fail(rpcError);
        timedOut = reason === "attempt timed out (idempotent)" ? rpcError : undefined;
        (tried ??= new Set()).add(endpoint);
        this.retried(reason, endpoint.id, options);
      } finally {
        endpoint.inflight--;
      }
    }
  }

  /**
   * Learns from a node's `$info`, asked first on every new connection, which methods are idempotent,
   * for the services this client has no contract of (`ebb call`, `ebb bench`, generic clients). The
   * question goes out before the connection's first call, so that call's retry decision can use the
   * answer. A node could claim a method idempotent that is not (its calls would then be retried after
   * a lost connection): a client that must not trust the cluster on this uses the contract.
   */
  private learnFrom(channel: Channel): void {
    channel.call("$info", undefined, { timeoutMs: INFO_TIMEOUT_MS }).then((answer) => {
      const info = parseInfo(answer);
      if (info?.node !== undefined) for (const e of this.table.values()) if (e.channel === channel) e.nodeId = info.node;
      for (const [service, methods] of Object.entries(info?.services ?? {})) {
        for (const m of methods) {
          // A method's own service decides, not the key it was listed under: a node cannot slip a contract's method in.
          if (serviceOf(m.name) !== service || this.typed.has(service)) continue;
          if (!m.idempotent) this.idempotent.delete(m.name);
          else if (this.idempotent.size < MAX_LEARNED_METHODS) this.idempotent.add(m.name);
        }
      }
    }, () => {
      // A node that does not answer `$info` (another msgpack-rpc server): nothing is learned.
    });
  }

  /** Closes every connection and stops discovery. */
  close(): void {
    this.closed = true;
    this.discovery.stop();
    this.pool.closeAll();
    this.wake();
  }

  /** The seeds refuse our cluster key and no node is known: waiting changes nothing. */
  private get refusedByKey(): boolean {
    return this.discovery.error?.code === "UNAUTHENTICATED" && this.table.size === 0;
  }

  /** A node to call now, by weighted power of two choices; undefined when none is eligible. */
  private pick(service: string | undefined, tried: Set<Endpoint<Channel>> | undefined): Endpoint<Channel> | undefined {
    const now = this.clock.now();
    let candidates = this.table.eligible(service, tried, now);
    // Every node left is ejected: better a node that failed lately than none (Envoy's panic mode).
    if (candidates.length === 0 && this.outliers) candidates = this.table.eligible(service, tried, now, true);
    if (candidates.length <= 1) return candidates[0];
    // A node still connecting (perhaps to a host that never answers) only when none is connected.
    if (candidates.some((e) => e.connecting !== undefined) && candidates.some((e) => e.channel !== undefined && !e.channel.closed)) {
      candidates = candidates.filter((e) => e.connecting === undefined);
      if (candidates.length <= 1) return candidates[0];
    }
    return pickTwoChoices(candidates, (e) => this.table.weight(e, now));
  }

  /** Waits (up to `candidateWaitMs`) for a node to call when none is eligible now. */
  private async choose(service: string | undefined, tried: Set<Endpoint<Channel>>, deadline: number, signal: AbortSignal | undefined): Promise<Endpoint<Channel> | undefined> {
    const waitUntil = Math.min(deadline, this.clock.now() + this.candidateWaitMs);
    for (;;) {
      const picked = this.pick(service, tried);
      if (picked) return picked;
      if (this.closed || signal?.aborted || this.clock.now() >= waitUntil || this.refusedByKey) return undefined;
      // Static addresses, all tried by this call: no other node can turn up, so waiting cannot help.
      if (this.discovery.isStatic && tried.size >= this.table.size) return undefined;
      // Nothing to call right now (a restart in progress, nodes pushing back): wait for the view to change, or a backoff to end.
      const backoffEnds = this.table.nextBackoffEnd(this.clock.now()) ?? Infinity;
      await this.changed(Math.min(waitUntil, backoffEnds) - this.clock.now());
    }
  }

  /**
   * Whether one more retry of a call may go: at most MAX_TRIES tries in all; the call's first
   * drain-or-restart retry (`free`) costs nothing, the others come out of the retry budget, so a
   * storm of them is bounded too.
   */
  private mayRetry(count: RetryCount, free: boolean): boolean {
    if (++count.made >= MAX_TRIES) return false;
    if (free && !count.freeUsed) return (count.freeUsed = true);
    if (!this.budget || this.budget.tryWithdraw()) return true;
    this.stats.retriesRefused++;
    return false;
  }

  /**
   * Pushback: a node that refused a call OVERLOADED with `retryAfterMs` in its data (an adaptive
   * limit's hint) gets no call from this client for that long, at most MAX_PUSHBACK_MS.
   */
  private pushback(endpoint: Endpoint<Channel>, data: unknown): void {
    if (typeof data !== "object" || data === null) return;
    const { retryAfterMs: after, node } = data as { retryAfterMs?: unknown; node?: unknown };
    if (typeof after !== "number" || !(after > 0)) return;
    // Only the node's own refusal (it names itself): one a handler passed on from a node behind it says
    // nothing of this one. A static address is named by its `$info` once asked, and not pushed back before.
    if (node !== (endpoint.nodeId ?? endpoint.id)) return;
    endpoint.backoffUntil = Math.max(endpoint.backoffUntil, this.clock.now() + Math.min(after, MAX_PUSHBACK_MS));
  }

  /** Outlier ejection: counts a node fault against the node (an answer of any other kind clears its count), and ejects it past the threshold. */
  private judge(endpoint: Endpoint<Channel>, error: RpcError): void {
    if (!this.outliers) return;
    const fault = isNodeFault(error.code, error.processed);
    if (!fault && endpoint.faults === 0) return;
    const now = this.clock.now();
    const { ejected, total } = this.table.ejectedCount(now);
    const until = this.outliers.record(endpoint, fault, now, ejected, total);
    if (until === undefined) return;
    this.stats.ejections++;
    // It comes back through the warm-up ramp, from the floor.
    endpoint.readySince = until;
    this.log.info(`ejected ${endpoint.id} (${endpoint.addr}) for ${until - now} ms: ${this.outliers.options.consecutiveFailures} failed calls in a row, the last ${error.code}`);
  }

  private retried(reason: string, node: string, options: CallOptions): void {
    this.stats.retries[reason] = (this.stats.retries[reason] ?? 0) + 1;
    options.onRetry?.(reason, node);
  }

  private fail(error: RpcError): never {
    this.stats.errors[error.code] = (this.stats.errors[error.code] ?? 0) + 1;
    throw error;
  }

  /** Resolves when the view changes (see `wake`) or after `ms`. */
  private changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.clock.setTimer(Math.max(0, ms), resolve);
      this.waiters.push(() => {
        timer.cancel();
        resolve();
      });
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** Creates a client of a cluster from seeds, static addresses, or a node's membership view. */
export function createClusterClient(options: ClusterClientOptions): ClusterClient {
  if (!options.seeds?.length && !options.addresses?.length && !options.membership) {
    throw new Error("createClusterClient needs seeds, addresses or a membership view");
  }
  return new ClusterClient(options);
}
