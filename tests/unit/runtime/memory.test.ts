// The in-memory runtime (src/runtime/memory.ts): the Runtime seam without sockets, for the fast test tier.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createMemoryRuntime, MemoryExit, type MemoryRuntime } from "../../../src/runtime/memory.ts";
import type { Socket, SocketHandlers } from "../../../src/runtime/types.ts";

/** One side of a connection as a test sees it: what arrived, and promises for its events. */
interface Side {
  socket: Socket;
  received: number[];
  events: string[];
  /** Resolves at the next event named `name` (or at once if it already happened). */
  next(name: "data" | "drain" | "end" | "close"): Promise<void>;
}

function side(): { handlers: SocketHandlers; bind(socket: Socket): Side } {
  const received: number[] = [];
  const events: string[] = [];
  const waiters = new Map<string, (() => void)[]>();
  const fire = (name: string) => {
    events.push(name);
    for (const resolve of waiters.get(name)?.splice(0) ?? []) resolve();
  };
  const handlers: SocketHandlers = {
    data: (chunk) => {
      received.push(...chunk);
      fire("data");
    },
    drain: () => fire("drain"),
    end: () => fire("end"),
    close: (error) => fire(error ? `close ${error.message}` : "close"),
  };
  return {
    handlers,
    bind: (socket) => ({
      socket,
      received,
      events,
      next: (name) =>
        name !== "data" && events.includes(name)
          ? Promise.resolve()
          : new Promise((resolve) => waiters.set(name, [...(waiters.get(name) ?? []), resolve])),
    }),
  };
}

/** A listener on port 0 and one connection to it: the accepted side and the connecting side. */
async function pair(runtime: MemoryRuntime): Promise<{ server: Side; client: Side; port: number }> {
  let accepted!: Side;
  const serverSide = side();
  const listener = await runtime.listen({
    host: "127.0.0.1",
    port: 0,
    accept: (socket) => {
      accepted = serverSide.bind(socket);
      return serverSide.handlers;
    },
  });
  const clientSide = side();
  const socket = await runtime.connect({ host: "127.0.0.1", port: listener.port, open: () => clientSide.handlers });
  return { server: accepted, client: clientSide.bind(socket), port: listener.port };
}

const bytes = (length: number, from = 0) => Uint8Array.from({ length }, (_, i) => (from + i) & 0xff);

test("a connection carries bytes both ways, delivered after the write returns", async () => {
  const runtime = createMemoryRuntime();
  const { server, client } = await pair(runtime);
  assert.equal(client.socket.write(bytes(3)), true);
  assert.deepEqual(server.received, [], "not delivered synchronously");
  await server.next("data");
  assert.deepEqual(server.received, [0, 1, 2]);
  server.socket.write(Uint8Array.of(9));
  await client.next("data");
  assert.deepEqual(client.received, [9]);
  assert.match(server.socket.remote, /^127\.0\.0\.1:\d+$/);
  assert.equal(runtime.openConnections, 1);
});

test("port 0 picks a free port, and a port in use is refused", async () => {
  const runtime = createMemoryRuntime();
  const options = { host: "127.0.0.1", accept: () => ({ data() {}, close() {} }) };
  const first = await runtime.listen({ ...options, port: 0 });
  const second = await runtime.listen({ ...options, port: 0 });
  assert.notEqual(first.port, second.port);
  await assert.rejects(runtime.listen({ ...options, port: first.port }), { code: "EADDRINUSE" });
});

test("connecting where nothing listens rejects like ECONNREFUSED", async () => {
  const runtime = createMemoryRuntime();
  await assert.rejects(runtime.connect({ host: "127.0.0.1", port: 1, open: () => ({ data() {}, close() {} }) }), { code: "ECONNREFUSED" });
});

test("a stopped listener refuses new connections and leaves open ones open", async () => {
  const runtime = createMemoryRuntime();
  let accepted = 0;
  const listener = await runtime.listen({ host: "0.0.0.0", port: 0, accept: () => (accepted++, { data() {}, close() {} }) });
  const clientSide = side();
  const client = clientSide.bind(await runtime.connect({ host: "localhost", port: listener.port, open: () => clientSide.handlers }));
  await listener.stop();
  await listener.stop();
  await assert.rejects(runtime.connect({ host: "127.0.0.1", port: listener.port, open: () => ({ data() {}, close() {} }) }), { code: "ECONNREFUSED" });
  assert.equal(accepted, 1);
  assert.equal(client.socket.write(Uint8Array.of(1)), true, "the open connection still takes writes");
  assert.equal(runtime.openConnections, 1);
});

