import { type Logger, silentLogger } from "../log.ts";
import type { Runtime, Socket } from "../runtime/types.ts";
import { FrameError, MessageDecoder } from "../wire/decoder.ts";
import { BatchWriter } from "./batch-writer.ts";
import { type CallHeaders, checkHeaders, isResponse, NOTIFICATION, parseMessage, type RequestMeta } from "../wire/messages.ts";
import { type Bucket, deadlines, disarm, type WheelEntry } from "./deadlines.ts";
import type { TimerHandle } from "../runtime/clock.ts";
import { AUTH_METHOD, AUTH_TIMEOUT_MS, type ClusterKey, proveClusterKey } from "./auth.ts";
import { RpcError } from "./errors.ts";
import { DEFAULT_CONNECTION_LIMITS, KEEPALIVE_METHOD, MIN_KEEPALIVE_MS } from "./server.ts";
import { errorText } from "../error-text.ts";

/** Per-call options. */
export interface CallOptions {
  /** Milliseconds to wait for the answer. Sent to the server as the deadline, which aborts work past it. */
  timeoutMs?: number;
  /** Aborting it fails the call with CANCELLED and tells the server to stop the handler. */
  signal?: AbortSignal;
  /** Request id for idempotency and tracing, sent in `meta.id`. */
  requestId?: string;
  /** Metadata for the handler (`ctx.headers`): lower-case names, string values, within MAX_HEADERS and MAX_HEADER_CHARS. */
  headers?: CallHeaders;
  /** Called with the answer's headers (what the handler set with `ctx.setHeader`), when it carries any. */
  onHeaders?(headers: CallHeaders): void;
  /** W3C trace context to send; a call made inside a handler sends the handler's by itself. */
  traceparent?: string;
  tracestate?: string;
  /** Cluster client with hedging: this call's hedge delay (a method's `hedgeDelayMs` sets it for typed clients). */
  hedgeDelayMs?: number;
  /**
   * Cluster client, inside a handler: `false` makes the call its own, inheriting nothing of the
   * handler's call (for work that outlives it: a timer, a cache fill other calls share). Default true.
   */
  inherit?: boolean;
  /** Cluster client: called before each transparent retry (baffled, overloaded, unreachable, lost), with its reason and the node left. */
  onRetry?(reason: string, node: string): void;
}

/** Anything that can carry a call: a single connection, or the cluster client. */
export interface Transport {
  call(method: string, input: unknown, options?: CallOptions): Promise<unknown>;
  /** Deadline of calls that set none, when the transport has one of its own. */
  readonly defaultTimeoutMs?: number;
  /** Takes one retry of a method's `retry` policy from the transport's retry budget; false when it is spent (the caller gets its error). */
  allowRetry?(): boolean;
}

/** Options of `Channel.connect`. */
export interface ChannelOptions {
  host: string;
  port: number;
  /** Largest message accepted from the server. Default 8 MiB. */
  maxMessageBytes?: number;
  /**
   * Strict msgpack-rpc: send 4-element requests without ebb's `meta`, for
   * servers that are not ebb. Deadlines are then enforced by this side only.
   */
  plain?: boolean;
  /** Timeout of calls that do not set one. Default 30 s. */
  defaultTimeoutMs?: number;
  log?: Logger;
  /** Keep sending after `$goaway` (membership traffic to a member that is draining but not gone). */
  ignoreGoaway?: boolean;
  /** EBB_CLUSTER_KEY and EBB_CLUSTER_ID: `connect` completes the `$auth` handshake (both sides prove a shared key) before resolving. */
  clusterKey?: ClusterKey;
  /** How long to wait for the TCP connection to open (a host that vanished never answers). Default 5 s. */
  connectTimeoutMs?: number;
  /**
   * Keep-alive: after this long without a byte from the server, send `$ping`; no answer within the
   * same time closes the connection (its calls fail UNAVAILABLE, outcome unknown), so a half-open
   * link is found within about three times this. Default 10 s (EBB_KEEPALIVE_MS), at least 100 ms; 0: off (plain mode: off).
   */
  keepaliveMs?: number;
  /** Called for each notification from the server (after ebb's own `$goaway` handling). */
  onNotification?(method: string, params: unknown[]): void;
  /** Called once when the connection closes. */
  onClose?(error?: Error): void;
}

