/**
 * An in-memory runtime: the whole `Runtime` seam in one process, for fast tests
 * of the core without loopback TCP (the in-memory tier of connect-es's router
 * transport and memberlist's mock network).
 *
 * Connections are pairs of `StreamSocket`s, the same state machine the real
 * adapters use, over an in-process link: each direction holds at most
 * `bufferBytes` unread bytes, so a writer whose peer reads slowly (or is
 * paused) sees partial writes, a queue and `drain` once the peer reads.
 * Delivery is asynchronous (a microtask), as on a real socket.
 */
import { type PushConnection, StreamSocket } from "./socket.ts";
import type {
  ConnectOptions,
  HttpServer,
  Listener,
  ListenOptions,
  OutputStream,
  Runtime,
  ServeOptions,
  SignalName,
  Socket,
  SocketHandlers,
} from "./types.ts";

/** Options of `createMemoryRuntime`. */
export interface MemoryRuntimeOptions {
  /** What `name` reports. Default "bun". */
  name?: Runtime["name"];
  /** What `env()` returns. Default empty. */
  env?: Record<string, string>;
  /** What `args()` returns. Default none. */
  args?: string[];
  /** Streams `isTerminal` reports as terminals. Default none. */
  terminals?: OutputStream[];
  /** Unread bytes one direction of a connection holds before the writer's bytes wait in its queue. Default 64 KiB. */
  bufferBytes?: number;
}

/** Thrown by the in-memory `exit(code)`, since `exit` never returns; `exitCodes` records it too. */
export class MemoryExit extends Error {
  constructor(readonly code: number) {
    super(`exit(${code})`);
  }
}

/** The in-memory runtime, with what a test needs to drive and observe it. */
export interface MemoryRuntime extends Runtime {
  /** Delivers `signal` to every handler registered with `onSignal`. */
  signal(signal: SignalName): void;
  /** Codes passed to `exit`, in order. */
  readonly exitCodes: number[];
  /** Everything written to `stream` so far. */
  output(stream: OutputStream): string;
  /** Sends an HTTP request to a server from `serve` (by the URL's host and port); rejects like a refused connection when none serves there. */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** Connections with a side not closed yet. */
  readonly openConnections: number;
}

/** Default of `MemoryRuntimeOptions.bufferBytes`. */
export const DEFAULT_MEMORY_BUFFER_BYTES = 64 * 1024;

/** The first port `port: 0` hands out. */
const FIRST_FREE_PORT = 20_000;
/** The first port a connecting socket is given (its `remote` on the accepting side). */
const FIRST_EPHEMERAL_PORT = 50_000;

/** An error with a system-style code, as real sockets fail. */
function netError(code: string, message: string): Error {
  return Object.assign(new Error(`${message} (${code})`), { code });
}

const WILDCARD = new Set(["0.0.0.0", "::", ""]);
const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1"]);

/** True when a connection to `target` reaches something bound to `bound`. */
function reaches(bound: string, target: string): boolean {
  return bound === target || WILDCARD.has(bound) || (LOOPBACK.has(bound) && LOOPBACK.has(target));
}

/**
 * One side of an in-process link: what it writes lands in its peer's inbox,
 * which delivers to the peer's socket a microtask later unless paused.
 */
class MemoryEnd implements PushConnection {
  peer!: MemoryEnd;
  socket!: StreamSocket;
  /** Keep-alive delay the owner asked for (0: off), for tests. */
  keepAliveMs = 0;
  private inbox: Uint8Array[] = [];
  private inboxBytes = 0;
  private paused = false;
  private scheduled = false;
  /** A write was not taken whole: the socket hears `writable` once the peer has read. */
  private blocked = false;
  /** The peer sent FIN; delivered after the inbox. */
  private finPending = false;
  private endDelivered = false;
  /** The peer dropped the connection. */
  private resetPending = false;
  /** This side is closed. */
  gone = false;

  constructor(
    private readonly bufferBytes: number,
    private readonly onGone: () => void,
  ) {}

  write(bytes: Uint8Array): number {
    const peer = this.peer;
    // A peer that is gone takes everything, as a kernel does until the reset arrives.
    if (peer.gone) return bytes.byteLength;
    const taken = Math.min(bytes.byteLength, this.bufferBytes - peer.inboxBytes);
    if (taken < bytes.byteLength) this.blocked = true;
    if (taken <= 0) return 0;
    // The peer owns what it receives: it gets a copy, never the writer's buffer.
    peer.inbox.push(bytes.slice(0, taken));
    peer.inboxBytes += taken;
    peer.schedule();
    return taken;
  }

  shutdownWrite(): void {
    this.peer.finPending = true;
    this.peer.schedule();
  }

  terminate(): void {
    this.drop();
    this.peer.resetPending = true;
    this.peer.schedule();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.schedule();
  }

  setNoDelay(): void {}

  setKeepAlive(initialDelayMs: number): void {
    this.keepAliveMs = initialDelayMs;
  }

  private schedule(): void {
    if (this.scheduled || this.gone) return;
    this.scheduled = true;
    queueMicrotask(() => this.deliver());
  }

