// Channel on the in-memory runtime: calls, $goaway, connection loss and close, without loopback TCP.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Channel } from "../../../src/rpc/channel.ts";
import { createMemoryRuntime } from "../../../src/runtime/memory.ts";
import { startMemoryServer } from "../../helpers/memory.ts";
import { rejectsWith } from "../../helpers/net.ts";
import { probeReached } from "../../helpers/services.ts";

test("a call makes a round trip and the channel is idle after it", async () => {
  const memory = await startMemoryServer();
  try {
    const channel = await memory.channel();
    assert.equal(await channel.call("probe.add", { a: 20, b: 22 }), 42);
    assert.equal(channel.inflight, 0);
    assert.equal(channel.address, `127.0.0.1:${memory.port}`);
  } finally {
    await memory.close();
  }
});

test("connecting where nothing listens fails UNAVAILABLE, processed false", async () => {
  const error = await rejectsWith(Channel.connect(createMemoryRuntime(), { host: "127.0.0.1", port: 9 }), "UNAVAILABLE");
  assert.equal(error.processed, false);
  assert.match(error.rawMessage, /^Cannot connect to 127\.0\.0\.1:9: /);
});

test("$goaway reaches the channel: calls in flight are still answered, new ones are not sent", async () => {
  const memory = await startMemoryServer();
  try {
    let notified!: () => void;
    const heard = new Promise<void>((resolve) => (notified = resolve));
    const channel = await memory.channel({ onNotification: (method) => method === "$goaway" && notified() });
    const inflight = channel.call("probe.wait", { ms: 0, tag: "memory-goaway" });
    await probeReached("memory-goaway", "started");
    memory.server.broadcastGoaway({ reason: "draining" });
    await heard;
    assert.equal(channel.goaway, "draining");
    assert.equal(await inflight, "memory-goaway");
    const refused = await rejectsWith(channel.call("probe.add", { a: 1, b: 1 }), "SHUTTING_DOWN");
    assert.deepEqual(refused.data, { reason: "draining" });
  } finally {
    await memory.close();
  }
});

test("a final $goaway fails the calls the server never read UNAVAILABLE, processed false, and the channel closes", async () => {
  const memory = await startMemoryServer();
  try {
    const channel = await memory.channel();
    memory.server.endAll();
    // Sent before the server's final $goaway arrives: the server has stopped reading and never sees it.
    const unread = rejectsWith(channel.call("probe.add", { a: 1, b: 2 }), "UNAVAILABLE");
    assert.equal((await unread).processed, false);
    await channel.whenClosed();
    assert.equal(channel.goaway, "closing");
  } finally {
    await memory.close();
  }
});

test("a lost connection fails the calls in flight UNAVAILABLE with the outcome unknown", async () => {
  const memory = await startMemoryServer();
  try {
    const channel = await memory.channel();
    const inflight = rejectsWith(channel.call("probe.wait", { ms: 60_000, tag: "memory-lost" }), "UNAVAILABLE");
    await probeReached("memory-lost", "started");
    memory.server.closeAll();
    const error = await inflight;
    assert.equal(error.processed, undefined);
    assert.match(error.rawMessage, /lost with the call in flight; outcome unknown/);
    await channel.whenClosed();
    assert.equal(channel.closed, true);
    await rejectsWith(channel.call("probe.add", { a: 1, b: 1 }), "UNAVAILABLE");
  } finally {
    await memory.close();
  }
});

test("close() fails calls in flight CANCELLED, stops their handlers, and the server closes its side", async () => {
  const memory = await startMemoryServer();
  try {
    const channel = await memory.channel();
    const inflight = rejectsWith(channel.call("probe.wait", { ms: 60_000, tag: "memory-close" }), "CANCELLED");
    await probeReached("memory-close", "started");
    channel.close();
    await inflight;
    await probeReached("memory-close", "aborted");
    await channel.whenClosed();
    await memory.server.whenAllClosed();
    assert.equal(memory.runtime.openConnections, 0);
  } finally {
    await memory.close();
  }
});

test("a slow answer does not hold up a fast one on the same channel", async () => {
  const memory = await startMemoryServer();
  try {
    const channel = await memory.channel();
    const slow = channel.call("probe.wait", { ms: 60_000, tag: "memory-order" });
    await probeReached("memory-order", "started");
    assert.equal(await channel.call("probe.echo", "fast"), "fast");
    memory.server.closeAll();
    await rejectsWith(slow, "UNAVAILABLE");
  } finally {
    await memory.close();
  }
});

test("msgids wrap around at 2^32 and then skip the ones still in flight", async () => {
  const memory = await startMemoryServer();
  try {
    const channel = await memory.channel();
    const ids = channel as unknown as { nextMsgid: number };
    // A call left in flight at msgid 0, then the counter moved to just below the wrap.
    const slow = channel.call("probe.wait", { ms: 60_000, tag: "wrap" });
    await probeReached("wrap", "started");
    ids.nextMsgid = 0xffff_fffe;
    // 0xfffffffe and 0xffffffff, then 0 is taken by the slow call: the next is 1.
    for (const expected of [0xffff_fffe, 0xffff_ffff]) {
      assert.equal(await channel.call("probe.echo", expected), expected);
    }
    assert.equal(ids.nextMsgid, 0);
    assert.equal(await channel.call("probe.echo", "after the wrap"), "after the wrap");
    assert.equal(ids.nextMsgid, 2, "msgid 0 was in flight, so the call after the wrap took 1");
    memory.server.closeAll();
    await rejectsWith(slow, "UNAVAILABLE");
  } finally {
    await memory.close();
  }
});

test("a deadline on the shared wheel (1 s and more) runs from when the call's batch is written, and fails it DEADLINE_EXCEEDED", async () => {
  const memory = await startMemoryServer();
  try {
    // Plain msgpack-rpc: the server is told no deadline, so only the channel's own can end the calls.
    const channel = await memory.channel({ plain: true });
    const sent = performance.now();
    // Three calls of one batch, one of which cannot be encoded: it fails at once and is never armed.
    const calls = [
      channel.call("probe.wait", { ms: 60_000, tag: "wheel-a" }, { timeoutMs: 1_000 }),
      channel.call("probe.echo", 10n ** 30n, { timeoutMs: 1_000 }),
      channel.call("probe.wait", { ms: 60_000, tag: "wheel-b" }, { timeoutMs: 1_000 }),
    ];
    await rejectsWith(calls[1]!, "INVALID_PARAMS");
    for (const call of [calls[0]!, calls[2]!]) {
      const error = await rejectsWith(call, "DEADLINE_EXCEEDED");
      assert.match(error.rawMessage, /^No answer from .* to "probe.wait" within 1000 ms$/);
    }
    // Never early; late by at most the wheel's resolution, and a loaded machine.
    const took = performance.now() - sent;
    assert.ok(took >= 1_000 && took < 3_000, `${took} ms`);
    assert.equal(channel.inflight, 0);
  } finally {
    await memory.close();
  }
});