/** The options of a call that sets none (shared: nothing writes to it). */
const NO_OPTIONS: CallOptions = Object.freeze({});

/** Default of `ChannelOptions.defaultTimeoutMs`. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
/** Default of `ChannelOptions.maxMessageBytes`. */
export const DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

/** How long `close()` waits for the server to close its side before dropping the connection. */
const CLOSE_GRACE_MS = 5_000;
/** Default of `ChannelOptions.connectTimeoutMs` (Envoy's `connect_timeout` default too). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/**
 * Connection attempts per address that outlived their timeout and are still pending in the runtime
 * (a SYN to a vanished host is retried by the kernel for about two minutes, and the runtime seam
 * has no way to abort a connect): at most MAX_UNANSWERED_CONNECTS at once, so a vanished peer costs
 * each process a few sockets however often it is dialled, while a healed one can be dialled afresh
 * at once. Per runtime, since in-memory ones share addresses.
 */
const unanswered = new WeakMap<Runtime, Map<string, number>>();
const MAX_UNANSWERED_CONNECTS = 3;

/** Default of `ChannelOptions.keepaliveMs`. */
export const DEFAULT_KEEPALIVE_MS = 10_000;

/** A call waiting for its answer; itself the entry of its deadline on the wheel (one object per call). */
class Pending implements WheelEntry {
  resolve!: (value: unknown) => void;
  reject!: (error: RpcError) => void;
  onAbort: (() => void) | undefined = undefined;
  /** Answered, failed or given up: out of the channel's pending map. */
  settled = false;
  bucket: Bucket | undefined = undefined;
  prev: WheelEntry | undefined = undefined;
  next: WheelEntry | undefined = undefined;
  timer: TimerHandle | undefined = undefined;

  constructor(
    private readonly channel: Channel,
    readonly msgid: number,
    readonly method: string,
    readonly timeoutMs: number,
    readonly signal: AbortSignal | undefined,
    readonly onHeaders: ((headers: CallHeaders) => void) | undefined,
  ) {}

  /** The deadline passed with no answer. */
  fire(): void {
    this.channel.expire(this);
  }

  cancel(): void {
    disarm(this);
  }
}

/**
 * The code of a call given up because `signal` aborted: DEADLINE_EXCEEDED when its reason is a
 * deadline (a handler's `ctx.signal` after its deadline passed, `AbortSignal.timeout`), else CANCELLED.
 */
function abortCode(signal: AbortSignal): "DEADLINE_EXCEEDED" | "CANCELLED" {
  const reason: unknown = signal.reason;
  if (reason instanceof RpcError) return reason.code === "DEADLINE_EXCEEDED" ? "DEADLINE_EXCEEDED" : "CANCELLED";
  return reason instanceof DOMException && reason.name === "TimeoutError" ? "DEADLINE_EXCEEDED" : "CANCELLED";
}

/**
 * One multiplexed msgpack-rpc connection to one node: many calls in flight,
 * matched to answers by msgid, each with a deadline.
 */
