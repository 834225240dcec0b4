import type { Logger } from "../log.ts";
import type { Listener, Runtime, Socket, SocketHandlers } from "../runtime/types.ts";
import { FrameError, MessageDecoder } from "../wire/decoder.ts";
import { BatchWriter } from "../wire/encoder.ts";
import { NOTIFICATION, parseMessage, RESPONSE } from "../wire/messages.ts";
import { AUTH_METHOD, AUTH_TIMEOUT_MS, newNonce, proof, proofMatches, readNonce, WRONG_KEY } from "./auth.ts";
import { AuthGuard } from "./auth-guard.ts";
import type { ActiveCall, Dispatcher } from "./dispatch.ts";
import { RpcError } from "./errors.ts";

/** Options of an `RpcServer`. */
export interface RpcServerOptions {
  dispatcher: Dispatcher;
  log: Logger;
  /** Largest message accepted; a larger one closes its connection. */
  maxMessageBytes: number;
  /** Bytes queued to one connection above which we stop reading its requests. */
  highWaterBytes?: number;
  /** Notifications other than ebb's own `$cancel` (membership's one-way `$swim.*`). */
  onNotification?(method: string, params: unknown[], peer: string): void;
  /** EBB_CLUSTER_KEY: every connection must prove it holds this key (see auth.ts) before anything else. */
  clusterKey?: string;
  /** A keyed connection not authenticated within this is closed. Default AUTH_TIMEOUT_MS (10 s). */
  authTimeoutMs?: number;
}

/** Default for `highWaterBytes`: reads pause while a connection owes this much unread reply. */
export const DEFAULT_HIGH_WATER_BYTES = 1024 * 1024;

/** The msgpack-rpc TCP server: accepts connections and hands their requests to a dispatcher. */
export class RpcServer {
  readonly connections = new Set<ServerConnection>();
  /** Counters for metrics and tests. */
  readonly stats = { accepted: 0, rejected: 0, pausedReads: 0 };
  private readonly listeners: Listener[] = [];
  /** With a cluster key: failed handshakes per source host, throttled and logged in aggregate (auth-guard.ts). */
  readonly authGuard: AuthGuard | undefined;

  constructor(
    private readonly runtime: Runtime,
    readonly options: RpcServerOptions,
  ) {
    this.authGuard = options.clusterKey === undefined ? undefined : new AuthGuard(options.log);
  }

