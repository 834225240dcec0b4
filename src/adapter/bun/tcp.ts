/// <reference types="bun-types" />
import type { ConnectOptions, Listener, ListenOptions, ServerTls, Socket, SocketHandlers } from "../../runtime/types.ts";
import { type PushConnection, StreamSocket } from "../../runtime/socket.ts";

type BunSocket = Bun.Socket<BunSocketState>;

interface BunSocketState {
  socket?: StreamSocket;
}

/** A Bun socket as the state machine drives it: Bun writes synchronously, may take part, and calls drain. */
class BunConnection implements PushConnection {
  constructor(private readonly raw: BunSocket) {}
  write(bytes: Uint8Array): number {
    return this.raw.write(bytes);
  }
  shutdownWrite(): void {
    this.raw.shutdown();
  }
  terminate(): void {
    this.raw.terminate();
  }
  pause(): void {
    this.raw.pause();
  }
  resume(): void {
    this.raw.resume();
  }
  setNoDelay(noDelay: boolean): void {
    this.raw.setNoDelay(noDelay);
  }
  setKeepAlive(initialDelayMs: number): void {
    this.raw.setKeepAlive(true, initialDelayMs);
  }
}

/** A new connection: its socket, reachable from Bun's callbacks, then the owner's handlers. */
function open(raw: BunSocket, remotePort: number, handlers: (socket: Socket) => SocketHandlers): StreamSocket {
  const socket = new StreamSocket(new BunConnection(raw), `${raw.remoteAddress}:${remotePort}`);
  raw.data = { socket };
  return socket.start(handlers);
}

const handler = {
  binaryType: "uint8array",
  data: (raw: BunSocket, chunk: Uint8Array) => raw.data?.socket?.received(chunk),
  drain: (raw: BunSocket) => raw.data?.socket?.writable(),
  end: (raw: BunSocket) => raw.data?.socket?.peerEnded(),
  close: (raw: BunSocket, error?: Error) => raw.data?.socket?.closed(error),
  error: (raw: BunSocket, error: Error) => raw.data?.socket?.closed(error),
} as const;

/** Bun.listen with callback handlers; a TLS listener reloads its certificate by listening again on its port. */
export async function listen(options: ListenOptions): Promise<Listener> {
  const bind = (port: number, tls: ServerTls | undefined) =>
    Bun.listen<BunSocketState>({
      hostname: options.host,
      port,
      allowHalfOpen: true,
      ...(tls && { tls: { ...tls, rejectUnauthorized: true } }),
      // A handshake handler makes Bun call open at accept, before the handshake, so the core bounds a peer that never finishes it.
      socket: { ...handler, open: (raw) => void open(raw, (raw as unknown as { remotePort: number }).remotePort, options.accept), handshake: () => {} },
    });
  let current = options.tls;
  let server = bind(options.port, current);
  const port = server.port;
  let stopped = false;
  return {
    host: server.hostname,
    port,
    stop() {
      if (!stopped) {
        stopped = true;
        server.stop(false);
      }
      return Promise.resolve();
    },
    ...(options.tls && {
      reloadTls(tls: ServerTls) {
        if (stopped) return Promise.resolve();
        server.stop(false);
        try {
          server = bind(port, tls);
        } catch (error) {
          // Keep serving with what worked (Bun checks the certificate here too).
          server = bind(port, current);
          return Promise.reject(error);
        }
        current = tls;
        return Promise.resolve();
      },
    }),
  };
}

/**
 * Bun.connect with callback handlers. Under TLS, Bun opens the socket before the
 * handshake and, when the server's certificate does not verify, only closes it:
 * so the owner gets the socket after `handshake` succeeds, and otherwise the
 * promise rejects with Bun's reason.
 */
export async function connect(options: ConnectOptions): Promise<Socket> {
  let socket: StreamSocket | undefined;
  const where = `${options.host}:${options.port}`;
  const tls = options.tls;
  if (!tls) {
    await Bun.connect<BunSocketState>({
      hostname: options.host,
      port: options.port,
      allowHalfOpen: true,
      data: {},
      socket: { ...handler, open: (raw) => void (socket = open(raw, options.port, options.open)) },
    });
    if (!socket) throw new Error(`Connection to ${where} opened no socket`);
    return socket;
  }
  const { promise: handshake, resolve, reject } = Promise.withResolvers<StreamSocket>();
  const raw = await Bun.connect<BunSocketState>({
    hostname: options.host,
    port: options.port,
    allowHalfOpen: true,
    data: {},
    tls: { ...tls, serverName: tls.serverName ?? options.host, rejectUnauthorized: true },
    socket: {
      ...handler,
      open: () => {},
      handshake: (raw, _success, error) => (error ? reject(error) : resolve(open(raw, options.port, options.open))),
      close: (raw, error) => {
        reject(error ?? new Error("the server closed the connection"));
        raw.data?.socket?.closed(error);
      },
    },
  });
  try {
    return await handshake;
  } catch (error) {
    raw.terminate();
    throw new Error(`TLS handshake with ${where} failed: ${(error as Error).message}`, { cause: error });
  }
}