  private deliver(): void {
    this.scheduled = false;
    if (this.gone) return;
    // Dropped without FIN (a reset): what was not read is lost with the connection.
    if (this.resetPending && !this.finPending) return this.reset();
    while (!this.paused && this.inbox.length > 0) {
      const chunk = this.inbox.shift()!;
      this.inboxBytes -= chunk.byteLength;
      this.socket.received(chunk);
      if (this.gone) return;
    }
    this.peer.wake();
    if (this.paused || this.inbox.length > 0) return;
    if (this.finPending && !this.endDelivered) {
      this.endDelivered = true;
      this.socket.peerEnded();
      if (this.gone) return;
    }
    if (this.resetPending) this.reset();
  }

  /** The peer read: a blocked writer may write again. */
  private wake(): void {
    if (!this.blocked || this.gone || this.peer.inboxBytes >= this.bufferBytes) return;
    this.blocked = false;
    this.socket.writable();
  }

  private reset(): void {
    this.drop();
    this.socket.closed();
  }

  private drop(): void {
    if (this.gone) return;
    this.gone = true;
    this.inbox = [];
    this.inboxBytes = 0;
    this.onGone();
  }
}

/** Creates an in-memory runtime; see the module comment. */
export function createMemoryRuntime(options: MemoryRuntimeOptions = {}): MemoryRuntime {
  const bufferBytes = options.bufferBytes ?? DEFAULT_MEMORY_BUFFER_BYTES;
  const listeners = new Map<number, { host: string; accept(socket: Socket): SocketHandlers }>();
  const servers = new Map<number, { host: string; handle(request: Request): Promise<Response> }>();
  const signals = new Map<SignalName, Set<() => void>>();
  const output: Record<OutputStream, string> = { stdout: "", stderr: "" };
  const exitCodes: number[] = [];
  let nextPort = FIRST_FREE_PORT;
  let nextEphemeralPort = FIRST_EPHEMERAL_PORT;
  let openConnections = 0;

  const bind = (host: string, port: number): number => {
    if (port === 0) {
      while (listeners.has(nextPort) || servers.has(nextPort)) nextPort++;
      return nextPort++;
    }
    if (listeners.has(port) || servers.has(port)) throw netError("EADDRINUSE", `Address ${host}:${port} is already in use`);
    return port;
  };
  const refused = (host: string, port: number) => netError("ECONNREFUSED", `Connection refused: ${host}:${port}`);

  const runtime: MemoryRuntime = {
    name: options.name ?? "bun",
    version: "memory",

    async listen(listen: ListenOptions): Promise<Listener> {
      const port = bind(listen.host, listen.port);
      const entry = { host: listen.host, accept: listen.accept };
      listeners.set(port, entry);
      return {
        host: listen.host,
        port,
        stop() {
          if (listeners.get(port) === entry) listeners.delete(port);
          return Promise.resolve();
        },
      };
    },

    async connect(connect: ConnectOptions): Promise<Socket> {
      // Connecting takes a turn of the event loop, as it does on loopback.
      await Promise.resolve();
      const listener = listeners.get(connect.port);
      if (!listener || !reaches(listener.host, connect.host)) throw refused(connect.host, connect.port);
      let sidesOpen = 2;
      const onGone = () => void (--sidesOpen === 0 && openConnections--);
      const client = new MemoryEnd(bufferBytes, onGone);
      const server = new MemoryEnd(bufferBytes, onGone);
      client.peer = server;
      server.peer = client;
      openConnections++;
      server.socket = new StreamSocket(server, `127.0.0.1:${nextEphemeralPort++}`);
      client.socket = new StreamSocket(client, `${connect.host}:${connect.port}`);
      server.socket.start(listener.accept);
      return client.socket.start(connect.open);
    },

    async serve(serve: ServeOptions): Promise<HttpServer> {
      const port = bind(serve.host, serve.port);
      const inflight = new Set<Promise<unknown>>();
      const entry = {
        host: serve.host,
        handle(request: Request): Promise<Response> {
          const answer = Promise.resolve().then(() => serve.fetch(request));
          const settled = answer.catch(() => undefined).finally(() => inflight.delete(settled));
          inflight.add(settled);
          return answer;
        },
      };
      servers.set(port, entry);
      let stopping: Promise<void> | undefined;
      return {
        host: serve.host,
        port,
        stop() {
          if (servers.get(port) === entry) servers.delete(port);
          return (stopping ??= Promise.all(inflight).then(() => undefined));
        },
      };
    },

    async fetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
      const request = input instanceof Request ? new Request(input, init) : new Request(String(input), init);
      const url = new URL(request.url);
      const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
      const host = url.hostname.replace(/^\[|\]$/g, "");
      const server = servers.get(port);
      if (!server || !reaches(server.host, host)) throw refused(host, port);
      return await server.handle(request);
    },

    onSignal(signal: SignalName, handler: () => void) {
      const handlers = signals.get(signal) ?? new Set();
      signals.set(signal, handlers);
      // A handler registered twice runs twice, as with process.on.
      const once = () => handler();
      handlers.add(once);
      return () => void handlers.delete(once);
    },

    signal(signal: SignalName) {
      for (const handler of [...(signals.get(signal) ?? [])]) handler();
    },

    exit(code: number): never {
      exitCodes.push(code);
      throw new MemoryExit(code);
    },
    exitCodes,

    env: () => ({ ...options.env }),
    args: () => [...(options.args ?? [])],
    isTerminal: (stream: OutputStream) => options.terminals?.includes(stream) ?? false,
    write(stream: OutputStream, text: string) {
      output[stream] += text;
    },
    output: (stream: OutputStream) => output[stream],

    get openConnections() {
      return openConnections;
    },
  };
  return runtime;
}
