import type { Socket, SocketHandlers } from "./types.ts";
import { WriteQueue } from "./write-queue.ts";

/**
 * Bytes a pulled read asks for at once: it starts small, since every open connection holds its
 * buffer in a pending read (10,000 idle connections at 64 KiB each would hold 640 MiB), doubles
 * whenever a read fills it, up to the most, and halves after a run of reads that used little of it.
 */
const MIN_READ_BUFFER_BYTES = 4 * 1024;
const MAX_READ_BUFFER_BYTES = 64 * 1024;
/** Reads in a row that used under a quarter of the buffer before it halves. */
const SHRINK_AFTER_READS = 16;

/** The runtime's connection as the state machine drives it; adapters map these onto their calls and decide nothing. */
interface RawConnectionBase {
  /**
   * Hands bytes to the kernel. Either returns how many it took now (fewer
   * under backpressure, 0 or less for none; the rest waits for `writable()`),
   * or a promise of how many it took, after which the core writes the rest.
   */
  write(bytes: Uint8Array): number | Promise<number>;
  /** Sends FIN: our half of the connection is done. */
  shutdownWrite(): void | Promise<void>;
  /** Drops the connection at once; must not throw. */
  terminate(): void;
  setNoDelay(noDelay: boolean): void;
  setKeepAlive(initialDelayMs: number): void;
  /** True for errors that only mean the connection was already closed: the owner's `close` then gets no error. */
  isCloseNoise?(error: unknown): boolean;
}

/** A runtime that pushes data (callbacks for data, drain, end and close): it calls `received`, `writable`, `peerEnded` and `closed`; reads stop with `pause`. */
export interface PushConnection extends RawConnectionBase {
  pause(): void;
  resume(): void;
}

/** A runtime that is read from (promise-based reads and writes): the core reads in a loop, and a paused socket is simply not read. */
export interface PullConnection extends RawConnectionBase {
  /** Reads into `buffer`; resolves to the byte count, or null once the peer sent FIN. */
  read(buffer: Uint8Array): Promise<number | null>;
}

/** What an adapter gives the state machine. */
export type RawConnection = PushConnection | PullConnection;

/**
 * The one socket state machine both adapters (and the in-memory runtime) share:
 * the write queue, drain, half-close, and close once both halves have ended.
 *
 * A write after `end()` or after the socket closed (by us, the peer or the
 * runtime) is discarded and returns false; see `Socket.write`.
 */
export class StreamSocket implements Socket {
  private handlers: SocketHandlers | undefined;
  private readonly queue = new WriteQueue();
  /** An asynchronous write is in flight (pull runtimes' pump). */
  private writing = false;
  /** `end()` was called: no more writes; FIN follows the queue. */
  private ending = false;
  private isClosed = false;
  private readEnded = false;
  private writeEnded = false;
  private paused = false;
  private wakeReader: (() => void) | undefined;

  constructor(
    private readonly raw: RawConnection,
    readonly remote: string,
  ) {}

  /** Asks the owner for its handlers (`accept` or `open`) and, on a pull runtime, starts reading. */
  start(open: (socket: Socket) => SocketHandlers): this {
    const handlers = open(this);
    // The owner may have closed the socket at once (refused it): then it hears nothing more.
    if (this.isClosed) return this;
    this.handlers = handlers;
    if ("read" in this.raw) void this.readLoop(this.raw);
    return this;
  }

  get bufferedBytes(): number {
    return this.queue.bytes;
  }

  write(bytes: Uint8Array): boolean {
    if (this.isClosed || this.ending) return false;
    if (this.queue.bytes > 0 || this.writing) {
      this.queue.push(bytes);
      return false;
    }
    const taken = this.raw.write(bytes);
    if (taken === bytes.byteLength) return true;
    if (typeof taken === "number") {
      // The runtime may accept fewer bytes than given under backpressure; the rest waits for `writable`.
      this.queue.push(taken > 0 ? bytes.subarray(taken) : bytes);
    } else {
      this.queue.push(bytes);
      void this.pump(taken);
    }
    return false;
  }

  /** Push runtimes: the kernel takes bytes again (its drain callback). Writes what is queued, then tells the owner. */
  writable(): void {
    while (this.queue.bytes > 0) {
      const head = this.queue.peek();
      const taken = this.raw.write(head) as number;
      if (taken < 0) return;
      this.queue.consume(taken);
      if (taken < head.byteLength) return;
    }
    this.flushed();
  }

