// The one socket state machine both adapters share (src/runtime/socket.ts), driven through fake runtimes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { type PullConnection, type PushConnection, StreamSocket } from "../../../src/runtime/socket.ts";
import type { SocketHandlers } from "../../../src/runtime/types.ts";

const bytes = (...values: number[]) => new Uint8Array(values);

/** A push runtime: writes take at most `room` bytes now; the test calls `writable()` as the runtime's drain callback would. */
class FakePush implements PushConnection {
  room = Infinity;
  readonly taken: number[] = [];
  readonly calls: string[] = [];
  write(chunk: Uint8Array): number {
    const n = Math.min(this.room, chunk.byteLength);
    this.room -= n;
    this.taken.push(...chunk.subarray(0, n));
    return n;
  }
  shutdownWrite(): void {
    this.calls.push("shutdown");
  }
  terminate(): void {
    this.calls.push("terminate");
  }
  pause(): void {
    this.calls.push("pause");
  }
  resume(): void {
    this.calls.push("resume");
  }
  setNoDelay(noDelay: boolean): void {
    this.calls.push(`noDelay ${noDelay}`);
  }
  setKeepAlive(ms: number): void {
    this.calls.push(`keepAlive ${ms}`);
  }
}

/** What the owner heard, in order. */
function recorder(): { events: string[]; data: number[]; closed: Promise<Error | undefined>; handlers: SocketHandlers } {
  const events: string[] = [];
  const data: number[] = [];
  let resolve!: (error: Error | undefined) => void;
  const closed = new Promise<Error | undefined>((r) => (resolve = r));
  return {
    events,
    data,
    closed,
    handlers: {
      data: (chunk) => void data.push(...chunk),
      drain: () => void events.push("drain"),
      end: () => void events.push("end"),
      close: (error) => {
        events.push(error ? `close ${error.message}` : "close");
        resolve(error);
      },
    },
  };
}

function pushSocket() {
  const raw = new FakePush();
  const owner = recorder();
  const socket = new StreamSocket(raw, "10.0.0.1:4000").start(() => owner.handlers);
  return { raw, owner, socket };
}

test("a write the runtime takes whole returns true and queues nothing", () => {
  const { raw, socket } = pushSocket();
  assert.equal(socket.write(bytes(1, 2, 3)), true);
  assert.equal(socket.bufferedBytes, 0);
  assert.deepEqual(raw.taken, [1, 2, 3]);
});

test("a partial take queues the rest in order, and drain follows once the runtime took it all", () => {
  const { raw, owner, socket } = pushSocket();
  raw.room = 2;
  assert.equal(socket.write(bytes(1, 2, 3)), false);
  assert.equal(socket.write(bytes(4, 5)), false, "queued behind the rest, not handed to the runtime");
  assert.equal(socket.bufferedBytes, 3);
  raw.room = 1;
  socket.writable();
  assert.deepEqual(owner.events, [], "no drain while bytes are still queued");
  raw.room = Infinity;
  socket.writable();
  assert.deepEqual(raw.taken, [1, 2, 3, 4, 5]);
  assert.equal(socket.bufferedBytes, 0);
  assert.deepEqual(owner.events, ["drain"]);
});

test("end() sends FIN only after the queue is flushed, and a write after end() is discarded", () => {
  const { raw, owner, socket } = pushSocket();
  raw.room = 0;
  socket.write(bytes(1, 2));
  socket.end();
  assert.deepEqual(raw.calls, [], "FIN waits for the queued bytes");
  assert.equal(socket.write(bytes(9)), false);
  assert.equal(socket.bufferedBytes, 2, "the late write queued nothing");
  raw.room = Infinity;
  socket.writable();
  assert.deepEqual(raw.taken, [1, 2]);
  assert.deepEqual(raw.calls, ["shutdown"]);
  assert.deepEqual(owner.events, [], "no drain after end()");
});

test("the socket closes once both halves have ended, in either order", () => {
  const first = pushSocket();
  first.socket.end();
  first.socket.peerEnded();
  assert.deepEqual(first.raw.calls, ["shutdown", "terminate"]);
  assert.deepEqual(first.owner.events, ["end", "close"]);

  const second = pushSocket();
  second.socket.peerEnded();
  assert.deepEqual(second.owner.events, ["end"], "half-closed by the peer: still open, we may write");
  assert.equal(second.socket.write(bytes(7)), true);
  second.socket.end();
  assert.deepEqual(second.raw.calls, ["shutdown", "terminate"]);
  assert.deepEqual(second.owner.events, ["end", "close"]);
});

test("close() drops the queue, tells the owner once before returning, and later writes are discarded", () => {
  const { raw, owner, socket } = pushSocket();
  raw.room = 0;
  socket.write(bytes(1, 2, 3));
  socket.close();
  assert.deepEqual(owner.events, ["close"]);
  assert.equal(socket.bufferedBytes, 0);
  assert.equal(socket.write(bytes(4)), false);
  socket.close();
  socket.closed(new Error("late runtime close"));
  socket.end();
  assert.deepEqual(owner.events, ["close"], "exactly once");
  assert.deepEqual(raw.calls, ["terminate"]);
});

test("a close by the runtime reaches the owner with its error, and writes after it are discarded", () => {
  const { raw, owner, socket } = pushSocket();
  socket.closed(new Error("ECONNRESET"));
  assert.deepEqual(owner.events, ["close ECONNRESET"]);
  assert.equal(socket.write(bytes(1)), false);
  assert.deepEqual(raw.taken, []);
});

