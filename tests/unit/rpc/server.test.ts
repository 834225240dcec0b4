// RpcServer on the in-memory runtime: the server's connection handling without loopback TCP.
import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { passTurns, startMemoryServer, turnsUntil } from "../../helpers/memory.ts";
import { probeReached } from "../../helpers/services.ts";

test("a call and its answer make a round trip through the server", async () => {
  const memory = await startMemoryServer();
  try {
    const raw = await memory.raw();
    raw.socket.write(encode([0, 7, "probe.add", [{ a: 2, b: 3 }]]));
    assert.deepEqual((await raw.received(1))[0], [1, 7, null, 5]);
    assert.equal(memory.server.stats.accepted, 1);
    assert.equal(memory.server.connections.size, 1);
  } finally {
    await memory.close();
  }
});

test("a reader that stops reading makes the server stop reading its requests, until it reads again", async () => {
  const size = 16 * 1024;
  const count = 40;
  const memory = await startMemoryServer({ highWaterBytes: 64 * 1024 }, { bufferBytes: 32 * 1024 });
  try {
    const raw = await memory.raw();
    raw.socket.pause();
    const payload = new Uint8Array(size).fill(7);
    for (let i = 0; i < count; i++) raw.socket.write(encode([0, i, "probe.echo", [payload]]));
    await turnsUntil(() => memory.server.stats.pausedReads === 1, "the server to pause reading");
    // The server no longer reads: our requests back up here, and stay.
    await turnsUntil(() => raw.socket.bufferedBytes > 0, "requests to back up");
    const backlog = raw.socket.bufferedBytes;
    await passTurns(5);
    assert.equal(raw.socket.bufferedBytes, backlog, "the server read nothing more");
    assert.equal(raw.messages.length, 0, "nothing read while paused");
    raw.socket.resume();
    const messages = (await raw.received(count)) as [number, number, null, Uint8Array][];
    assert.deepEqual(
      messages.map(([type, msgid, error, bytes]) => [type, msgid, error, bytes.byteLength]),
      Array.from({ length: count }, (_, i) => [1, i, null, size]),
    );
    assert.equal(raw.socket.bufferedBytes, 0);
  } finally {
    await memory.close();
  }
});

test("a client that half-closes cancels its running calls, hears why, and then the final $goaway", async () => {
  const memory = await startMemoryServer();
  try {
    const raw = await memory.raw();
    raw.socket.write(encode([0, 1, "probe.wait", [{ ms: 60_000, tag: "memory-half-close" }]]));
    await probeReached("memory-half-close", "started");
    raw.socket.end();
    await probeReached("memory-half-close", "aborted");
    await raw.closed;
    const [answer, goaway] = raw.messages;
    assert.equal(answer![1], 1);
    assert.equal((answer![2] as { code: string }).code, "CANCELLED");
    assert.deepEqual(goaway, [2, "$goaway", [{ reason: "closing", final: true }]]);
    assert.equal(memory.server.connections.size, 0);
  } finally {
    await memory.close();
  }
});

test("endAll answers the calls in flight first, then half-closes with the final $goaway", async () => {
  const memory = await startMemoryServer();
  try {
    const raw = await memory.raw();
    raw.socket.write(encode([0, 1, "probe.wait", [{ ms: 0, tag: "memory-end-all" }]]));
    await probeReached("memory-end-all", "started");
    memory.server.endAll();
    await raw.ended;
    assert.deepEqual(raw.messages, [
      [1, 1, null, "memory-end-all"],
      [2, "$goaway", [{ reason: "closing", final: true }]],
    ]);
    raw.socket.end();
    await raw.closed;
    await memory.server.whenAllClosed();
  } finally {
    await memory.close();
  }
});

test("a stopped server accepts no new connection and keeps serving the open ones", async () => {
  const memory = await startMemoryServer();
  try {
    const channel = await memory.channel();
    await memory.server.stopAccepting();
    await assert.rejects(memory.channel(), { code: "UNAVAILABLE" });
    assert.equal(await channel.call("probe.add", { a: 1, b: 1 }), 2);
  } finally {
    await memory.close();
  }
});

test("bytes that are not msgpack-rpc close the connection and are counted", async () => {
  const memory = await startMemoryServer();
  try {
    const raw = await memory.raw();
    raw.socket.write(encode("not an array"));
    await raw.closed;
    assert.equal(memory.server.stats.rejected, 1);
    assert.equal(memory.runtime.openConnections, 0);
  } finally {
    await memory.close();
  }
});
