import { type Logger, PeerWarnings, WarningWindow } from "../log.ts";
import type { Listener, Runtime, Socket, SocketHandlers } from "../runtime/types.ts";
import { DEFAULT_MAX_DEPTH, DEFAULT_MAX_ELEMENTS, DEFAULT_TURN_BYTES, EMPTY, FrameError, MessageDecoder } from "../wire/decoder.ts";
import { BatchWriter } from "./batch-writer.ts";
import { type CallHeaders, NOTIFICATION, parseMessage, type RequestMeta, RESPONSE } from "../wire/messages.ts";
import { type AuthFailure, AUTH_TIMEOUT_MS, type ClusterKey, ClusterKeyCheck } from "./auth.ts";
import { AuthGuard } from "./auth-guard.ts";
import type { ActiveCall, CallerConnection, Dispatcher, IncomingCall } from "./dispatch.ts";
import { RpcError } from "./errors.ts";
import { errorText } from "../error-text.ts";

/** Options of an `RpcServer`. */
export interface RpcServerOptions {
  dispatcher: Dispatcher;
  log: Logger;
  /** Largest message accepted; a larger one closes its connection. */
  maxMessageBytes: number;
  /** Bytes queued to one connection above which we stop reading its requests. */
  highWaterBytes?: number;
  /** Notifications other than ebb's own `$cancel` (membership's one-way `$swim.*`); true when taken, else it is counted as dropped. */
  onNotification?(method: string, params: unknown[], peer: string): boolean;
  /** EBB_CLUSTER_KEY and EBB_CLUSTER_ID: every connection must prove it holds one of the keys (see auth.ts) before anything else. */
  clusterKey?: ClusterKey;
  /** A keyed connection not authenticated within this is closed. Default AUTH_TIMEOUT_MS (10 s). */
  authTimeoutMs?: number;
  /** Bounds on what one peer can make the server hold; each defaults to `DEFAULT_CONNECTION_LIMITS`. */
  limits?: Partial<ConnectionLimits>;
}

/** What a peer can make the server hold, each bounded (Envoy's `max_connections`, `idle_timeout`, ...). */
export interface ConnectionLimits {
  /** Open connections; a connection past it is closed as soon as it is accepted (EBB_MAX_CONNECTIONS). */
  maxConnections: number;
  /** Calls running on one connection; past it, that connection's calls are answered OVERLOADED (EBB_MAX_INFLIGHT_PER_CONNECTION). */
  maxInflightPerConnection: number;
  /** A message begun must be complete within this, or its connection is closed (EBB_READ_TIMEOUT_MS). */
  readTimeoutMs: number;
  /** A connection with no call running and nothing received for this long is closed gracefully (EBB_IDLE_TIMEOUT_MS). 0: never. */
  idleTimeoutMs: number;
  /** Bytes of partial messages held for all connections together; the connection that passes it is closed (EBB_MAX_BUFFERED_BYTES). */
  maxBufferedBytes: number;
  /** Items in one message (EBB_MAX_MESSAGE_ELEMENTS). */
  maxElements: number;
  /** Nesting levels of one message, in and out (EBB_MAX_DEPTH). */
  maxDepth: number;
  /** TCP keep-alive: first probe after this much silence (EBB_TCP_KEEPALIVE_MS); 0: off. */
  keepAliveMs: number;
}

/** Documented defaults of `ConnectionLimits`; each is an EBB_* variable (src/config/variables.ts). */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 10_000, // below the usual descriptor limit, so the node refuses before the runtime fails
  maxInflightPerConnection: 1_024, // one connection cannot take all of EBB_MAX_INFLIGHT (10,000)
  readTimeoutMs: 30_000, // an 8 MiB message at 300 KB/s still makes it
  idleTimeoutMs: 300_000, // 5 min; ebb clients reconnect transparently, members talk every second
  maxBufferedBytes: 256 * 1024 * 1024, // 32 messages of the maximum size mid-flight at once
  maxElements: DEFAULT_MAX_ELEMENTS,
  maxDepth: DEFAULT_MAX_DEPTH,
  keepAliveMs: 30_000, // a vanished peer is found after 30 s of silence plus the probes
};

