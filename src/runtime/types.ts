/**
 * The runtime seam: everything the core knows about Bun or Deno.
 *
 * Adapters (src/adapter/bun, src/adapter/deno) fill this in and decide nothing;
 * every protocol decision lives in the core.
 */

/** The process's two output streams. */
export type OutputStream = "stdout" | "stderr";

/** Callbacks a socket owner receives; the model is Bun's (`data`, `drain`, `end`, `close`). */
export interface SocketHandlers {
  /** Bytes from the peer. The chunk is owned by the callee; it is not reused by the adapter. */
  data(chunk: Uint8Array): void;
  /** Everything queued by `write` has been handed to the kernel: the owner may write more. */
  drain?(): void;
  /** The peer half-closed (sent FIN): no more data will arrive, but we may still write. */
  end?(): void;
  /** The socket is fully closed; called exactly once, also when our own `close()` closed it. */
  close(error?: Error): void;
}

/**
 * A TCP connection with queued writes and read flow control. Both adapters
 * (and the in-memory runtime) implement it with one state machine, `StreamSocket`
 * in src/runtime/socket.ts.
 */
export interface Socket {
  /** `host:port` of the peer. */
  readonly remote: string;
  /** Bytes accepted by `write` and not yet taken by the kernel. */
  readonly bufferedBytes: number;
  /**
   * Sends bytes, in order; the socket keeps a reference until the kernel took them, so
   * they must not be modified afterwards. While the socket is open nothing is dropped:
   * what the kernel does not take now is queued, and `drain` follows once the queue is empty.
   * Returns true when the kernel took every byte at once, false when some wait in the queue.
   *
   * After `end()`, and once the socket closed (by `close()`, the peer or an error), a write
   * is discarded: it returns false, queues nothing, fires no `drain` and never throws, so an
   * owner may flush late without checking first.
   */
  write(bytes: Uint8Array): boolean;
  /**
   * Half-closes: no further write is accepted, and FIN is sent after every queued byte
   * was taken. Reads go on; the socket closes once the peer has ended too. Idempotent.
   */
  end(): void;
  /** Closes at once, dropping whatever is queued; the owner's `close` runs before this returns. Idempotent. */
  close(): void;
  /** Stops delivering `data` until `resume`. */
  pause(): void;
  /** Delivers `data` again after `pause`. */
  resume(): void;
  /** Disables (true) or enables Nagle's algorithm. */
  setNoDelay(noDelay: boolean): void;
  /**
   * Turns TCP keep-alive on, so a peer that vanished without FIN or RST is
   * found. Bun honours `initialDelayMs`; Deno uses the system's timing.
   */
  setKeepAlive(initialDelayMs: number): void;
}

/**
 * TLS of a listener (RPC or HTTP): PEM text, not file paths. The in-memory
 * runtime ignores it (its connections never leave the process).
 */
export interface ServerTls {
  /** The certificate chain, leaf first. */
  cert: string;
  key: string;
  /** CA certificates that client certificates must chain to, when `requestCert`. */
  ca?: string;
  /** Requires a client certificate that chains to `ca`; refused where the runtime cannot (Deno). */
  requestCert?: boolean;
}

/** TLS of an outgoing connection: the server's certificate must chain to `ca` and name `serverName`. */
export interface ClientTls {
  /** CA certificates the server's certificate must chain to (PEM). */
  ca: string;
  /** The name checked against the server's certificate (and sent as SNI); the host dialled when absent. */
  serverName?: string;
  /** A client certificate and its key, for servers that require one. */
  cert?: string;
  key?: string;
}

/** Options for accepting TCP connections. */
export interface ListenOptions {
  /** Accept TLS only. */
  tls?: ServerTls;
  host: string;
  /** 0 picks a free port; read the chosen one from `Listener.port`. */
  port: number;
  /** Called for every accepted connection; returns that connection's handlers. */
  accept(socket: Socket): SocketHandlers;
  /**
   * Accepting failed (out of descriptors: EMFILE, ENFILE); returns how many
   * milliseconds to wait before accepting again. Without it, the adapter waits 100 ms.
   */
  acceptFailed?(error: Error): number;
}

