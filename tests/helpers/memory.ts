// An RPC server on the in-memory runtime, and raw clients for it: the fast tier of the RPC tests.
import { silentLogger } from "../../src/log.ts";
import { Channel, type ChannelOptions, DEFAULT_MAX_MESSAGE_BYTES } from "../../src/rpc/channel.ts";
import { Dispatcher } from "../../src/rpc/dispatch.ts";
import { Router } from "../../src/rpc/router.ts";
import { RpcServer, type RpcServerOptions } from "../../src/rpc/server.ts";
import { createMemoryRuntime, type MemoryRuntime, type MemoryRuntimeOptions } from "../../src/runtime/memory.ts";
import type { Socket } from "../../src/runtime/types.ts";
import { MessageDecoder } from "../../src/wire/decoder.ts";
import { probe, probeHandlers } from "./services.ts";

/** An `RpcServer` serving the probe service on an in-memory runtime. */
export interface MemoryServer {
  runtime: MemoryRuntime;
  server: RpcServer;
  port: number;
  /** An ebb channel to the server. */
  channel(options?: Partial<ChannelOptions>): Promise<Channel>;
  /** A raw connection that decodes what the server sends. */
  raw(): Promise<RawClient>;
  /** Closes every connection and stops listening. */
  close(): Promise<void>;
}

/** Starts an `RpcServer` with the probe service on a fresh in-memory runtime. */
export async function startMemoryServer(
  options: Partial<Omit<RpcServerOptions, "dispatcher">> = {},
  runtimeOptions: MemoryRuntimeOptions = {},
): Promise<MemoryServer> {
  const runtime = createMemoryRuntime(runtimeOptions);
  const dispatcher = new Dispatcher({ router: new Router().register(probe, probeHandlers), log: silentLogger });
  const server = new RpcServer(runtime, { dispatcher, log: silentLogger, maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES, ...options });
  const { port } = await server.listen("127.0.0.1", 0);
  return {
    runtime,
    server,
    port,
    channel: (channelOptions = {}) => Channel.connect(runtime, { host: "127.0.0.1", port, ...channelOptions }),
    raw: () => connectRawClient(runtime, port),
    async close() {
      server.closeAll();
      await server.stopAccepting();
    },
  };
}

/** A raw msgpack-rpc connection: sends bytes, and collects the decoded messages and the events that arrive. */
export interface RawClient {
  socket: Socket;
  /** Every message received so far. */
  readonly messages: unknown[][];
  /** Resolves once `count` messages have arrived. */
  received(count: number): Promise<unknown[][]>;
  /** Resolves when the server half-closed (FIN). */
  ended: Promise<void>;
  /** Resolves when the connection closed. */
  closed: Promise<void>;
}

async function connectRawClient(runtime: MemoryRuntime, port: number): Promise<RawClient> {
  const decoder = new MessageDecoder(64 * 1024 * 1024);
  const messages: unknown[][] = [];
  let waiters: { count: number; resolve(messages: unknown[][]): void }[] = [];
  let ended!: () => void;
  let closed!: () => void;
  const client = {
    messages,
    ended: new Promise<void>((resolve) => (ended = resolve)),
    closed: new Promise<void>((resolve) => (closed = resolve)),
    received: (count: number) =>
      messages.length >= count ? Promise.resolve(messages) : new Promise<unknown[][]>((resolve) => waiters.push({ count, resolve })),
  };
  const socket = await runtime.connect({
    host: "127.0.0.1",
    port,
    open: () => ({
      data(chunk) {
        messages.push(...(decoder.push(chunk) as unknown[][]));
        const ready = waiters.filter((w) => w.count <= messages.length);
        waiters = waiters.filter((w) => w.count > messages.length);
        for (const w of ready) w.resolve(messages);
      },
      end: () => ended(),
      close: () => closed(),
    }),
  });
  return { ...client, socket };
}

/**
 * Resolves once `condition` holds, checked after each turn of the event loop;
 * fails after `turns` turns. The in-memory runtime moves bytes in microtasks,
 * and the server yields a busy connection's turn with a zero timer, so a few
 * turns settle any exchange: no clock time is awaited.
 */
export async function turnsUntil(condition: () => boolean, what: string, turns = 1_000): Promise<void> {
  for (let turn = 0; !condition(); turn++) {
    if (turn === turns) throw new Error(`Still waiting for ${what} after ${turns} turns`);
    await passTurns(1);
  }
}

/** Lets `count` turns of the event loop pass: zero timers, no clock time awaited. */
export async function passTurns(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}