test("a full buffer takes part of a write, queues the rest, and drains once the paused reader resumes", async () => {
  const runtime = createMemoryRuntime({ bufferBytes: 16 });
  const { server, client } = await pair(runtime);
  server.socket.pause();
  assert.equal(client.socket.write(bytes(10)), true);
  assert.equal(client.socket.write(bytes(30, 10)), false, "only 6 more bytes fit");
  assert.equal(client.socket.bufferedBytes, 24);
  await Promise.resolve();
  await Promise.resolve();
  assert.deepEqual(server.received, [], "a paused reader receives nothing");
  assert.deepEqual(client.events, [], "and its writer hears no drain");
  server.socket.resume();
  await client.next("drain");
  assert.equal(client.socket.bufferedBytes, 0);
  while (server.received.length < 40) await server.next("data");
  assert.deepEqual(server.received, [...bytes(40)]);
});

test("half-close: the peer hears end after the data, and may still write back", async () => {
  const runtime = createMemoryRuntime();
  const { server, client } = await pair(runtime);
  client.socket.write(bytes(4));
  client.socket.end();
  assert.equal(client.socket.write(bytes(1)), false, "a write after end() is discarded");
  await server.next("end");
  assert.deepEqual(server.received, [0, 1, 2, 3]);
  assert.equal(server.socket.write(Uint8Array.of(7)), true);
  await client.next("data");
  assert.deepEqual(client.received, [7]);
  server.socket.end();
  await Promise.all([server.next("close"), client.next("close")]);
  assert.deepEqual(client.events, ["data", "end", "close"]);
  assert.deepEqual(server.events, ["data", "end", "close"]);
  assert.equal(runtime.openConnections, 0);
});

test("close: the owner hears close at once, the peer a turn later, and unread bytes are lost", async () => {
  const runtime = createMemoryRuntime();
  const { server, client } = await pair(runtime);
  server.socket.pause();
  client.socket.write(bytes(4));
  client.socket.close();
  assert.deepEqual(client.events, ["close"]);
  assert.equal(client.socket.write(bytes(1)), false, "a write after close() is discarded");
  await server.next("close");
  assert.deepEqual(server.received, []);
  assert.equal(server.socket.write(bytes(1)), false);
  assert.equal(runtime.openConnections, 0);
});

test("serve answers fetch by host and port, and stop waits for requests in flight", async () => {
  const runtime = createMemoryRuntime();
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const server = await runtime.serve({
    host: "127.0.0.1",
    port: 0,
    idleTimeoutMs: 0,
    acceptRetryMs: 100,
    fetch: async (request) => {
      if (new URL(request.url).pathname === "/slow") await held;
      return new Response(`${request.method} ${new URL(request.url).pathname}`);
    },
  });
  const base = `http://127.0.0.1:${server.port}`;
  assert.equal(await (await runtime.fetch(`${base}/healthz`)).text(), "GET /healthz");
  const slow = runtime.fetch(`${base}/slow`);
  let stopped = false;
  const stopping = server.stop().then(() => (stopped = true));
  await assert.rejects(runtime.fetch(`${base}/healthz`), { code: "ECONNREFUSED" });
  assert.equal(stopped, false);
  release();
  assert.equal(await (await slow).text(), "GET /slow");
  await stopping;
});

test("signals, exit, env, args, terminals and output are recorded fakes", () => {
  const runtime = createMemoryRuntime({ env: { EBB_PORT: "7000" }, args: ["serve"], terminals: ["stderr"] });
  const heard: string[] = [];
  const off = runtime.onSignal("SIGTERM", () => heard.push("term"));
  runtime.signal("SIGTERM");
  off();
  runtime.signal("SIGTERM");
  assert.deepEqual(heard, ["term"]);
  assert.throws(() => runtime.exit(3), (error) => error instanceof MemoryExit && error.code === 3);
  assert.deepEqual(runtime.exitCodes, [3]);
  assert.deepEqual(runtime.env(), { EBB_PORT: "7000" });
  assert.deepEqual(runtime.args(), ["serve"]);
  assert.equal(runtime.isTerminal("stderr"), true);
  assert.equal(runtime.isTerminal("stdout"), false);
  runtime.write("stdout", "a");
  runtime.write("stdout", "b\n");
  assert.equal(runtime.output("stdout"), "ab\n");
  assert.equal(runtime.output("stderr"), "");
});