/** Options for opening a TCP connection. */
export interface ConnectOptions {
  host: string;
  port: number;
  /** Speak TLS; the promise rejects, naming the reason, when the server's certificate does not verify. */
  tls?: ClientTls;
  /** Called once the socket exists, before any data arrives. */
  open(socket: Socket): SocketHandlers;
}

/** A bound TCP listener. */
export interface Listener {
  readonly host: string;
  readonly port: number;
  /** Stops accepting; connections already open stay open. Idempotent. */
  stop(): Promise<void>;
  /**
   * A TLS listener only: new connections get `tls` from now on; open ones carry on. The
   * listening socket is replaced on the same port (a connection arriving in that instant
   * is refused, and clients try again).
   */
  reloadTls?(tls: ServerTls): Promise<void>;
}

/** Options for an HTTP server. */
export interface ServeOptions {
  /** Serve HTTPS (a client certificate is never requested: probes and gateways have none). */
  tls?: Omit<ServerTls, "requestCert">;
  host: string;
  /** 0 picks a free port; read the chosen one from `HttpServer.port`. */
  port: number;
  fetch(request: Request): Response | Promise<Response>;
  /**
   * A connection that sends nothing this long (idle keep-alive, or a half-sent
   * request) is closed; 0 never. Where the runtime has no such timeout
   * (Deno.serve), it is not applied.
   */
  idleTimeoutMs: number;
  /**
   * Where the runtime's accept loop ends on an error (Deno.serve, out of
   * descriptors), the adapter serves again on the same address after this long.
   */
  acceptRetryMs: number;
  /** The listener failed (its accept loop ended); it tries to serve again in `retryMs`. */
  onListenerError?(error: unknown, retryMs: number): void;
  /** The listener serves again after a failure. */
  onListenerRecovered?(): void;
}

/** A listening HTTP server. */
export interface HttpServer {
  readonly host: string;
  readonly port: number;
  /**
   * Stops accepting and lets requests in flight finish; resolves once every
   * connection is closed. Idempotent.
   */
  stop(): Promise<void>;
  /**
   * An HTTPS server only: new connections get `tls` from now on; requests in flight finish
   * on the listener they came in on. The listening socket is replaced on the same port (a
   * connection arriving in that instant is refused). Rejects, serving on with the old
   * certificate, when the runtime refuses the new one.
   */
  reloadTls?(tls: Omit<ServerTls, "requestCert">): Promise<void>;
}

/** The signals ebb reacts to. */
export type SignalName = "SIGTERM" | "SIGINT" | "SIGHUP";

/** The runtime interface the core is written against. */
export interface Runtime {
  /** `bun`, `deno`, or `memory` (the in-memory runtime): for logs and `$info`, never for branching in the core. */
  readonly name: "bun" | "deno" | "memory";
  /** The runtime's own version string. */
  readonly version: string;
  listen(options: ListenOptions): Promise<Listener>;
  /** Resolves once connected; rejects when the connection cannot be made. */
  connect(options: ConnectOptions): Promise<Socket>;
  /** Serves HTTP with a fetch-style handler. */
  serve(options: ServeOptions): Promise<HttpServer>;
  /** Calls `handler` on each delivery of `signal`; returns a function that removes it. */
  onSignal(signal: SignalName, handler: () => void): () => void;
  /** Ends the process with `code`. */
  exit(code: number): never;
  /** A snapshot of the environment variables. */
  env(): Record<string, string>;
  /** True when standard output (or standard error) is a terminal. */
  isTerminal(stream: OutputStream): boolean;
  /** Writes text to standard output or standard error as is (no newline added), all of it before returning. */
  write(stream: OutputStream, text: string): void;
  /** Command-line arguments after the script (or the compiled binary). */
  args(): string[];
}
