import { after, test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { createClient } from "../../src/rpc/client.ts";
import { connectChannel, connectRaw, startTestNode } from "../helpers/net.ts";
import { probe, probeHandlers } from "../helpers/services.ts";

const LIMIT = 64 * 1024;
const server = await startTestNode((node) => node.register(probe, probeHandlers), { maxMessageBytes: LIMIT });
after(() => server.close());

// A well-behaved client that keeps a call running across each offence.
const bystander = await connectChannel(server.port);
const bystanderClient = createClient(probe, bystander);
after(() => bystander.close());

async function assertOffenderClosed(bytes: Uint8Array[], logPattern: RegExp): Promise<void> {
  const before = server.logs.lines.length;
  const rejectedBefore = server.node.stats.rejected;
  const inflight = bystanderClient.wait({ ms: 50, tag: `bystander-${logPattern.source}` });
  const raw = await connectRaw(server.port);
  for (const chunk of bytes) raw.socket.write(chunk);
  await raw.closed;
  raw.socket.close();
  const line = await server.logs.next((l) => server.logs.lines.indexOf(l) >= before && /closing connection/.test(String(l.msg)));
  assert.match(String(line.msg), logPattern);
  assert.equal(line.level, "warn");
  assert.equal(server.node.stats.rejected - rejectedBefore, 1);
  // Exactly one log line for the offence.
  assert.equal(server.logs.lines.slice(before).filter((l) => /closing connection/.test(String(l.msg))).length, 1);
  // Everyone else is untouched: a call in flight completes, a new one works.
  assert.equal(await inflight, `bystander-${logPattern.source}`);
  assert.equal(await bystanderClient.add({ a: 20, b: 22 }), 42);
}

/** Each offence: what the offender sends, and what the server's one log line says. */
const NOT_MSGPACK: [Uint8Array[], RegExp] = [[new Uint8Array([0x94, 0x00, 0x01, 0xc1, 0xc1])], /Bytes are not msgpack/];
const HTTP_TEXT: [Uint8Array[], RegExp] = [[new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")], /not a msgpack-rpc array/];
const UNKNOWN_TYPE: [Uint8Array[], RegExp] = [[encode([7, 1, "x", []])], /Not a msgpack-rpc message: unknown message type 7/];
const TEXT_MSGID: [Uint8Array[], RegExp] = [[encode([0, "one", "probe.echo", []])], /msgid is not a 32-bit unsigned integer/];
// Only the header of a 100 MB string is sent: the server must not wait for the rest.
const HUGE_HEADER: [Uint8Array[], RegExp] = [[new Uint8Array([0x94, 0x00, 0x01, 0xa1, 0x78, 0x91, 0xdb, 0x05, 0xf5, 0xe1, 0x00])], /exceeds the limit of 65536 bytes/];
const big = encode([0, 1, "probe.echo", [Array.from({ length: LIMIT }, () => 1)]]);
const BIG_IN_PIECES: [Uint8Array[], RegExp] = [Array.from({ length: Math.ceil(big.byteLength / 4096) }, (_, i) => big.subarray(i * 4096, (i + 1) * 4096)), /exceeds the limit/];

test("bytes that are not msgpack close that connection with one log line", async () => {
  await assertOffenderClosed(...NOT_MSGPACK);
});

test("text sent to the RPC port closes that connection", async () => {
  await assertOffenderClosed(...HTTP_TEXT);
});

test("a msgpack value that is not a msgpack-rpc message closes that connection", async () => {
  await assertOffenderClosed(...UNKNOWN_TYPE);
  await assertOffenderClosed(...TEXT_MSGID);
});

test("a message over the limit is refused from its header, before it is buffered", async () => {
  await assertOffenderClosed(...HUGE_HEADER);
});

test("a message over the limit made of many small pieces closes its connection", async () => {
  await assertOffenderClosed(...BIG_IN_PIECES);
});

test("a message just under the limit is served", async () => {
  const payload = "x".repeat(LIMIT - 100);
  assert.equal(await bystanderClient.echo(payload), payload);
});

test("the process survives every offence and keeps counting them", async () => {
  // Counted from here, so the test holds alone and in any order.
  const before = server.node.stats.rejected;
  const offences = [NOT_MSGPACK, HTTP_TEXT, UNKNOWN_TYPE, TEXT_MSGID, HUGE_HEADER, BIG_IN_PIECES];
  for (const offence of offences) await assertOffenderClosed(...offence);
  assert.ok(server.node.stats.rejected - before >= 6);
  assert.equal(server.node.stats.rejected - before, offences.length);
});