  /** Starts accepting on `host:port` (0 picks a free port). */
  async listen(host: string, port: number): Promise<Listener> {
    const listener = await this.runtime.listen({
      host,
      port,
      accept: (socket) => new ServerConnection(this, socket).handlers,
    });
    this.listeners.push(listener);
    return listener;
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

/** One accepted connection: decodes requests, dispatches them, batches the answers. */
export class ServerConnection {
  readonly handlers: SocketHandlers;
  private readonly decoder: MessageDecoder;
  private readonly writer: BatchWriter;
  private readonly calls = new Map<number, ActiveCall>();
  private readonly log: Logger;
  private readonly highWaterBytes: number;
  private paused = false;
  private ending = false;
  /** Our write side is closed: requests that still arrive are dropped unread. */
  private finished = false;
  private closed = false;
  /** With a cluster key: false until the peer completes the `$auth` handshake. */
  private authenticated: boolean;
  private serverNonce: Uint8Array | undefined;
  private authTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly server: RpcServer,
    private readonly socket: Socket,
  ) {
    const { options } = server;
    this.log = options.log;
    this.highWaterBytes = options.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
    this.decoder = new MessageDecoder(options.maxMessageBytes);
    this.writer = new BatchWriter(socket, () => this.afterFlush());
    socket.setNoDelay(true);
    this.authenticated = options.clusterKey === undefined;
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
      end: () => this.endWhenIdle(),
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

  /**
   * Half-closes once every call on this connection has been answered. The last
   * message is a final `$goaway`: a call the peer sees unanswered after it was
   * never read, and never will be, so it is safe to send anywhere else.
   */
  endWhenIdle(): void {
    this.ending = true;
    if (this.calls.size > 0 || this.finished || this.closed) return;
    this.finished = true;
    this.writer.send([NOTIFICATION, "$goaway", [{ reason: "closing", final: true }]]);
    this.writer.flush();
    this.socket.end();
  }

  /** Closes now, dropping anything unwritten. */
  close(): void {
    this.socket.close();
  }

  private receive(chunk: Uint8Array): void {
    let messages: unknown[];
    try {
      messages = this.decoder.push(chunk);
    } catch (error) {
      if (error instanceof FrameError) return this.reject(error.message);
      throw error;
    }
    try {
      for (const message of messages) {
        if (this.closed || this.finished) return;
        this.handle(message);
      }
    } catch (error) {
      // A bug of ours, not the peer's: say so loudly, and keep the process up.
      this.log.error("failed to handle a message; closing the connection", { peer: this.peer, error });
      this.socket.close();
    }
  }

  private handle(message: unknown): void {
    const parsed = parseMessage(message);
    if (!this.authenticated && parsed.kind !== "malformed") return this.authenticate(parsed);
    switch (parsed.kind) {
      case "request": {
        const { msgid } = parsed;
        if (this.calls.has(msgid)) {
          this.respond(msgid, new RpcError(`msgid ${msgid} is already in flight on this connection`, "INVALID_REQUEST"), undefined);
          return;
        }
        // Declared first: a call answered at once replies before dispatch returns.
        let active: ActiveCall | undefined;
        active = this.server.options.dispatcher.dispatch(
          { method: parsed.method, params: parsed.params, meta: parsed.meta, peer: this.socket.remote },
          (error, result) => {
            if (this.calls.get(msgid) === active) this.calls.delete(msgid);
            this.respond(msgid, error, result);
          },
        );
        if (active && !active.answered) this.calls.set(msgid, active);
        return;
      }
      case "notification":
        if (parsed.method === "$cancel") this.cancel(parsed.params[0]);
        else this.server.options.onNotification?.(parsed.method, parsed.params, this.peer);
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

  /** The server's side of the cluster key handshake; anything else first is refused. */
  private authenticate(parsed: Exclude<ReturnType<typeof parseMessage>, { kind: "malformed" }>): void {
    const key = this.server.options.clusterKey!;
    if (parsed.kind !== "request" || parsed.method !== AUTH_METHOD) {
      const msgid = parsed.kind === "request" || parsed.kind === "invalid-request" ? parsed.msgid : undefined;
      return this.refuse(msgid, "This node requires the cluster key (EBB_CLUSTER_KEY): the connection must begin with the $auth handshake");
    }
    // The hello gets only our nonce: nothing derived from the key goes to a peer that has not proven it.
    if (!this.serverNonce) {
      this.serverNonce = newNonce();
      return this.respond(parsed.msgid, null, { nonce: this.serverNonce });
    }
    const input = parsed.params[0] as { nonce?: unknown; proof?: unknown } | undefined;
    const client = readNonce(input?.nonce);
    if (!client) return this.refuse(parsed.msgid, "The second $auth must carry a 16-byte nonce and a proof");
    // Other connections of this host may have used up its failures since this one was accepted.
    if (this.server.authGuard!.turnsAway(this.peer)) return this.refuse(parsed.msgid, "Too many failed cluster key handshakes from this host; try again later", false);
    if (!proofMatches(proof(key, "client", client, this.serverNonce), input?.proof)) return this.refuse(parsed.msgid, "Wrong cluster key", true, { reason: WRONG_KEY });
    this.authenticated = true;
    clearTimeout(this.authTimer);
    this.respond(parsed.msgid, null, { ok: true, proof: proof(key, "server", client, this.serverNonce) });
  }

  /** Answers UNAUTHENTICATED (when there is a request to answer), then closes once that is written; a failure counts against the host. */
  private refuse(msgid: number | undefined, message: string, failure = true, data?: unknown): void {
    if (msgid !== undefined) this.respond(msgid, new RpcError(message, "UNAUTHENTICATED", { data }), undefined);
    if (failure) this.server.authGuard!.failed(this.peer, message);
    this.server.stats.rejected++;
    this.finished = true;
    this.writer.flush();
    this.socket.end();
  }

  private respond(msgid: number, error: RpcError | null, result: unknown): void {
    if (this.closed) return;
    this.writer.send([RESPONSE, msgid, error ? error.toWire() : null, error ? null : (result ?? null)]);
    if (this.ending && this.calls.size === 0) this.endWhenIdle();
  }

  private cancel(msgid: unknown): void {
    const active = typeof msgid === "number" ? this.calls.get(msgid) : undefined;
    active?.abort(new RpcError("Cancelled by the caller", "CANCELLED"));
  }

  private reject(reason: string): void {
    if (this.closed) return;
    this.log.warn(`closing connection from ${this.peer}: ${reason}`, { peer: this.peer });
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
      this.socket.resume();
    }
  }

  private onClosed(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.authTimer);
    this.server.forget(this);
    if (error) this.log.debug("connection closed with an error", { peer: this.peer, error: error.message });
    const gone = new RpcError("The caller disconnected", "CANCELLED");
    for (const active of this.calls.values()) active.abort(gone);
    this.calls.clear();
  }
}
