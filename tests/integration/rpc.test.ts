import { after, test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import type { Channel } from "../../src/rpc/channel.ts";
import { createClient, type ServiceClient } from "../../src/rpc/client.ts";
import { ErrorCodes } from "../../src/wire/codes.ts";
import { MessageDecoder } from "../../src/wire/decoder.ts";
import { connectChannel, connectRaw, rejectsWith, runtime, startTestNode, until } from "../helpers/net.ts";
import { probe, probeEvents, probeHandlers, probeReached } from "../helpers/services.ts";

const server = await startTestNode((node) => node.register(probe, probeHandlers));

/** Runs `body` with a fresh connection to the test node and a probe client on it; closes it after. */
async function withChannel(body: (channel: Channel, client: ServiceClient<typeof probe>) => Promise<void>): Promise<void> {
  const channel = await connectChannel(server.port);
  try {
    await body(channel, createClient(probe, channel));
  } finally {
    channel.close();
  }
}
after(() => server.close());

test("many pipelined calls on one connection each get their own answer", async () => {
  await withChannel(async (channel, client) => {
    const results = await Promise.all(Array.from({ length: 2_000 }, (_, i) => client.add({ a: i, b: 1 })));
    assert.deepEqual(results, Array.from({ length: 2_000 }, (_, i) => i + 1));
    assert.equal(channel.inflight, 0);
  });
});

test("calls that finish out of order are matched to their callers", async () => {
  await withChannel(async (_channel, client) => {
    const slow = client.wait({ ms: 60, tag: "order-slow" });
    const fast = client.wait({ ms: 1, tag: "order-fast" });
    assert.equal(await fast, "order-fast");
    assert.equal(probeEvents.get("order-slow"), "started");
    assert.equal(await slow, "order-slow");
  });
});

test("every error code a handler raises reaches the caller with its data", async () => {
  await withChannel(async (_channel, client) => {
    for (const code of ErrorCodes) {
      const error = await rejectsWith(client.raise({ code }));
      assert.equal(error.code, code);
      assert.equal(error.message, `[${code}] raised ${code}`);
      assert.deepEqual(error.data, { code });
      assert.equal(error.processed, code === "SHUTTING_DOWN" || code === "OVERLOADED" ? false : undefined);
    }
  });
});

test("the server's own errors reach the caller: unknown method, bad params, a crashing handler", async () => {
  await withChannel(async (channel) => {
    const missing = await rejectsWith(channel.call("probe.nope", {}));
    assert.equal(missing.code, "METHOD_NOT_FOUND");
    assert.equal(missing.rawMessage, 'Unknown method "probe.nope"');
    const invalid = await rejectsWith(channel.call("probe.add", { a: "x" }));
    assert.equal(invalid.code, "INVALID_PARAMS");
    assert.ok(Array.isArray(invalid.data) && invalid.data.length === 2);
    const crash = await rejectsWith(channel.call("probe.crash", null));
    assert.equal(crash.code, "INTERNAL");
    assert.equal(crash.rawMessage, "unexpected failure");
    assert.ok(server.logs.lines.some((l) => l.msg === "handler threw" && l.method === "probe.crash"));
  });
});

test("a request with a bad shape gets INVALID_REQUEST on its msgid", async () => {
  const raw = await connectRaw(server.port);
  try {
    raw.socket.write(encode([0, 77, 12345, []]));
    const decoder = new MessageDecoder(1 << 20);
    const [reply] = decoder.push(await raw.waitForBytes(10)) as [number, number, { code: string; message: string }, unknown][];
    assert.equal(reply![0], 1);
    assert.equal(reply![1], 77);
    assert.equal(reply![2].code, "INVALID_REQUEST");
    assert.match(reply![2].message, /method is not a non-empty string/);
  } finally {
    raw.socket.close();
  }
});

test("a call past its deadline fails DEADLINE_EXCEEDED and the handler's signal aborts", async () => {
  await withChannel(async (_channel, client) => {
    const started = Date.now();
    const error = await rejectsWith(client.wait({ ms: 10_000, tag: "deadline" }, { timeoutMs: 100 }));
    assert.equal(error.code, "DEADLINE_EXCEEDED");
    assert.ok(Date.now() - started < 2_000);
    await probeReached("deadline", "aborted");
  });
});

test("aborting a call fails it CANCELLED and aborts the handler on the server", async () => {
  await withChannel(async (_channel, client) => {
    const controller = new AbortController();
    const call = client.wait({ ms: 10_000, tag: "abort" }, { signal: controller.signal });
    await probeReached("abort", "started");
    controller.abort();
    assert.equal((await rejectsWith(call)).code, "CANCELLED");
    await probeReached("abort", "aborted");
    // The connection stays usable.
    assert.equal(await client.add({ a: 1, b: 2 }), 3);
  });
});

test("a caller that closes its connection mid-call aborts its handler", async () => {
  const channel = await connectChannel(server.port);
  const client = createClient(probe, channel);
  const call = client.wait({ ms: 10_000, tag: "disconnect" });
  await probeReached("disconnect", "started");
  channel.close();
  const error = await rejectsWith(call);
  assert.equal(error.code, "CANCELLED");
  await probeReached("disconnect", "aborted");
  await channel.whenClosed();
});

test("a call to a port nobody listens on fails UNAVAILABLE, processed false", async () => {
  const listener = await runtime.listen({ host: "127.0.0.1", port: 0, accept: () => ({ data() {}, close() {} }) });
  const port = listener.port;
  await listener.stop();
  const error = await rejectsWith(connectChannel(port));
  assert.equal(error.code, "UNAVAILABLE");
  assert.equal(error.processed, false);
});

test("$ping and $info answer without a service", async () => {
  await withChannel(async (channel) => {
    const ping = (await channel.call("$ping", undefined)) as { node: string; time: number };
    assert.equal(ping.node, "test-node");
    const info = (await channel.call("$info", undefined)) as { runtime: string; services: Record<string, { name: string }[]> };
    assert.equal(info.runtime, runtime.name);
    assert.ok(info.services.probe!.some((m) => m.name === "probe.echo"));
  });
});

test("large replies to a client that reads slowly arrive whole", async () => {
  const size = 3 * 1024 * 1024;
  const count = 6;
  const raw = await connectRaw(server.port);
  try {
    const pausedBefore = server.node.stats.pausedReads;
    raw.socket.pause();
    for (let i = 0; i < count; i++) raw.socket.write(encode([0, i, "probe.bytes", [{ size }]]));
    let expected = 0;
    for (let i = 0; i < count; i++) expected += encode([1, i, null, new Uint8Array(size)]).byteLength;
    // Read nothing until the server has felt the backpressure and paused reading this connection.
    await until(() => server.node.stats.pausedReads > pausedBefore, "the server pauses reading from the slow client");
    // Then read slowly: a burst of at most 1 MiB, pause, the next burst, until every reply is here.
    let have = 0;
    while (have < expected) {
      raw.socket.resume();
      have = (await raw.waitForBytes(Math.min(expected, have + 1024 * 1024))).byteLength;
      raw.socket.pause();
    }
    raw.socket.resume();
    const replies = await raw.waitForBytes(expected);
    const messages = new MessageDecoder(size * 2).push(replies) as [number, number, null, Uint8Array][];
    assert.equal(messages.length, count);
    for (const [type, msgid, error, bytes] of messages) {
      assert.equal(type, 1);
      assert.equal(error, null);
      assert.equal(bytes.byteLength, size, `reply ${msgid}`);
      assert.equal(bytes[size - 1], (size - 1) & 0xff);
    }
    assert.ok(server.node.stats.pausedReads > 0, "the server paused reading while the client was slow");
  } finally {
    raw.socket.close();
  }
});

test("a client that closes its side (FIN) cancels its running calls at once, and hears why", async () => {
  const raw = await connectRaw(server.port);
  raw.socket.write(encode([0, 1, "probe.wait", [{ ms: 60_000, tag: "half-close" }]]));
  await probeReached("half-close", "started");
  raw.socket.end();
  // The handler sees its signal now, not in a minute: a caller that hung up holds no slot.
  await probeReached("half-close", "aborted");
  await raw.closed;
  const messages = new MessageDecoder(1 << 20).push(raw.received()) as unknown[][];
  assert.equal(messages[0]![1], 1);
  assert.equal((messages[0]![2] as { code: string }).code, "CANCELLED");
  // The server's last message says it is done with the connection.
  assert.deepEqual(messages[1], [2, "$goaway", [{ reason: "closing", final: true }]]);
});

test("a notification to a method runs nothing: it is dropped, counted, and logged once per connection", async () => {
  const { node, port, logs, close } = await startTestNode((n) => n.register(probe, probeHandlers), { httpPort: 0 });
  try {
    const raw = await connectRaw(port);
    raw.socket.write(encode([2, "probe.echo", ["one"]]));
    raw.socket.write(encode([2, "probe.echo", ["two"]]));
    raw.socket.write(encode([0, 1, "$ping", []]));
    await raw.waitForBytes(1);
    raw.socket.close();
    const metrics = await (await fetch(`http://127.0.0.1:${node.httpAddress!.port}/metrics`)).text();
    assert.match(metrics, /^ebb_notifications_dropped_total 2$/m);
    assert.equal(logs.lines.filter((line) => String(line.msg).startsWith("dropped a notification")).length, 1);
    assert.equal(node.stats.handled, 1, "only the scrape entered a handler");
  } finally {
    await close();
  }
});