/** Connections closed for bad input that are logged one by one per host in 10 s; the rest are counted in the next line. */
const REJECTION_LOG_BURST = 20;

/** After this many failed accepts in a row (out of descriptors), wait the longest before trying again. */
const ACCEPT_BACKOFF_MAX_MS = 1_000;

/** Default for `highWaterBytes`: reads pause while a connection owes this much unread reply. */
export const DEFAULT_HIGH_WATER_BYTES = 1024 * 1024;

/** The msgpack-rpc TCP server: accepts connections and hands their requests to a dispatcher. */
export class RpcServer {
  readonly connections = new Set<ServerConnection>();
  /** Counters for metrics and tests. */
  readonly stats = { accepted: 0, rejected: 0, pausedReads: 0, refusedOverCap: 0, acceptErrors: 0, overloaded: 0, idleClosed: 0, readTimeouts: 0, silentClosed: 0, droppedNotifications: 0 };
  readonly limits: ConnectionLimits;
  /** Bytes of partial messages held by every connection together. */
  bufferedBytes = 0;
  private readonly listeners: Listener[] = [];
  private readonly capWarning: WarningWindow;
  private readonly acceptWarning: WarningWindow;
  /** @internal Connections closed for bad input: a few lines per host per 10 s, then a count. */
  readonly rejections: PeerWarnings;
  private acceptBackoffMs = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;
  /** With a cluster key: failed handshakes per source host, throttled and logged in aggregate (auth-guard.ts). */
  readonly authGuard: AuthGuard | undefined;

  constructor(
    private readonly runtime: Runtime,
    readonly options: RpcServerOptions,
  ) {
    this.limits = { ...DEFAULT_CONNECTION_LIMITS, ...options.limits };
    this.capWarning = new WarningWindow(options.log);
    this.acceptWarning = new WarningWindow(options.log);
    this.rejections = new PeerWarnings(options.log, REJECTION_LOG_BURST);
    this.authGuard = options.clusterKey === undefined ? undefined : new AuthGuard(options.log);
  }

  /** Starts accepting on `host:port` (0 picks a free port). */
  async listen(host: string, port: number): Promise<Listener> {
    const listener = await this.runtime.listen({
      host,
      port,
      accept: (socket) => this.accept(socket),
      acceptFailed: (error) => this.acceptFailed(error),
    });
    this.listeners.push(listener);
    return listener;
  }

  private accept(socket: Socket): SocketHandlers {
    this.acceptBackoffMs = 0;
    if (this.connections.size >= this.limits.maxConnections) {
      // Refused before it costs anything: no decoder, no timers, no log line per connection.
      this.stats.refusedOverCap++;
      this.capWarning.warn(`refusing connections: ${this.connections.size} open, the limit (EBB_MAX_CONNECTIONS)`, { peer: socket.remote });
      socket.close();
      return { data() {}, close() {} };
    }
    const connection = new ServerConnection(this, socket);
    if (this.limits.keepAliveMs > 0) socket.setKeepAlive(this.limits.keepAliveMs);
    this.sweeper ??= setInterval(() => this.sweep(), sweepIntervalMs(this.limits));
    return connection.handlers;
  }

  /** The runtime could not accept (out of descriptors, usually): log in aggregate and back off, doubling up to a second. */
  private acceptFailed(error: Error): number {
    this.stats.acceptErrors++;
    this.acceptBackoffMs = Math.min(ACCEPT_BACKOFF_MAX_MS, Math.max(10, this.acceptBackoffMs * 2));
    this.acceptWarning.warn(`cannot accept connections: ${error.message}; retrying in ${this.acceptBackoffMs} ms`, { open: this.connections.size });
    return this.acceptBackoffMs;
  }

