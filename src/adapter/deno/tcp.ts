import type { ConnectOptions, Listener, ListenOptions, Socket, SocketHandlers } from "../../runtime/types.ts";
import { WriteQueue } from "../write-queue.ts";

const READ_BUFFER_BYTES = 64 * 1024;

/**
 * Wraps a Deno TCP connection in the runtime `Socket` interface.
 *
 * Reads use `conn.read`, not `conn.readable`: the stream closes the whole
 * connection on the peer's FIN, which would lose our replies to a half-closed peer.
 */
class DenoTcpSocket implements Socket {
  readonly remote: string;
  private handlers: SocketHandlers | undefined;
  private readonly queue = new WriteQueue();
  private writing = false;
  private ending = false;
  private closed = false;
  private readEnded = false;
  private writeEnded = false;
  private paused = false;
  private wakeReader: (() => void) | undefined;

  constructor(private readonly conn: Deno.TcpConn) {
    const addr = conn.remoteAddr;
    this.remote = `${addr.hostname}:${addr.port}`;
  }

  start(handlers: SocketHandlers): void {
    this.handlers = handlers;
    void this.readLoop();
  }

  get bufferedBytes(): number {
    return this.queue.bytes;
  }

  private async readLoop(): Promise<void> {
    const buffer = new Uint8Array(READ_BUFFER_BYTES);
    try {
      while (!this.closed) {
        if (this.paused) {
          await new Promise<void>((resolve) => (this.wakeReader = resolve));
          continue;
        }
        const n = await this.conn.read(buffer);
        if (this.closed) return;
        if (n === null) {
          this.peerEnded();
          return;
        }
        this.handlers?.data(buffer.slice(0, n));
      }
    } catch (error) {
      this.shutdown(error);
    }
  }

  write(bytes: Uint8Array): boolean {
    if (this.closed || this.ending) return false;
    this.queue.push(bytes);
    if (!this.writing) void this.pump();
    return false;
  }

  // Deno's write may take part of the buffer; loop until the queue is empty.
  private async pump(): Promise<void> {
    this.writing = true;
    try {
      while (this.queue.bytes > 0 && !this.closed) {
        const taken = await this.conn.write(this.queue.peek());
        this.queue.consume(taken);
      }
    } catch (error) {
      this.writing = false;
      this.shutdown(error);
      return;
    }
    this.writing = false;
    if (this.closed) return;
    if (this.ending) void this.finishEnd();
    else this.handlers?.drain?.();
  }

  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    if (!this.writing && this.queue.bytes === 0) void this.finishEnd();
  }

  private async finishEnd(): Promise<void> {
    if (this.writeEnded || this.closed) return;
    this.writeEnded = true;
    try {
      await this.conn.closeWrite();
    } catch (error) {
      this.shutdown(error);
      return;
    }
    if (this.readEnded) this.close();
  }

  private peerEnded(): void {
    this.readEnded = true;
    this.handlers?.end?.();
    if (this.writeEnded) this.close();
  }

  close(): void {
    this.shutdown();
  }

  private shutdown(error?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.clear();
    try {
      this.conn.close();
    } catch {
      // Already closed by the runtime.
    }
    this.wakeReader?.();
    const handlers = this.handlers;
    this.handlers = undefined;
    const reason = error === undefined || isCloseNoise(error) ? undefined : toError(error);
    handlers?.close(reason);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const wake = this.wakeReader;
    this.wakeReader = undefined;
    wake?.();
  }

  setNoDelay(noDelay: boolean): void {
    try {
      this.conn.setNoDelay(noDelay);
    } catch {
      // The socket may already be closed; nothing to tune.
    }
  }

  // Deno.TcpConn.setKeepAlive takes no delay: the system's keep-alive timing applies.
  setKeepAlive(_initialDelayMs: number): void {
    try {
      this.conn.setKeepAlive(true);
    } catch {
      // The socket may already be closed; nothing to tune.
    }
  }
}

function isCloseNoise(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted;
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * Deno.listen with an accept loop that hands each connection its handlers.
 *
 * After a failed accept (EMFILE), Deno's listener never reports a pending
 * connection again (seen on Deno 2.9.6: every later connection waits in the
 * backlog for good), so the loop opens a fresh listener on the same address
 * once the core's back-off has passed. Connections waiting in the old
 * backlog are reset, and their clients try again.
 */
export async function listen(options: ListenOptions): Promise<Listener> {
  const open = (port: number) => Deno.listen({ hostname: options.host, port, transport: "tcp" });
  let listener: Deno.TcpListener = open(options.port);
  const addr = listener.addr;
  let stopped = false;
  const wait = (error: unknown) => new Promise((resolve) => setTimeout(resolve, options.acceptFailed?.(toError(error)) ?? 100));
  const acceptLoop = (async () => {
    while (!stopped) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (stopped || isCloseNoise(error)) return;
        // The old listener keeps the port (callers queue in its backlog) through the back-off;
        // then it is swapped for a fresh one in one step, so the port is never seen closed.
        await wait(error);
        while (!stopped) {
          closeQuietly(listener);
          try {
            listener = open(addr.port);
            break;
          } catch (again) {
            // Still out of descriptors: keep backing off until opening works, or we stop.
            await wait(again);
          }
        }
        if (stopped) closeQuietly(listener);
        continue;
      }
      const socket = new DenoTcpSocket(conn);
      socket.start(options.accept(socket));
    }
  })();
  return {
    host: addr.hostname,
    port: addr.port,
    async stop() {
      if (stopped) return;
      stopped = true;
      closeQuietly(listener);
      await acceptLoop;
    },
  };
}

function closeQuietly(listener: Deno.TcpListener): void {
  try {
    listener.close();
  } catch {
    // Already closed.
  }
}

/** Deno.connect, then the same read loop and write queue as accepted sockets. */
export async function connect(options: ConnectOptions): Promise<Socket> {
  const conn = await Deno.connect({ hostname: options.host, port: options.port, transport: "tcp" });
  const socket = new DenoTcpSocket(conn);
  socket.start(options.open(socket));
  return socket;
}
