// Hostile peers on the RPC port (issue 10, findings 1, 2, 6, 7 and 8): each test sends a
// real node the bytes of one attack, then checks that the node still serves an honest
// client and holds nothing for the attacker.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { createClusterClient } from "../../src/cluster/client.ts";
import { createClient } from "../../src/rpc/client.ts";
import { connectChannel, connectRaw, messagesOf, type RawConnection, rejectsWith, runtime, startTestNode, until } from "../helpers/net.ts";
import { nested, probe, probeHandlers, probeReached } from "../helpers/services.ts";

const LIMITS = {
  maxInflightPerConnection: 8,
  maxConnections: 40,
  readTimeoutMs: 300,
  idleTimeoutMs: 0,
  maxBufferedBytes: 1024 * 1024,
  maxElements: 1_000,
  maxDepth: 16,
};
const server = await startTestNode((node) => node.register(probe, probeHandlers), { maxMessageBytes: 4 * 1024 * 1024, limits: { ...LIMITS, keepAliveMs: 30_000 } });
after(() => server.close());
const honestChannel = await connectChannel(server.port);
const honest = createClient(probe, honestChannel);
after(() => honestChannel.close());

/** An honest caller is served and nothing is left in flight. */
async function assertHonestServedAndNothingHeld(): Promise<void> {
  assert.equal(await honest.add({ a: 2, b: 40 }), 42);
  await until(() => server.node.stats.inflight === 0, "no request is in flight");
}

test("a 116-byte request nested 101 deep closes its connection instead of leaking an in-flight slot", async () => {
  // [0, 1, "demo.echo", [[[…101 levels…]]]]: the method need not exist, the decoder refuses first.
  const attack = encode([0, 1, "demo.echo", nested(100)], { maxDepth: 200 });
  assert.ok(attack.byteLength <= 116, `${attack.byteLength} bytes`);
  const raw = await connectRaw(server.port);
  raw.socket.write(attack);
  await raw.closed;
  raw.socket.close();
  await server.logs.next((l) => /nests deeper than the limit of 16 levels/.test(String(l.msg)));
  await assertHonestServedAndNothingHeld();
});

test("a request at the nesting limit is echoed whole: the limit is the same in and out", async () => {
  // The message array is level 1 and params level 2: the input may take 14 more, its innermost value included.
  const input = nested(13);
  assert.deepEqual(await honest.echo(input), input);
  const raw = await connectRaw(server.port);
  raw.socket.write(encode([0, 1, "probe.echo", [nested(14)]]));
  await raw.closed;
  raw.socket.close();
});

test("a result too deep to encode becomes one INTERNAL answer and leaves the counter exactly once", async () => {
  for (let i = 0; i < 50; i++) {
    const error = await rejectsWith(honest.nest({ levels: 40 }), "INTERNAL");
    assert.match(error.message, /Result of "probe.nest" cannot be encoded: Too deep objects in depth 16/);
  }
  const error = await rejectsWith(honest.unencodable("x"), "INTERNAL");
  assert.match(error.message, /Result of "probe.unencodable" cannot be encoded/);
  await assertHonestServedAndNothingHeld();
});

for (const [way, hangUp] of [
  ["closing its side (FIN)", (raw: RawConnection) => raw.socket.end()],
  ["resetting the connection (RST)", (raw: RawConnection) => raw.socket.close()],
] as const) {
  test(`a client ${way} aborts every call it left running, at once`, async () => {
    const raw = await connectRaw(server.port);
    const tags = Array.from({ length: 8 }, (_, i) => `${way}-${i}`);
    tags.forEach((tag, i) => raw.socket.write(encode([0, i, "probe.wait", [{ ms: 3_600_000, tag }]])));
    await Promise.all(tags.map((tag) => probeReached(tag, "started")));
    assert.equal(server.node.stats.inflight, 8);
    hangUp(raw);
    await Promise.all(tags.map((tag) => probeReached(tag, "aborted")));
    raw.socket.close();
    await assertHonestServedAndNothingHeld();
  });
}

test("one connection cannot take more than its share of in-flight slots: past it, OVERLOADED for it alone", async () => {
  const greedy = await connectRaw(server.port);
  const tags = Array.from({ length: 10 }, (_, i) => `greedy-${i}`);
  tags.forEach((tag, i) => greedy.socket.write(encode([0, i, "probe.wait", [{ ms: 3_600_000, tag }]])));
  const refusals = await greedy.waitForBytes(1).then(() => until(() => messagesOf(greedy).length >= 2, "two refusals arrive")).then(() => messagesOf(greedy));
  assert.deepEqual(
    refusals.map((m) => [m[1], (m[2] as { code: string; processed: boolean }).code, (m[2] as { processed: boolean }).processed]),
    [[8, "OVERLOADED", false], [9, "OVERLOADED", false]],
  );
  // Everyone else is still served while the greedy connection holds its 8.
  assert.equal(await honest.add({ a: 1, b: 1 }), 2);
  greedy.socket.close();
  await Promise.all(tags.slice(0, 8).map((tag) => probeReached(tag, "aborted")));
  await assertHonestServedAndNothingHeld();
});

