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
  const inflight = bystanderClient.wait({ ms: 50, tag: `bystander-${logPattern.source}` });
  const raw = await connectRaw(server.port);
  for (const chunk of bytes) raw.socket.write(chunk);
  await raw.closed;
  raw.socket.close();
  const line = await server.logs.next((l) => server.logs.lines.indexOf(l) >= before && /closing connection/.test(String(l.msg)));
  assert.match(String(line.msg), logPattern);
  assert.equal(line.level, "warn");
  // Exactly one log line for the offence.
  assert.equal(server.logs.lines.slice(before).filter((l) => /closing connection/.test(String(l.msg))).length, 1);
  // Everyone else is untouched: a call in flight completes, a new one works.
  assert.equal(await inflight, `bystander-${logPattern.source}`);
  assert.equal(await bystanderClient.add({ a: 20, b: 22 }), 42);
}

test("bytes that are not msgpack close that connection with one log line", async () => {
  await assertOffenderClosed([new Uint8Array([0x94, 0x00, 0x01, 0xc1, 0xc1])], /Bytes are not msgpack/);
});

test("text sent to the RPC port closes that connection", async () => {
  await assertOffenderClosed([new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")], /not a msgpack-rpc array/);
});

test("a msgpack value that is not a msgpack-rpc message closes that connection", async () => {
  await assertOffenderClosed([encode([7, 1, "x", []])], /Not a msgpack-rpc message: unknown message type 7/);
  await assertOffenderClosed([encode([0, "one", "probe.echo", []])], /msgid is not a 32-bit unsigned integer/);
});

test("a message over the limit is refused from its header, before it is buffered", async () => {
  // Only the header of a 100 MB string is sent: the server must not wait for the rest.
  const header = new Uint8Array([0x94, 0x00, 0x01, 0xa1, 0x78, 0x91, 0xdb, 0x05, 0xf5, 0xe1, 0x00]);
  await assertOffenderClosed([header], /exceeds the limit of 65536 bytes/);
});

test("a message over the limit made of many small pieces closes its connection", async () => {
  const big = encode([0, 1, "probe.echo", [Array.from({ length: LIMIT }, () => 1)]]);
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < big.byteLength; i += 4096) chunks.push(big.subarray(i, i + 4096));
  await assertOffenderClosed(chunks, /exceeds the limit/);
});

test("a message just under the limit is served", async () => {
  const payload = "x".repeat(LIMIT - 100);
  assert.equal(await bystanderClient.echo(payload), payload);
});

test("the process survives every offence and keeps counting them", () => {
  assert.ok(server.node.stats.rejected >= 6);
});