  /** Enforces the read and idle timeouts; runs while any connection is open. */
  private sweep(): void {
    const now = Date.now();
    for (const connection of this.connections) connection.checkTimeouts(now);
  }

  /** The `$goaway` payload once draining began; connections accepted later get it at once. */
  goaway: unknown;
  private closeWaiters: (() => void)[] = [];

  /** Sends a notification to every open connection. */
  broadcast(method: string, params: unknown[]): void {
    for (const connection of this.connections) connection.notify(method, params);
  }

  /** Tells every connection, open now or accepted later, to send new calls elsewhere. */
  broadcastGoaway(info: unknown): void {
    this.goaway = info;
    this.broadcast("$goaway", [info]);
  }

  /** Resolves when no connection is open. */
  whenAllClosed(): Promise<void> {
    if (this.connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  /** @internal A connection closed. */
  forget(connection: ServerConnection): void {
    if (!this.connections.delete(connection) || this.connections.size > 0) return;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    const waiters = this.closeWaiters;
    this.closeWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Stops accepting connections; open ones stay open. */
  async stopAccepting(): Promise<void> {
    await Promise.all(this.listeners.map((listener) => listener.stop()));
    this.authGuard?.stop();
  }

  /** Half-closes every connection once its answers are written; idle ones at once. */
  endAll(): void {
    for (const connection of this.connections) connection.endWhenIdle();
  }

  /** Closes every connection now. */
  closeAll(): void {
    for (const connection of this.connections) connection.close();
  }
}

/** A request as the dispatcher sees it: its answer goes back to its connection. */
class ServerCall implements IncomingCall {
  readonly peer: string;
  readonly connection: CallerConnection | undefined;

  constructor(
    private readonly from: ServerConnection,
    readonly msgid: number,
    readonly method: string,
    readonly params: unknown[],
    readonly meta: RequestMeta | undefined,
    readonly receivedAt: number,
  ) {
    this.peer = from.peer;
    // Only ebb's own `$` methods talk back on the connection.
    this.connection = method.charCodeAt(0) === 36 /* $ */ ? from : undefined;
  }

  reply(error: RpcError | null, result?: unknown, headers?: CallHeaders): void {
    this.from.replied(this, error, result, headers);
  }
}

/** One accepted connection: decodes requests, dispatches them, batches the answers. */
export class ServerConnection implements CallerConnection {
  readonly handlers: SocketHandlers;
  private readonly decoder: MessageDecoder;
  private readonly writer: BatchWriter;
  private readonly calls = new Map<number, ActiveCall>();
  private readonly log: Logger;
  private readonly highWaterBytes: number;
  private readonly limits: ConnectionLimits;
  /** Reads stopped because the peer reads our answers too slowly. */
  private paused = false;
  /** Reads stopped to let other connections have a turn; this timer resumes them. */
  private yielding: ReturnType<typeof setTimeout> | undefined;
  /** Bytes this connection adds to the server's `bufferedBytes`. */
  private held = 0;
  /** When something was last received, and when the partial message now buffered began (0: none). */
  private lastActivity = Date.now();
  private partialSince = 0;
  private ending = false;
  /** Our write side is closed: requests that still arrive are dropped unread. */
  private finished = false;
  private notificationDropped = false;
  /** The keep-alive interval the peer announced in its `$ping` (ebb clients do); 0: none announced. */
  private peerKeepaliveMs = 0;
  /** When our side ended (`finished`); a peer that never closes its side is closed for it ENDED_LINGER_MS later. */
  private finishedAt = 0;
  private closed = false;
  /** Called once when the connection closes (`$watch` subscriptions end with it). */
  private closeListeners: (() => void)[] | undefined;
  /** With a cluster key: false until the peer completes the `$auth` handshake. */
  private authenticated: boolean;
  private readonly keyCheck: ClusterKeyCheck | undefined;
  private authTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly server: RpcServer,
    private readonly socket: Socket,
  ) {
    const { options } = server;
    this.log = options.log;
    this.highWaterBytes = options.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
    this.limits = server.limits;
    this.decoder = new MessageDecoder(options.maxMessageBytes, {
      maxElements: this.limits.maxElements,
      maxDepth: this.limits.maxDepth,
      turnBytes: DEFAULT_TURN_BYTES,
    });
    this.writer = new BatchWriter(socket, () => this.afterFlush(), this.limits.maxDepth);
    socket.setNoDelay(true);
    this.authenticated = options.clusterKey === undefined;
    this.keyCheck = options.clusterKey === undefined ? undefined : new ClusterKeyCheck(options.clusterKey);
    // Unauthenticated connections do not linger: not even half-closed after a refusal.
    if (!this.authenticated && server.authGuard!.turnsAway(this.peer)) {
      // A host past its failed-handshake budget is not heard at all: no nonce, no HMAC, no line of its own.
      this.finished = true;
      queueMicrotask(() => this.close());
    } else if (!this.authenticated) {
      const ms = options.authTimeoutMs ?? AUTH_TIMEOUT_MS;
      this.authTimer = setTimeout(() => (this.finished ? this.close() : this.reject(`no cluster key handshake within ${ms} ms`)), ms);
    }
    server.connections.add(this);
    server.stats.accepted++;
    if (server.goaway !== undefined) this.notify("$goaway", [server.goaway]);
    this.handlers = {
      data: (chunk) => this.receive(chunk),
      drain: () => this.drained(),
      end: () => this.peerEnded(),
      close: (error) => this.onClosed(error),
    };
  }

  /** `host:port` of the peer. */
  get peer(): string {
    return this.socket.remote;
  }

  /** Sends a notification on this connection. */
  notify(method: string, params: unknown[]): void {
    if (this.closed) return;
    this.writer.send([NOTIFICATION, method, params]);
  }

  /** Bytes written and not yet taken by the network. */
  get bufferedBytes(): number {
    return this.socket.bufferedBytes;
  }

  /** Calls `listener` once when this connection closes (at once if it has). */
  onClose(listener: () => void): void {
    if (this.closed) listener();
    else (this.closeListeners ??= []).push(listener);
  }

  /**
   * Half-closes once every call on this connection has been answered. The last
   * message is a final `$goaway`: a call the peer sees unanswered after it was
   * never read, and never will be, so it is safe to send anywhere else.
   */
  endWhenIdle(): void {
    this.ending = true;
    if (this.calls.size > 0 || this.finished || this.closed) return;
    this.finished = true;
    this.finishedAt = Date.now();
    this.writer.send([NOTIFICATION, "$goaway", [{ reason: "closing", final: true }]]);
    this.writer.flush();
    this.socket.end();
  }

  /** Closes now, dropping anything unwritten. */
  close(): void {
    this.socket.close();
  }

  /**
   * The peer closed its side (FIN): it will send nothing more, and a caller
   * that hung up wants no answer. Its calls are aborted at once (their
   * handlers see `ctx.signal`, their answers go out CANCELLED), then we close
   * our side, as on a reset.
   */
  private peerEnded(): void {
    const gone = new RpcError("The caller closed the connection", "CANCELLED");
    for (const active of [...this.calls.values()]) active.abort(gone);
    this.endWhenIdle();
  }

  /** An ebb client's `$ping` names its keep-alive interval: held to 100 ms..1 h, so a peer cannot make the check absurd. */
  private notePeerKeepalive(params: unknown): void {
    const announced = (params as { keepaliveMs?: unknown } | undefined)?.keepaliveMs;
    if (typeof announced === "number" && Number.isFinite(announced)) this.peerKeepaliveMs = Math.min(HOUR_MS, Math.max(MIN_KEEPALIVE_MS, announced));
  }

  /** A notification to a method (`[2, "kv.put", …]`): ebb answers requests only, so it is counted and, once per connection, logged. */

  private droppedNotification(method: string): void {
    this.server.stats.droppedNotifications++;
    if (this.notificationDropped) return;
    this.notificationDropped = true;
    this.log.debug("dropped a notification: ebb serves requests only (send [0, msgid, method, params])", { peer: this.peer, method });
  }

  /** @internal Closes the connection when a partial message outlived the read timeout, or it idled past the idle timeout. */
  checkTimeouts(now: number): void {
    if (this.closed) return;
    if (this.finished) {
      // Our side is done; a peer that never closes its own (ignoring our FIN, or a TLS handshake
      // never finished, whose FIN cannot even be sent) holds the connection no longer than this.
      if (this.finishedAt > 0 && now - this.finishedAt > ENDED_LINGER_MS) this.close();
      return;
    }
    const { readTimeoutMs, idleTimeoutMs } = this.limits;
    if (this.partialSince > 0 && now - this.partialSince > readTimeoutMs) {
      this.server.stats.readTimeouts++;
      this.reject(`a message begun ${now - this.partialSince} ms ago is still incomplete (EBB_READ_TIMEOUT_MS=${readTimeoutMs})`);
      return;
    }
    if (this.peerKeepaliveMs > 0 && now - this.lastActivity > KEEPALIVE_GRACE * this.peerKeepaliveMs) {
      // The peer promised a ping at least every two intervals: it is gone, or the link went half-open.
      this.server.stats.silentClosed++;
      this.log.debug("closing a connection whose peer stopped its keep-alive pings", { peer: this.peer, silentMs: now - this.lastActivity });
      this.close();
      return;
    }
    if (idleTimeoutMs > 0 && this.calls.size === 0 && this.partialSince === 0 && now - this.lastActivity > idleTimeoutMs) {
      this.server.stats.idleClosed++;
      this.log.debug("closing an idle connection", { peer: this.peer, idleMs: now - this.lastActivity });
      this.endWhenIdle();
    }
  }

  private receive(chunk: Uint8Array): void {
    if (this.closed || this.finished) return;
    this.lastActivity = Date.now();
    let messages: unknown[];
    try {
      messages = this.decoder.push(chunk);
    } catch (error) {
      if (error instanceof FrameError) return this.reject(error.message);
      throw error;
    } finally {
      this.account();
    }
    if (messages.length > 0) {
      try {
        // One reading of the clock when the calls of this read arrived, one when they were answered.
        this.server.options.dispatcher.timeTogether(() => this.handleAll(messages, performance.now()));
      } catch (error) {
        // A bug of ours, not the peer's: say so loudly, and keep the process up.
        this.log.error("failed to handle a message; closing the connection", { peer: this.peer, error });
        this.socket.close();
        return;
      }
    }
    if (this.decoder.backlog && !this.closed && !this.finished) this.yieldTurn();
  }

  private handleAll(messages: unknown[], receivedAt: number): void {
    for (const message of messages) {
      if (this.closed || this.finished) return;
      this.handle(message, receivedAt);
    }
  }

  /** Tracks the bytes held for partial messages, against this connection's read timeout and the server's cap. */
  private account(): void {
    const held = this.closed ? 0 : this.decoder.bufferedBytes;
    this.server.bufferedBytes += held - this.held;
    this.held = held;
    if (!this.decoder.partial) this.partialSince = 0;
    else if (this.partialSince === 0) this.partialSince = this.lastActivity;
    if (held > 0 && this.server.bufferedBytes > this.limits.maxBufferedBytes) {
      this.reject(`partial messages of all connections hold over ${this.limits.maxBufferedBytes} bytes (EBB_MAX_BUFFERED_BYTES)`);
    }
  }

  /**
   * More complete messages are waiting than one turn handles: stop reading and
   * go on in a later macrotask, so other connections' data is read first.
   */
  private yieldTurn(): void {
    if (this.yielding !== undefined) return;
    this.socket.pause();
    this.yielding = setTimeout(() => {
      this.yielding = undefined;
      if (!this.paused) this.socket.resume();
      this.receive(EMPTY);
    }, 0);
  }

  private handle(message: unknown, receivedAt: number): void {
    const parsed = parseMessage(message);
    if (!this.authenticated && parsed.kind !== "malformed") return this.authenticate(parsed);
    switch (parsed.kind) {
      case "request": {
        const { msgid } = parsed;
        if (this.calls.has(msgid)) {
          this.respond(msgid, new RpcError(`msgid ${msgid} is already in flight on this connection`, "INVALID_REQUEST"), undefined);
          return;
        }
        if (this.calls.size >= this.limits.maxInflightPerConnection) {
          this.server.stats.overloaded++;
          const limit = this.limits.maxInflightPerConnection;
          const refusal = new RpcError(`This connection has ${this.calls.size} calls in flight, its limit (EBB_MAX_INFLIGHT_PER_CONNECTION)`, "OVERLOADED", {
            data: { inflight: this.calls.size, limit },
          });
          this.respond(msgid, refusal, undefined);
          return;
        }
        if (parsed.method === KEEPALIVE_METHOD) this.notePeerKeepalive(parsed.params[0]);
        const call = new ServerCall(this, msgid, parsed.method, parsed.params, parsed.meta, receivedAt);
        const active = this.server.options.dispatcher.dispatch(call);
        if (active && !active.answered) this.calls.set(msgid, active);
        return;
      }
      case "notification":
        if (parsed.method === "$cancel") this.cancel(parsed.params[0], parsed.params[1]);
        else if (!this.server.options.onNotification?.(parsed.method, parsed.params, this.peer)) this.droppedNotification(parsed.method);
        return;
      case "invalid-request":
        this.respond(parsed.msgid, new RpcError(parsed.reason, "INVALID_REQUEST"), undefined);
        return;
      case "response":
        // Servers do not call clients; a stray response is dropped.
        this.log.debug("dropped a response sent to the server", { peer: this.peer, msgid: parsed.msgid });
        return;
      case "malformed":
        this.reject(`Not a msgpack-rpc message: ${parsed.reason}`);
        return;
    }
  }

  /** One message before the cluster key handshake is done: the check (auth.ts) decides, the connection answers. */
  private authenticate(parsed: Exclude<ReturnType<typeof parseMessage>, { kind: "malformed" }>): void {
    const msgid = parsed.kind === "request" || parsed.kind === "invalid-request" ? parsed.msgid : undefined;
    const step = this.keyCheck!.step(parsed.kind === "request" ? parsed : undefined, () => this.server.authGuard!.turnsAway(this.peer));
    if (step.kind === "refuse") return this.refuse(msgid, step.message, step.failure, step.data);
    if (step.proven) {
      this.authenticated = true;
      clearTimeout(this.authTimer);
      if (step.secondary) this.server.authGuard!.provedSecondary(this.peer);
    }
    this.respond(msgid!, null, step.result);
  }

  /** Answers UNAUTHENTICATED (when there is a request to answer), then closes once that is written; a failure counts against the host. */
  private refuse(msgid: number | undefined, message: string, failure: AuthFailure | false = "handshake", data?: unknown): void {
    if (msgid !== undefined) this.respond(msgid, new RpcError(message, "UNAUTHENTICATED", { data }), undefined);
    if (failure) this.server.authGuard!.failed(this.peer, message, failure);
    this.server.stats.rejected++;
    this.finished = true;
    this.finishedAt = Date.now();
    this.writer.flush();
    this.socket.end();
  }

  /** @internal The answer to `call`, from the dispatcher. */
  replied(call: ServerCall, error: RpcError | null, result: unknown, headers: CallHeaders | undefined): void {
    const { msgid } = call;
    // A call still running is in `calls` under its msgid, and no other can be (a duplicate is refused); one answered at once never was.
    if (this.calls.size > 0) this.calls.delete(msgid);
    // Answer headers go only to a caller that sent a meta: a plain msgpack-rpc client reads 4 elements.
    this.respond(msgid, error, result, call.method, call.meta && headers);
  }

  private respond(msgid: number, error: RpcError | null, result: unknown, method?: string, headers?: CallHeaders): void {
    if (this.closed) return;
    try {
      if (error) this.writer.send(headers ? [RESPONSE, msgid, error.toWire(), null, { headers }] : [RESPONSE, msgid, error.toWire(), null]);
      else this.writer.sendResult(msgid, result ?? null, headers && { headers });
    } catch (cause) {
      // The answer cannot be written (too deep, a value msgpack has no type for): the caller
      // still gets exactly one answer, an INTERNAL error that says why.
      const what = error ? "Error" : "Result";
      const reason = errorText(cause);
      const failure = new RpcError(`${what} of ${method ? `"${method}"` : `msgid ${msgid}`} cannot be encoded: ${reason}`, "INTERNAL");
      this.log.error("an answer could not be encoded", { peer: this.peer, method, error: reason });
      this.writer.send([RESPONSE, msgid, failure.toWire(), null]);
    }
    if (this.ending && this.calls.size === 0) this.endWhenIdle();
  }

  /** `$cancel [msgid, code?]`: the caller gave up on a call; `DEADLINE_EXCEEDED` when its own deadline (or its caller's) passed. */
  private cancel(msgid: unknown, code: unknown): void {
    const active = typeof msgid === "number" ? this.calls.get(msgid) : undefined;
    if (!active) return;
    if (code === "DEADLINE_EXCEEDED") active.abort(new RpcError(`Deadline exceeded upstream of ${active.method}`, "DEADLINE_EXCEEDED"));
    else active.abort(new RpcError("Cancelled by the caller", "CANCELLED"));
  }

  private reject(reason: string): void {
    if (this.closed) return;
    this.server.rejections.warn(this.peer, `closing connection from ${this.peer}: ${reason}`, { peer: this.peer });
    this.server.stats.rejected++;
    this.socket.close();
  }

  private afterFlush(): void {
    if (!this.paused && this.socket.bufferedBytes > this.highWaterBytes) {
      // The peer reads slower than it asks: stop taking requests until it catches up.
      this.paused = true;
      this.server.stats.pausedReads++;
      this.socket.pause();
    }
  }

  private drained(): void {
    if (this.paused) {
      this.paused = false;
      if (this.yielding === undefined) this.socket.resume();
    }
  }

  private onClosed(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.authTimer);
    clearTimeout(this.yielding);
    this.account();
    this.server.forget(this);
    if (error) this.log.debug("connection closed with an error", { peer: this.peer, error: error.message });
    for (const listener of this.closeListeners ?? []) listener();
    this.closeListeners = undefined;
    const gone = new RpcError("The caller disconnected", "CANCELLED");
    for (const active of this.calls.values()) active.abort(gone);
    this.calls.clear();
  }
}

/** The method of ebb's keep-alive pings (src/rpc/channel.ts): every node answers it, draining or not. */
export const KEEPALIVE_METHOD = "$ping";
/** A peer that announced keep-alive pings and then sent nothing for this many intervals is closed. */
export const KEEPALIVE_GRACE = 4;
/** The shortest keep-alive interval: what EBB_KEEPALIVE_MS accepts, and what a peer's announcement is held to. */
export const MIN_KEEPALIVE_MS = 100;
const HOUR_MS = 3_600_000;

/** After our side of a connection ended, how long the peer gets to close its side before it is closed for it. */
const ENDED_LINGER_MS = 1_000;

/** How often the server checks read and idle timeouts: a quarter of the shorter, between 10 ms and 1 s. */
function sweepIntervalMs(limits: ConnectionLimits): number {
  const shortest = Math.min(limits.readTimeoutMs, limits.idleTimeoutMs > 0 ? limits.idleTimeoutMs : Infinity);
  return Math.max(10, Math.min(1_000, Math.floor(shortest / 4)));
}