test("30 connections that sent one byte are closed at the read timeout, counted, and logged at most 20 times", async () => {
  // A node of its own: this flood spends its host's log budget for 10 s.
  const node = await startTestNode((n) => n.register(probe, probeHandlers), { limits: { ...LIMITS, keepAliveMs: 0 } });
  try {
    const stalled = await Promise.all(Array.from({ length: 30 }, () => connectRaw(node.port)));
    for (const raw of stalled) raw.socket.write(new Uint8Array([0x94]));
    await Promise.all(stalled.map((raw) => raw.closed));
    for (const raw of stalled) raw.socket.close();
    assert.equal(node.node.stats.rejected, 30);
    await node.logs.next((l) => /still incomplete \(EBB_READ_TIMEOUT_MS=300\)/.test(String(l.msg)));
    assert.equal(node.logs.lines.filter((l) => /closing connection/.test(String(l.msg))).length, 20);
  } finally {
    await node.close();
  }
  await assertHonestServedAndNothingHeld();
});

test("partial messages past the node-wide buffer cap close the connection that passes it", async () => {
  // 600 KiB of a 3 MiB string each: the first fits under the 1 MiB cap, the second does not.
  const header = new Uint8Array([0x94, 0x00, 0x01, 0xaa, ...new TextEncoder().encode("probe.echo"), 0x91, 0xdb, 0x00, 0x30, 0x00, 0x00]);
  const body = new Uint8Array(600 * 1024).fill(0x61);
  const first = await connectRaw(server.port);
  first.socket.write(header);
  first.socket.write(body);
  await until(() => server.node.stats.bufferedBytes >= 600 * 1024, "the first connection's bytes are held");
  const second = await connectRaw(server.port);
  second.socket.write(header);
  second.socket.write(body);
  await second.closed;
  second.socket.close();
  await server.logs.next((l) => /partial messages of all connections hold over 1048576 bytes/.test(String(l.msg)));
  first.socket.close();
  await assertHonestServedAndNothingHeld();
});

test("a map of 1.3 million keys is refused from its header, before it is buffered or decoded", async () => {
  const raw = await connectRaw(server.port);
  // [0, 1, "nope", [map32 with 1,300,000 entries ...]]: only the headers are sent.
  raw.socket.write(new Uint8Array([0x94, 0x00, 0x01, 0xa4, 0x6e, 0x6f, 0x70, 0x65, 0x91, 0xdf, 0x00, 0x13, 0xd6, 0x20]));
  await raw.closed;
  raw.socket.close();
  await server.logs.next((l) => /exceeds the limit of 1000 elements/.test(String(l.msg)));
  await assertHonestServedAndNothingHeld();
});

test("connections past the connection cap are closed on accept, and the node keeps serving", async () => {
  const open = await Promise.all(Array.from({ length: LIMITS.maxConnections + 10 }, () => connectRaw(server.port)));
  // The honest connection is one of the 40: eleven of the flood are closed at once, the rest held.
  await until(() => countClosed(open) >= 11, "eleven connections are refused");
  assert.equal(server.node.stats.connections, LIMITS.maxConnections);
  await server.logs.next((l) => /refusing connections: 40 open, the limit \(EBB_MAX_CONNECTIONS\)/.test(String(l.msg)));
  for (const raw of open) raw.socket.close();
  await until(() => server.node.stats.connections === 1, "the flood is gone");
  await assertHonestServedAndNothingHeld();
});

const closedFlags = new WeakMap<object, boolean>();
function countClosed(raws: Awaited<ReturnType<typeof connectRaw>>[]): number {
  for (const raw of raws) if (!closedFlags.has(raw)) void raw.closed.then(() => closedFlags.set(raw, true));
  return raws.filter((raw) => closedFlags.get(raw)).length;
}

test("a peer that never closes its side after the node's FIN is closed for it about a second later", async () => {
  const idle = await startTestNode((node) => node.register(probe, probeHandlers), { limits: { ...LIMITS, idleTimeoutMs: 200, keepAliveMs: 0 } });
  const raw = await connectRaw(idle.port);
  try {
    await raw.closed; // the node's FIN, after the idle timeout; this peer keeps its side open
    assert.equal(idle.node.stats.connections, 1, "half-closed, the peer's side still open");
    await until(() => idle.node.stats.connections === 0, "the node closes what the peer never closed", 5_000);
  } finally {
    raw.socket.close();
    await idle.close();
  }
});

test("an idle connection is closed with a final $goaway, and an ebb client reconnects transparently", async () => {
  const idle = await startTestNode((node) => node.register(probe, probeHandlers), { limits: { ...LIMITS, idleTimeoutMs: 200, keepAliveMs: 0 } });
  try {
    const raw = await connectRaw(idle.port);
    await raw.closed;
    raw.socket.close();
    assert.deepEqual(messagesOf(raw).at(-1), [2, "$goaway", [{ reason: "closing", final: true }]]);
    const cluster = createClusterClient({ runtime, addresses: [`127.0.0.1:${idle.port}`] });
    try {
      const client = cluster.client(probe);
      assert.equal(await client.add({ a: 1, b: 2 }), 3);
      await idle.logs.next((l) => l.msg === "closing an idle connection");
      assert.equal(await client.add({ a: 3, b: 4 }), 7);
    } finally {
      cluster.close();
    }
  } finally {
    await idle.close();
  }
});
