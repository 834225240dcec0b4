import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { FrameError, MessageDecoder } from "../../../src/wire/decoder.ts";

// Messages that exercise every msgpack header the scanner has to size.
const samples: unknown[] = [
  [0, 1, "demo.echo", [{ a: 1 }]],
  [0, 2, "demo.echo", ["x".repeat(40)], { deadline: 1000, id: "r-1" }],
  [1, 3, null, { nested: [1, [2, [3, { deep: true }]]] }],
  [2, "$goaway", [{ node: "n1", reason: "draining" }]],
  [1, 4, null, "s".repeat(300)], // str16
  [1, 5, null, "s".repeat(70_000)], // str32
  [1, 6, null, new Uint8Array(200)], // bin8
  [1, 7, null, new Uint8Array(300)], // bin16
  [1, 8, null, new Uint8Array(70_000)], // bin32
  [1, 9, null, [-1, -33, -200, -40_000, -3_000_000_000, 200, 60_000, 4_000_000_000, 2 ** 60, 1.5, 0.1]],
  [1, 10, null, Array.from({ length: 20 }, (_, i) => i)], // array16
  [1, 11, null, Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i]))], // map16
  [1, 12, null, new Date(1_700_000_000_123)], // ext -1 (timestamp)
  [1, 13, null, [true, false, null, "", {}, []]],
];

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

test("decoder returns every message whole when it is split at every byte boundary", () => {
  for (const sample of samples) {
    const bytes = encode(sample);
    // Large samples are split at a stride so the test stays fast; small ones at every byte.
    const step = bytes.byteLength > 2_000 ? 97 : 1;
    for (let cut = 0; cut <= bytes.byteLength; cut += step) {
      const decoder = new MessageDecoder(1024 * 1024);
      const first = decoder.push(bytes.slice(0, cut));
      const second = decoder.push(bytes.slice(cut));
      const got = [...first, ...second];
      assert.equal(got.length, 1, `split at ${cut} of ${bytes.byteLength}`);
      assert.deepEqual(got[0], sample);
      assert.equal(decoder.bufferedBytes, 0);
    }
  }
});

test("decoder returns every message when fed one byte at a time", () => {
  const stream = concat(samples.slice(0, 5).map((s) => encode(s)));
  const decoder = new MessageDecoder(1024 * 1024);
  const got: unknown[] = [];
  for (let i = 0; i < stream.byteLength; i++) got.push(...decoder.push(stream.slice(i, i + 1)));
  assert.deepEqual(got, samples.slice(0, 5));
});

test("decoder returns many messages from one chunk in order", () => {
  const messages = Array.from({ length: 500 }, (_, i) => [0, i, "demo.echo", [{ i, pad: "p".repeat(i % 50) }]]);
  const decoder = new MessageDecoder(1024 * 1024);
  assert.deepEqual(decoder.push(concat(messages.map((m) => encode(m)))), messages);
});

test("decoder keeps a partial tail across chunks of many messages", () => {
  const messages = Array.from({ length: 200 }, (_, i) => [1, i, null, "v".repeat(i)]);
  const stream = concat(messages.map((m) => encode(m)));
  for (const size of [7, 64, 1000, 4096]) {
    const decoder = new MessageDecoder(1024 * 1024);
    const got: unknown[] = [];
    for (let i = 0; i < stream.byteLength; i += size) got.push(...decoder.push(stream.slice(i, i + size)));
    assert.deepEqual(got, messages, `chunk size ${size}`);
  }
});

test("decoded binary values survive later chunks", () => {
  const decoder = new MessageDecoder(1024 * 1024);
  const a = encode([1, 1, null, new Uint8Array([1, 2, 3])]);
  const b = encode([1, 2, null, new Uint8Array([9, 9, 9])]);
  const stream = concat([a, b]);
  const [first] = decoder.push(stream.slice(0, a.byteLength + 2));
  const [second] = decoder.push(stream.slice(a.byteLength + 2));
  assert.deepEqual(first, [1, 1, null, new Uint8Array([1, 2, 3])]);
  assert.deepEqual(second, [1, 2, null, new Uint8Array([9, 9, 9])]);
});

test("decoder rejects a message over the limit from its header, before it arrives whole", () => {
  const decoder = new MessageDecoder(1024);
  const big = encode([0, 1, "demo.echo", ["x".repeat(10_000)]]);
  // Only the first 20 bytes have arrived: the str32 header already says it is too large.
  assert.throws(() => decoder.push(big.slice(0, 20)), (e: unknown) => e instanceof FrameError && /exceeds the limit of 1024 bytes/.test(e.message));
});