test("an owner that closes the socket from accept hears nothing more", () => {
  const raw = new FakePush();
  const owner = recorder();
  const socket = new StreamSocket(raw, "10.0.0.1:4000").start((s) => {
    s.close();
    return owner.handlers;
  });
  socket.received(bytes(1));
  socket.closed();
  assert.deepEqual(owner.events, []);
  assert.deepEqual(owner.data, []);
});

test("pause, resume and tuning go to a push runtime as they are", () => {
  const { raw, socket } = pushSocket();
  socket.pause();
  socket.resume();
  socket.setNoDelay(true);
  socket.setKeepAlive(30_000);
  assert.deepEqual(raw.calls, ["pause", "resume", "noDelay true", "keepAlive 30000"]);
  assert.equal(socket.remote, "10.0.0.1:4000");
});

/** A pull runtime: reads and writes are promises the test settles one by one. */
class FakePull implements PullConnection {
  readonly reads: { buffer: Uint8Array; resolve(n: number | null): void; reject(error: Error): void }[] = [];
  readonly writes: { chunk: Uint8Array; resolve(n: number): void; reject(error: Error): void }[] = [];
  readonly calls: string[] = [];
  private readWaiters: (() => void)[] = [];
  private writeWaiters: (() => void)[] = [];
  read(buffer: Uint8Array): Promise<number | null> {
    return new Promise((resolve, reject) => {
      this.reads.push({ buffer, resolve, reject });
      for (const wake of this.readWaiters.splice(0)) wake();
    });
  }
  write(chunk: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      this.writes.push({ chunk: chunk.slice(), resolve, reject });
      for (const wake of this.writeWaiters.splice(0)) wake();
    });
  }
  async shutdownWrite(): Promise<void> {
    this.calls.push("shutdown");
  }
  terminate(): void {
    this.calls.push("terminate");
  }
  setNoDelay(): void {}
  setKeepAlive(): void {}
  isCloseNoise(error: unknown): boolean {
    return error instanceof Error && error.message === "closed";
  }
  /** The next pending read, once the socket asked for one. */
  async nextRead() {
    while (this.reads.length === 0) await new Promise<void>((resolve) => this.readWaiters.push(resolve));
    return this.reads.shift()!;
  }
  async nextWrite() {
    while (this.writes.length === 0) await new Promise<void>((resolve) => this.writeWaiters.push(resolve));
    return this.writes.shift()!;
  }
}

function pullSocket() {
  const raw = new FakePull();
  const owner = recorder();
  const socket = new StreamSocket(raw, "10.0.0.2:5000").start(() => owner.handlers);
  return { raw, owner, socket };
}

test("a pull runtime's asynchronous writes are pumped until the queue is empty, partial takes included, then drain", async () => {
  const { raw, owner, socket } = pullSocket();
  assert.equal(socket.write(bytes(1, 2, 3)), false, "an asynchronous write is never taken at once");
  socket.write(bytes(4));
  const first = await raw.nextWrite();
  assert.deepEqual([...first.chunk], [1, 2, 3]);
  first.resolve(2);
  const second = await raw.nextWrite();
  assert.deepEqual([...second.chunk], [3, 4], "the rest of the first chunk, merged with the next");
  assert.equal(socket.bufferedBytes, 2);
  second.resolve(2);
  await new Promise<void>((resolve) => (owner.handlers.drain = resolve));
  assert.equal(socket.bufferedBytes, 0);
});

test("a pull runtime is read in a loop that a pause stops and a resume restarts, and FIN ends it", async () => {
  const { raw, owner, socket } = pullSocket();
  const read = await raw.nextRead();
  read.buffer.set([5, 6]);
  socket.pause();
  read.resolve(2);
  const resumed = raw.nextRead();
  await Promise.resolve();
  await Promise.resolve();
  assert.deepEqual(owner.data, [5, 6]);
  assert.equal(raw.reads.length, 0, "paused: no read is asked for");
  socket.resume();
  (await resumed).resolve(null);
  socket.end();
  assert.deepEqual(await owner.closed, undefined);
  assert.deepEqual(owner.events, ["end", "close"]);
  assert.deepEqual(raw.calls, ["shutdown", "terminate"]);
});

test("a failed write closes the socket with its error; a close-noise error closes it without one", async () => {
  const failing = pullSocket();
  failing.socket.write(bytes(1));
  (await failing.raw.nextWrite()).reject(new Error("broken pipe"));
  assert.equal((await failing.owner.closed)?.message, "broken pipe");
  assert.deepEqual(failing.raw.calls, ["terminate"]);

  const noisy = pullSocket();
  (await noisy.raw.nextRead()).reject(new Error("closed"));
  assert.equal(await noisy.owner.closed, undefined);
});

test("a close while an asynchronous write is in flight drops the rest, and the write's late result changes nothing", async () => {
  const { raw, owner, socket } = pullSocket();
  socket.write(bytes(1, 2, 3));
  socket.write(bytes(4));
  const write = await raw.nextWrite();
  socket.close();
  write.resolve(1);
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(raw.writes.length, 0, "nothing more is written");
  assert.equal(socket.bufferedBytes, 0);
  assert.deepEqual(owner.events, ["close"]);
});
