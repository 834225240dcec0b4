/// <reference types="bun-types" />
import type { ConnectOptions, Listener, ListenOptions, Socket, SocketHandlers } from "../../runtime/types.ts";
import { WriteQueue } from "../write-queue.ts";

type BunSocket = Bun.Socket<BunSocketState>;

interface BunSocketState {
  socket?: BunTcpSocket;
}

/** Wraps a Bun socket in the runtime `Socket` interface. */
class BunTcpSocket implements Socket {
  readonly remote: string;
  handlers: SocketHandlers | undefined;
  private readonly queue = new WriteQueue();
  private ending = false;
  private closed = false;
  private readEnded = false;
  private writeEnded = false;

  constructor(private readonly raw: BunSocket, remotePort: number) {
    this.remote = `${raw.remoteAddress}:${remotePort}`;
  }

  get bufferedBytes(): number {
    return this.queue.bytes;
  }

  write(bytes: Uint8Array): boolean {
    if (this.closed || this.ending) return false;
    if (this.queue.bytes > 0) {
      this.queue.push(bytes);
      return false;
    }
    const taken = this.raw.write(bytes);
    if (taken === bytes.byteLength) return true;
    // Bun may accept fewer bytes than given under backpressure; the rest waits for drain.
    this.queue.push(taken > 0 ? bytes.subarray(taken) : bytes);
    return false;
  }

  /** Called from Bun's drain: flush what is queued, then tell the owner. */
  flush(): void {
    while (this.queue.bytes > 0) {
      const head = this.queue.peek();
      const taken = this.raw.write(head);
      if (taken < 0) return;
      this.queue.consume(taken);
      if (taken < head.byteLength) return;
    }
    if (this.ending) this.finishEnd();
    else this.handlers?.drain?.();
  }

  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    if (this.queue.bytes === 0) this.finishEnd();
  }

  private finishEnd(): void {
    if (this.writeEnded) return;
    this.writeEnded = true;
    // Never hand data to end(): it may be dropped under backpressure. Everything was written above.
    this.raw.shutdown();
    if (this.readEnded) this.close();
  }

  peerEnded(): void {
    this.readEnded = true;
    this.handlers?.end?.();
    if (this.writeEnded) this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.clear();
    this.raw.terminate();
  }

  closedByRuntime(error?: Error): void {
    this.closed = true;
    this.queue.clear();
    const handlers = this.handlers;
    this.handlers = undefined;
    handlers?.close(error);
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

const handler = {
  binaryType: "uint8array",
  data(raw: BunSocket, chunk: Uint8Array) {
    raw.data.socket?.handlers?.data(chunk);
  },
  drain(raw: BunSocket) {
    raw.data.socket?.flush();
  },
  end(raw: BunSocket) {
    raw.data.socket?.peerEnded();
  },
  close(raw: BunSocket, error?: Error) {
    raw.data.socket?.closedByRuntime(error);
  },
  error(raw: BunSocket, error: Error) {
    raw.data.socket?.closedByRuntime(error);
  },
} as const;

/** Bun.listen with callback handlers. */
export async function listen(options: ListenOptions): Promise<Listener> {
  const server = Bun.listen<BunSocketState>({
    hostname: options.host,
    port: options.port,
    allowHalfOpen: true,
    socket: {
      ...handler,
      open(raw) {
        const socket = new BunTcpSocket(raw, (raw as unknown as { remotePort: number }).remotePort);
        raw.data = { socket };
        socket.handlers = options.accept(socket);
      },
    },
  });
  let stopped = false;
  return {
    host: server.hostname,
    port: server.port,
    stop() {
      if (!stopped) {
        stopped = true;
        server.stop(false);
      }
      return Promise.resolve();
    },
  };
}

/** Bun.connect with callback handlers. */
export async function connect(options: ConnectOptions): Promise<Socket> {
  let socket: BunTcpSocket | undefined;
  await Bun.connect<BunSocketState>({
    hostname: options.host,
    port: options.port,
    allowHalfOpen: true,
    data: {},
    socket: {
      ...handler,
      open(raw) {
        socket = new BunTcpSocket(raw, options.port);
        raw.data = { socket };
        socket.handlers = options.open(socket);
      },
    },
  });
  if (!socket) throw new Error(`Connection to ${options.host}:${options.port} opened no socket`);
  return socket;
}
