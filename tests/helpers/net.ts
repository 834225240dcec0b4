import assert from "node:assert/strict";
import { createNode, type EbbNode, type ShutdownSummary } from "../../src/node.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { type Config, configWith } from "../../src/config/load.ts";
import { Channel, type ChannelOptions } from "../../src/rpc/channel.ts";
import { detectRuntime } from "../../src/runtime/detect.ts";
import type { Runtime, Socket } from "../../src/runtime/types.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { MessageDecoder } from "../../src/wire/decoder.ts";

/** The runtime the test runs on. */
export const runtime: Runtime = await detectRuntime();

/** Log lines a test node wrote, for assertions. */
export class LogCapture {
  readonly lines: Record<string, unknown>[] = [];
  private waiters: { match: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];

  readonly logger: Logger = createLogger({
    node: "test",
    level: "debug",
    write: (text) => {
      const line = JSON.parse(text) as Record<string, unknown>;
      this.lines.push(line);
      this.waiters = this.waiters.filter((w) => (w.match(line) ? (w.resolve(line), false) : true));
    },
  });

  /** Resolves with the first line (already written or to come) that matches. */
  next(match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }
}

/** A ready node listening on a free loopback port (HTTP off unless overridden), for in-process tests. */
export async function startTestNode(
  setup: (node: EbbNode) => void,
  overrides: Partial<Config> = {},
): Promise<{ node: EbbNode; port: number; logs: LogCapture; close(): Promise<ShutdownSummary> }> {
  const logs = new LogCapture();
  const node = createNode({
    config: configWith({ nodeId: "test-node", host: "127.0.0.1", rpcPort: 0, httpPort: null, ...overrides }),
    log: logs.logger,
    runtime,
  });
  setup(node);
  await node.start();
  return { node, port: node.rpcAddress.port, logs, close: () => node.shutdown() };
}

/** Connects an ebb channel to a loopback port. */
export function connectChannel(port: number, options: Partial<ChannelOptions> = {}): Promise<Channel> {
  return Channel.connect(runtime, { host: "127.0.0.1", port, ...options });
}

/** A raw TCP connection that records what arrives, for feeding a server bad bytes. */
export interface RawConnection {
  socket: Socket;
  /** Every byte received so far. */
  received(): Uint8Array;
  /** Resolves once at least `bytes` bytes have arrived. */
  waitForBytes(bytes: number): Promise<Uint8Array>;
  /** Resolves when the peer has closed its side (FIN), or the connection is closed. */
  closed: Promise<void>;
}

/** Opens a raw connection to a loopback port. */
export async function connectRaw(port: number): Promise<RawConnection> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  let waiters: { bytes: number; resolve: (all: Uint8Array) => void }[] = [];
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const received = () => {
    const all = new Uint8Array(total);
    let offset = 0;
    for (const chunk of chunks) {
      all.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return all;
  };
  const socket = await runtime.connect({
    host: "127.0.0.1",
    port,
    open: () => ({
      data(chunk) {
        chunks.push(chunk);
        total += chunk.byteLength;
        const ready = waiters.filter((w) => w.bytes <= total);
        waiters = waiters.filter((w) => w.bytes > total);
        for (const w of ready) w.resolve(received());
      },
      end: () => resolveClosed(),
      close: () => resolveClosed(),
    }),
  });
  return {
    socket,
    received,
    waitForBytes(bytes) {
      if (total >= bytes) return Promise.resolve(received());
      return new Promise((resolve) => waiters.push({ bytes, resolve }));
    },
    closed,
  };
}

/** The RpcError a promise rejects with (failing the test if it resolves), checked against `code` when given. */
export async function rejectsWith(promise: Promise<unknown>, code?: string): Promise<RpcError> {
  const error = await promise.then(
    () => assert.fail(`expected a rejection${code ? ` with ${code}` : ""}`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RpcError, String(error));
  if (code !== undefined) assert.equal(error.code, code, error.message);
  return error;
}

/**
 * Resolves once `condition()` holds, checking after each turn of the event loop
 * (for state with no event of its own, such as a counter); fails after `limitMs`.
 */
export async function until(condition: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > limitMs) assert.fail(`timed out after ${limitMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Every msgpack-rpc message a raw connection has received so far. */
export function messagesOf(raw: RawConnection): unknown[][] {
  return new MessageDecoder(64 << 20).push(raw.received()) as unknown[][];
}

/** Resolves once `node` knows `id` as a member. */
export function memberJoined(node: EbbNode, id: string): Promise<void> {
  if (node.members().some((m) => m.id === id)) return Promise.resolve();
  return new Promise((resolve) => {
    const off = node.onMemberEvent((event) => {
      if (event.member.id === id) {
        off();
        resolve();
      }
    });
  });
}

/** A TCP server that accepts and reads everything and answers nothing: to a client, a stalled server or a link gone half-open. */
export async function startSilentServer(): Promise<{ port: number; readonly accepted: number; readonly closedByPeer: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  let closedByPeer = 0;
  const listener = await runtime.listen({
    host: "127.0.0.1",
    port: 0,
    accept: (socket) => {
      accepted++;
      sockets.add(socket);
      return { data: () => {}, end: () => socket.end(), close: () => (closedByPeer++, sockets.delete(socket)) };
    },
  });
  return {
    port: listener.port,
    get accepted() {
      return accepted;
    },
    get closedByPeer() {
      return closedByPeer;
    },
    async stop() {
      for (const socket of sockets) socket.close();
      await listener.stop();
    },
  };
}