export class Channel implements Transport {
  private readonly pending = new Map<number, Pending>();
  /** Calls queued in this turn's batch: their deadlines are armed when it is written (armWritten). */
  private unarmed: Pending[] = [];
  private readonly decoder: MessageDecoder;
  private readonly writer: BatchWriter;
  private readonly log: Logger;
  /** Deadline of calls that set none. */
  readonly defaultTimeoutMs: number;
  private nextMsgid = 0;
  /** The msgids have wrapped around once: a new one may still be in use. */
  private msgidsWrapped = false;
  private isClosed = false;
  private idleWaiters: (() => void)[] = [];
  private closing = false;
  private closeTimer: ReturnType<typeof setTimeout> | undefined;
  /** A bad answer header was warned about on this connection already. */
  private warnedHeaders = false;
  private goawayReason: string | undefined;
  /** Something arrived since the keep-alive timer last looked: the server lives. */
  private heard = false;
  /** Something was sent since the keep-alive timer last looked: the server knows we live. */
  private sent = false;
  private keepaliveTimer: ReturnType<typeof setTimeout> | undefined;
  /** Why this side closed the socket, for the calls it fails. */
  private closeReason: Error | undefined;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  private constructor(
    private readonly socket: Socket,
    readonly address: string,
    private readonly options: ChannelOptions,
  ) {
    this.decoder = new MessageDecoder(options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
    this.writer = new BatchWriter(socket, () => this.armWritten());
    this.log = options.log ?? silentLogger;
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Connects to a node. Rejects with UNAVAILABLE when it cannot be reached. */
  static async connect(runtime: Runtime, options: ChannelOptions): Promise<Channel> {
    const address = `${options.host}:${options.port}`;
    const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    let channel: Channel | undefined;
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const pending = unanswered.get(runtime) ?? new Map<string, number>();
    unanswered.set(runtime, pending);
    if ((pending.get(address) ?? 0) >= MAX_UNANSWERED_CONNECTS) {
      throw new RpcError(`Cannot connect to ${address}: ${MAX_UNANSWERED_CONNECTS} earlier attempts are still unanswered`, "UNAVAILABLE", { processed: false });
    }
    try {
      const connecting = runtime.connect({
        host: options.host,
        port: options.port,
        open: (socket) => {
          channel = new Channel(socket, address, options);
          // A connection that opens after we gave up on it is closed at once.
          if (timedOut) queueMicrotask(() => socket.close());
          socket.setNoDelay(true);
          socket.setKeepAlive(DEFAULT_CONNECTION_LIMITS.keepAliveMs);
          return {
            data: (chunk) => channel!.receive(chunk),
            end: () => channel!.peerEnded(),
            close: (error) => channel!.onClosed(error),
          };
        },
      });
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          pending.set(address, (pending.get(address) ?? 0) + 1);
          void connecting.then(() => {}, () => {}).finally(() => {
            const left = (pending.get(address) ?? 1) - 1;
            if (left > 0) pending.set(address, left);
            else pending.delete(address);
          });
          reject(new Error(`no answer within ${connectTimeoutMs} ms`));
        }, connectTimeoutMs);
      });
      await Promise.race([connecting, expired]);
    } catch (error) {
      throw new RpcError(`Cannot connect to ${address}: ${errorText(error)}`, "UNAVAILABLE", {
        cause: error,
        processed: false,
      });
    } finally {
      clearTimeout(timer);
    }
    if (options.clusterKey !== undefined) {
      try {
        await proveClusterKey(options.clusterKey, address, (params) => channel!.request(AUTH_METHOD, params, { timeoutMs: AUTH_TIMEOUT_MS }));
      } catch (error) {
        channel!.close();
        throw error;
      }
    }
    channel!.startKeepalive();
    return channel!;
  }

  /** Calls in flight on this connection. */
  get inflight(): number {
    return this.pending.size;
  }

  /** True once the connection is closed. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** The reason the server gave in `$goaway`, once it sent one: new calls belong elsewhere. */
  get goaway(): string | undefined {
    return this.goawayReason;
  }

  /** Resolves when the connection has closed. */
  whenClosed(): Promise<void> {
    return this.closedPromise;
  }

  /** Resolves when no call is in flight (at once if none is). */
  whenIdle(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Calls `method` with `input` as its one parameter. */
  call(method: string, input: unknown, options?: CallOptions): Promise<unknown> {
    return this.request(method, input === undefined ? [] : [input], options);
  }

  /** Sends a raw msgpack-rpc request with any params. */
  request(method: string, params: unknown[], options: CallOptions = NO_OPTIONS): Promise<unknown> {
    if (this.isClosed || this.closing) {
      return Promise.reject(new RpcError(`Connection to ${this.address} is closed`, "UNAVAILABLE", { processed: false }));
    }
    if (this.goawayReason !== undefined && !this.options.ignoreGoaway && method !== KEEPALIVE_METHOD) {
      // The node asked for no new calls here; calls already in flight still complete.
      return Promise.reject(
        new RpcError(`${this.address} is ${this.goawayReason} ($goaway): call not sent`, "SHUTTING_DOWN", { data: { reason: this.goawayReason } }),
      );
    }
    const { signal } = options;
    if (signal?.aborted) {
      const code = abortCode(signal);
      return Promise.reject(new RpcError(code === "CANCELLED" ? "Call cancelled before it was sent" : "Deadline passed before the call was sent", code, { processed: false, cause: signal.reason }));
    }
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    const msgid = this.allocateMsgid();
    // What is sent as meta: nothing (plain), the deadline alone (most calls: no object made), or a map.
    let meta: RequestMeta | number | undefined;
    if (this.options.plain) {
      meta = undefined;
    } else if (options.requestId === undefined && options.headers === undefined && options.traceparent === undefined && options.tracestate === undefined) {
      meta = timeoutMs;
    } else {
      meta = { deadline: timeoutMs };
      if (options.requestId !== undefined) meta.id = options.requestId;
      if (options.headers !== undefined) {
        const problem = checkHeaders(options.headers);
        if (problem) return Promise.reject(new RpcError(`Headers of "${method}" not sent: ${problem}`, "INVALID_REQUEST", { processed: false }));
        meta.headers = options.headers;
      }
      if (options.traceparent !== undefined) meta.traceparent = options.traceparent;
      if (options.tracestate !== undefined) meta.tracestate = options.tracestate;
    }
    const entry = new Pending(this, msgid, method, timeoutMs, signal, options.onHeaders);
    const promise = new Promise<unknown>((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    if (signal) {
      entry.onAbort = () => {
        if (!this.settle(msgid)) return;
        // The server stops the handler for the same reason: a deadline that passed upstream is the callee's too.
        const code = abortCode(signal);
        this.notify("$cancel", code === "CANCELLED" ? [msgid] : [msgid, code]);
        const what = code === "CANCELLED" ? "cancelled" : "given up: the caller's deadline passed";
        entry.reject(new RpcError(`Call to "${method}" ${what}`, code, { cause: signal.reason }));
      };
      signal.addEventListener("abort", entry.onAbort, { once: true });
    }
    this.pending.set(msgid, entry);
    this.sent = true;
    try {
      this.writer.sendRequest(msgid, method, params, meta);
    } catch (error) {
      // Nothing was sent (too deep for EBB_MAX_DEPTH, or a value msgpack cannot carry).
      this.settle(msgid);
      const reason = errorText(error);
      entry.reject(new RpcError(`Input of "${method}" cannot be encoded: ${reason}`, "INVALID_PARAMS", { processed: false, cause: error }));
      return promise;
    }
    this.unarmed.push(entry);
    return promise;
  }

  /**
   * The batch was written: its calls' deadlines start now, on one reading of the clock. A deadline
   * runs from when its request leaves, never before; the batch leaves at the end of the turn that
   * made its calls, and no timer could fire before then anyway.
   */
  private armWritten(): void {
    const calls = this.unarmed;
    if (calls.length === 0) return;
    this.unarmed = [];
    const now = deadlines.now();
    for (const entry of calls) if (!entry.settled) deadlines.arm(entry, entry.timeoutMs, now);
  }

  /** @internal A call's deadline passed with no answer. */
  expire(entry: Pending): void {
    if (this.pending.get(entry.msgid) !== entry) return;
    this.settle(entry.msgid);
    entry.reject(new RpcError(`No answer from ${this.address} to "${entry.method}" within ${entry.timeoutMs} ms`, "DEADLINE_EXCEEDED"));
  }

  /** Sends a notification. */
  notify(method: string, params: unknown[]): void {
    if (this.isClosed) return;
    this.sent = true;
    this.writer.send([NOTIFICATION, method, params]);
  }

  /**
   * Closes the connection: calls in flight fail CANCELLED here, and the server
   * is told (`$cancel`) so their handlers stop. Idempotent.
   */
  close(): void {
    if (this.isClosed || this.closing) return;
    this.closing = true;
    for (const msgid of this.pending.keys()) this.notify("$cancel", [msgid]);
    this.failAll(new RpcError(`Connection to ${this.address} closed by the caller with the call in flight`, "CANCELLED"));
    this.writer.flush();
    this.socket.end();
    // The server closes its side once it has read the cancels; if it never does, stop waiting.
    this.closeTimer = setTimeout(() => this.socket.close(), CLOSE_GRACE_MS);
  }

  /**
   * Drops the connection at once, without waiting for the server: for a peer believed dead or a link
   * believed stuck, whose FIN would only wait in the retransmission queue. Calls in flight fail UNAVAILABLE.
   */
  destroy(reason: string): void {
    if (this.isClosed) return;
    this.closeReason ??= new Error(reason);
    this.socket.close();
  }

  /**
   * Pings the server whenever a whole `keepaliveMs` passed without a byte from it, or without one
   * to it; no answer closes the connection. The ping names the interval, so the server can close
   * the connection in turn once we fall silent (src/rpc/server.ts, KEEPALIVE_GRACE).
   */
  private startKeepalive(): void {
    const asked = this.options.plain ? 0 : (this.options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS);
    if (asked <= 0 || this.isClosed) return;
    const keepaliveMs = Math.max(MIN_KEEPALIVE_MS, asked);
    // A late deadline was forgiven once already (see below).
    let spared = false;
    const ping = () => {
      this.heard = this.sent = false;
      const sentAt = performance.now();
      return this.request(KEEPALIVE_METHOD, [{ keepaliveMs }], { timeoutMs: keepaliveMs }).then(
        () => {
          spared = false;
        },
        (error: RpcError) => {
          // Any answer, an error included, proves the server lives; only silence condemns the link.
          if (error.code !== "DEADLINE_EXCEEDED" || this.isClosed) return;
          // A deadline that ran late means we stalled (a pause, a busy loop), and the answer may be
          // waiting unread: Deno runs due timers before reads. Judge again at the next check, once:
          // a process late every time (a starved machine) must still find a dead link.
          if (performance.now() - sentAt > keepaliveMs * 1.5 && !spared) {
            spared = true;
            return;
          }
          // Give reads already waiting a turn, and spare a connection that has been heard meanwhile.
          return new Promise<void>((resolve) => setTimeout(resolve, 0)).then(() => {
            if (this.heard || this.isClosed) return;
            this.log.warn(`closing connection to ${this.address}: no answer to a keep-alive ping within ${keepaliveMs} ms (a half-open link, or a stalled server)`);
            this.closeReason = new Error(`no answer to a keep-alive ping within ${keepaliveMs} ms`);
            this.socket.close();
          });
        },
      );
    };
    const next = () => {
      if (!this.isClosed) this.keepaliveTimer = setTimeout(check, keepaliveMs);
    };
    // The server learns the interval only from a ping, and a busy connection may never be silent
    // enough to ping: announce it at once on a keyed connection (already authenticated), else at the
    // first check (not at connect: a connection a keyed server refuses must fail the caller's own
    // first call with the reason).
    let announced = this.options.clusterKey !== undefined;
    const check = () => {
      if (this.isClosed) return;
      if (!announced || !this.heard || !this.sent) {
        announced = true;
        return void ping().finally(next);
      }
      this.heard = this.sent = false;
      next();
    };
    if (announced) void ping().finally(next);
    else next();
  }

  private allocateMsgid(): number {
    let msgid = this.nextMsgid;
    // Until msgids wrap around (2^32 calls), none can still be pending: no lookup needed.
    if (this.msgidsWrapped) while (this.pending.has(msgid)) msgid = (msgid + 1) >>> 0;
    this.nextMsgid = (msgid + 1) >>> 0;
    if (this.nextMsgid === 0) this.msgidsWrapped = true;
    return msgid;
  }

  private settle(msgid: number): Pending | undefined {
    const entry = this.pending.get(msgid);
    if (!entry) return undefined;
    this.pending.delete(msgid);
    entry.settled = true;
    disarm(entry);
    if (this.pending.size === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
    if (entry.onAbort) entry.signal!.removeEventListener("abort", entry.onAbort);
    return entry;
  }

  private receive(chunk: Uint8Array): void {
    this.heard = true;
    let messages: unknown[];
    try {
      messages = this.decoder.push(chunk);
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      this.log.warn(`closing connection to ${this.address}: ${error.message}`);
      this.socket.close();
      return;
    }
    for (const message of messages) {
      // Answers, nearly every message, are read in place; anything else goes through parseMessage.
      if (isResponse(message)) {
        const entry = this.settle(message[1]);
        if (!entry) continue; // Answer to a call that already timed out or was cancelled.
        if (message[4] !== undefined && entry.onHeaders) this.answerHeaders(message[4], entry.onHeaders);
        const error = message[2];
        if (error === null || error === undefined) entry.resolve(message[3]);
        else entry.reject(RpcError.fromWire(error));
        continue;
      }
      const parsed = parseMessage(message);
      if (parsed.kind === "notification") {
        if (parsed.method === "$goaway") this.onGoaway(parsed.params[0]);
        this.options.onNotification?.(parsed.method, parsed.params);
      } else if (parsed.kind === "malformed") {
        this.log.warn(`closing connection to ${this.address}: not a msgpack-rpc message: ${parsed.reason}`);
        this.socket.close();
        return;
      }
    }
  }

  /** Hands the answer's headers to the caller, once checked as the server checks a request's; a bad map is dropped with a warning. */
  private answerHeaders(meta: unknown, onHeaders: (headers: CallHeaders) => void): void {
    const headers = typeof meta === "object" && meta !== null && !Array.isArray(meta) ? (meta as { headers?: unknown }).headers : undefined;
    if (headers === undefined) return;
    const problem = checkHeaders(headers);
    if (problem) {
      // Once per connection: a hostile server could otherwise fill the log.
      if (!this.warnedHeaders) this.log.warn(`dropped the headers of an answer from ${this.address} (and will drop such headers silently from now on): ${problem}`);
      this.warnedHeaders = true;
      return;
    }
    try {
      onHeaders(headers as CallHeaders);
    } catch (error) {
      this.log.warn("an onHeaders callback threw", { error: errorText(error) });
    }
  }

  private onGoaway(info: unknown): void {
    const { reason, final } = (typeof info === "object" && info !== null ? info : {}) as { reason?: unknown; final?: unknown };
    this.goawayReason ??= typeof reason === "string" ? reason : "draining";
    if (final !== true) return;
    // A final $goaway is the server's last message: it answered everything it
    // read before it, so whatever is still pending was never read and no handler ran.
    this.failAll(new RpcError(`${this.address} closed the connection before reading the call`, "UNAVAILABLE", { processed: false }));
    this.socket.end();
  }

  // A FIN without a final $goaway may be a crash: pending calls stay pending
  // until the close, which fails them with the outcome unknown.
  private peerEnded(): void {
    this.socket.end();
  }

  private onClosed(error?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.closeTimer !== undefined) clearTimeout(this.closeTimer);
    if (this.keepaliveTimer !== undefined) clearTimeout(this.keepaliveTimer);
    error ??= this.closeReason;
    const detail = error ? `: ${error.message}` : "";
    this.failAll(new RpcError(`Connection to ${this.address} lost with the call in flight; outcome unknown${detail}`, "UNAVAILABLE"));
    this.resolveClosed();
    this.options.onClose?.(error);
  }

  private failAll(error: RpcError): void {
    for (const msgid of [...this.pending.keys()]) this.settle(msgid)?.reject(error);
  }
}