test("decoder rejects a message of many small items once it passes the limit", () => {
  const decoder = new MessageDecoder(1024);
  const many = encode([0, 1, "demo.echo", [Array.from({ length: 5_000 }, () => 1)]]);
  assert.throws(() => {
    for (let i = 0; i < many.byteLength; i += 100) decoder.push(many.slice(i, i + 100));
  }, /exceeds the limit/);
});

test("decoder rejects an array header that promises more items than the limit allows", () => {
  const decoder = new MessageDecoder(1024);
  // array32 with 2^32-1 items: impossible within 1 KiB, refused at the header.
  assert.throws(() => decoder.push(new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff])), /exceeds the limit/);
});

test("decoder accepts a message exactly at the limit", () => {
  const message = [1, 1, null, "x".repeat(1000)];
  const bytes = encode(message);
  const decoder = new MessageDecoder(bytes.byteLength);
  assert.deepEqual(decoder.push(bytes), [message]);
  assert.throws(() => new MessageDecoder(bytes.byteLength - 1).push(bytes), /exceeds the limit/);
});

test("decoder rejects bytes that are not msgpack", () => {
  assert.throws(() => new MessageDecoder(1024).push(new Uint8Array([0x94, 0xc1])), (e: unknown) => e instanceof FrameError && /not msgpack/.test(e.message));
});

test("decoder rejects a message that is not an array", () => {
  const text = new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n");
  assert.throws(() => new MessageDecoder(1024).push(text), /not a msgpack-rpc array \(first byte 0x47\)/);
  assert.throws(() => new MessageDecoder(1024).push(encode({ method: "x" })), /not a msgpack-rpc array/);
});

test("decoder rejects random garbage without hanging or crashing", () => {
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  for (let round = 0; round < 300; round++) {
    const garbage = new Uint8Array(64).map(() => random());
    const decoder = new MessageDecoder(4096);
    try {
      decoder.push(garbage);
    } catch (error) {
      assert.ok(error instanceof FrameError, `round ${round}: ${String(error)}`);
    }
  }
});

test("decoder refuses a message one level deeper than its nesting limit, whatever the chunking", () => {
  const deep = (levels: number): unknown => (levels === 0 ? 0 : [deep(levels - 1)]);
  // The message array is level 1: [0, 1, "m", params] with params nesting the rest.
  const atLimit = encode([0, 1, "m", deep(6)]);
  const tooDeep = encode([0, 1, "m", deep(7)]);
  assert.deepEqual(new MessageDecoder(1024, { maxDepth: 8 }).push(atLimit), [[0, 1, "m", deep(6)]]);
  for (let cut = 0; cut <= tooDeep.byteLength; cut++) {
    const decoder = new MessageDecoder(1024, { maxDepth: 8 });
    assert.throws(() => {
      decoder.push(tooDeep.slice(0, cut));
      decoder.push(tooDeep.slice(cut));
    }, /nests deeper than the limit of 8 levels/);
  }
});

test("decoder counts every item against the element limit, and judges a container from its header", () => {
  const items = Array.from({ length: 95 }, (_, i) => i);
  // 1 message array + 3 scalars + params array + 95 items = 100 elements.
  assert.equal(new MessageDecoder(4096, { maxElements: 100 }).push(encode([0, 1, "m", items])).length, 1);
  assert.throws(() => new MessageDecoder(4096, { maxElements: 100 }).push(encode([0, 1, "m", [...items, 95]])), /exceeds the limit of 100 elements/);
  // A map32 header promising 1.3 million entries is refused from its five bytes.
  assert.throws(() => new MessageDecoder(1 << 30, { maxElements: 100 }).push(new Uint8Array([0x94, 0x00, 0x01, 0xa1, 0x6d, 0x91, 0xdf, 0x00, 0x13, 0xd6, 0x20])), /elements/);
});

test("decoder hands back at most a turn's worth of messages and keeps the rest for the next push", () => {
  const message = encode([0, 1, "m", ["x".repeat(1000)]]);
  const stream = concat(Array.from({ length: 10 }, () => message));
  const decoder = new MessageDecoder(1 << 20, { turnBytes: 2500 });
  const turns: number[] = [];
  turns.push(decoder.push(stream).length);
  while (decoder.backlog) turns.push(decoder.push(new Uint8Array(0)).length);
  assert.deepEqual(turns, [3, 3, 3, 1]);
  assert.equal(decoder.bufferedBytes, 0);
});