  // An asynchronous write may take part of the buffer; loop until the queue is empty.
  private async pump(write: Promise<number>): Promise<void> {
    this.writing = true;
    try {
      for (;;) {
        const taken = await write;
        if (this.isClosed) return;
        this.queue.consume(taken);
        if (this.queue.bytes === 0) break;
        write = this.raw.write(this.queue.peek()) as Promise<number>;
      }
    } catch (error) {
      return this.fail(error);
    } finally {
      this.writing = false;
    }
    this.flushed();
  }

  /** Everything queued was taken: finish a pending end, or tell the owner it may write more. */
  private flushed(): void {
    if (this.ending) this.finishEnd();
    else this.handlers?.drain?.();
  }

  end(): void {
    if (this.isClosed || this.ending) return;
    this.ending = true;
    if (!this.writing && this.queue.bytes === 0) this.finishEnd();
  }

  private finishEnd(): void {
    if (this.writeEnded || this.isClosed) return;
    this.writeEnded = true;
    // Never hand data to the runtime's end(): it may be dropped under backpressure. Everything was written above.
    let shutdown: void | Promise<void>;
    try {
      shutdown = this.raw.shutdownWrite();
    } catch (error) {
      return this.fail(error);
    }
    if (shutdown) shutdown.then(() => this.writeSideEnded(), (error: unknown) => this.fail(error));
    else this.writeSideEnded();
  }

  private writeSideEnded(): void {
    if (this.readEnded) this.close();
  }

  /** The peer sent FIN: no more data will arrive; we close once our half has ended too. */
  peerEnded(): void {
    this.readEnded = true;
    this.handlers?.end?.();
    if (this.writeEnded) this.close();
  }

  /** Push runtimes: bytes from the peer. */
  received(chunk: Uint8Array): void {
    this.handlers?.data(chunk);
  }

  close(): void {
    if (this.isClosed) return;
    this.markClosed();
    this.raw.terminate();
    this.finish(undefined);
  }

  /** The runtime closed the connection (a reset, or the close that follows `terminate`). */
  closed(error?: Error): void {
    this.markClosed();
    this.finish(error);
  }

  /** A read, write or shutdown failed: drop the connection and report why. */
  private fail(error: unknown): void {
    if (this.isClosed) return;
    this.markClosed();
    this.raw.terminate();
    this.finish(this.raw.isCloseNoise?.(error) ? undefined : toError(error));
  }

  private markClosed(): void {
    this.isClosed = true;
    this.queue.clear();
    this.wakeReader?.();
  }

  /** Calls the owner's `close` exactly once. */
  private finish(error: Error | undefined): void {
    const handlers = this.handlers;
    this.handlers = undefined;
    handlers?.close(error);
  }

  private async readLoop(raw: PullConnection): Promise<void> {
    let buffer = new Uint8Array(MIN_READ_BUFFER_BYTES);
    let smallReads = 0;
    try {
      while (!this.isClosed) {
        if (this.paused) {
          await new Promise<void>((resolve) => (this.wakeReader = resolve));
          continue;
        }
        const n = await raw.read(buffer);
        if (this.isClosed) return;
        if (n === null) return this.peerEnded();
        this.handlers?.data(buffer.slice(0, n));
        if (n === buffer.byteLength && n < MAX_READ_BUFFER_BYTES) {
          buffer = new Uint8Array(n * 2);
          smallReads = 0;
        } else if (n >= buffer.byteLength / 4 || buffer.byteLength === MIN_READ_BUFFER_BYTES) {
          smallReads = 0;
        } else if (++smallReads === SHRINK_AFTER_READS) {
          buffer = new Uint8Array(buffer.byteLength / 2);
          smallReads = 0;
        }
      }
    } catch (error) {
      this.fail(error);
    }
  }

  pause(): void {
    this.paused = true;
    if (!("read" in this.raw)) this.raw.pause();
  }

  resume(): void {
    if ("read" in this.raw) {
      if (!this.paused) return;
      this.paused = false;
      const wake = this.wakeReader;
      this.wakeReader = undefined;
      wake?.();
    } else {
      this.paused = false;
      this.raw.resume();
    }
  }

  setNoDelay(noDelay: boolean): void {
    this.raw.setNoDelay(noDelay);
  }

  setKeepAlive(initialDelayMs: number): void {
    this.raw.setKeepAlive(initialDelayMs);
  }
}

/** Anything thrown, as an Error. */
export function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
