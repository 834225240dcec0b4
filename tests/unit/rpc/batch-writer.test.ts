import { test } from "node:test";
import assert from "node:assert/strict";
import { decode, encode } from "@msgpack/msgpack";
import { BatchWriter } from "../../../src/rpc/batch-writer.ts";
import type { Socket } from "../../../src/runtime/types.ts";
import { MessageDecoder } from "../../../src/wire/decoder.ts";
import type { RequestMeta } from "../../../src/wire/messages.ts";

/** A socket that only records what is written: the writer's encoding is what is under test. */
function sink(): { socket: Socket; written: Uint8Array[] } {
  const written: Uint8Array[] = [];
  const socket: Socket = {
    remote: "test:0",
    bufferedBytes: 0,
    write: (bytes) => (written.push(bytes), true),
    end() {},
    close() {},
    pause() {},
    resume() {},
    setNoDelay() {},
    setKeepAlive() {},
  };
  return { socket, written };
}

/** Every message one flush wrote, decoded by the same decoder a peer uses (its limits included). */
function flushed(writer: BatchWriter, written: Uint8Array[], maxDepth = 64): unknown[] {
  writer.flush();
  const decoder = new MessageDecoder(8 << 20, { maxDepth });
  return written.splice(0).flatMap((bytes) => decoder.push(bytes));
}

const MSGIDS = [0, 1, 127, 128, 255, 256, 65_535, 65_536, 0xffff_ffff];

test("requests written by hand decode to the very message the generic encoder writes, at every msgid width", () => {
  const { socket, written } = sink();
  const writer = new BatchWriter(socket);
  const metas: (RequestMeta | undefined)[] = [
    undefined,
    { deadline: 30_000 },
    { deadline: 0 },
    { deadline: 0xffff_ffff },
    { deadline: 1.5 },
    { deadline: 10, id: "req-1" },
    { deadline: 10, headers: { tenant: "a" }, traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
  ];
  const expected: unknown[] = [];
  for (const msgid of MSGIDS) {
    for (const meta of metas) {
      const params = [{ a: 1, b: "hello", bytes: new Uint8Array([1, 2, 3]) }];
      writer.sendRequest(msgid, "demo.echo", params, meta);
      expected.push(meta ? [0, msgid, "demo.echo", params, meta] : [0, msgid, "demo.echo", params]);
    }
  }
  writer.sendRequest(7, "é.method", [], undefined);
  expected.push([0, 7, "é.method", []]);
  const messages = flushed(writer, written);
  assert.deepEqual(messages, expected.map((message) => decode(encode(message))));
});

test("results written by hand decode as the generic encoder's, with and without meta", () => {
  const { socket, written } = sink();
  const writer = new BatchWriter(socket);
  const expected: unknown[] = [];
  for (const msgid of MSGIDS) {
    writer.sendResult(msgid, { ok: [1, 2, 3] });
    writer.sendResult(msgid, null, { headers: { "x-served-by": "b" } });
    expected.push([1, msgid, null, { ok: [1, 2, 3] }], [1, msgid, null, null, { headers: { "x-served-by": "b" } }]);
  }
  assert.deepEqual(flushed(writer, written), expected);
});

test("the nesting limit is the whole message's: a value at the limit goes, one level deeper throws and queues nothing", () => {
  const nested = (levels: number): unknown => (levels === 0 ? 1 : [nested(levels - 1)]);
  const { socket, written } = sink();
  const writer = new BatchWriter(socket, undefined, 16);
  // The message array is level 1, params and result level 2: the input may take 14 more levels, its innermost value
  // included, and the result 15; the generic encoder of the whole message draws the same line.
  writer.sendRequest(1, "m", [nested(13)], { deadline: 5 });
  writer.sendResult(2, nested(14));
  encode([0, 1, "m", [nested(13)], { deadline: 5 }], { maxDepth: 16 });
  assert.throws(() => encode([0, 1, "m", [nested(14)]], { maxDepth: 16 }), /Too deep/);
  assert.throws(() => encode([1, 4, null, nested(15)], { maxDepth: 16 }), /Too deep/);
  assert.throws(() => writer.sendRequest(3, "m", [nested(14)], { deadline: 5 }), /Too deep/);
  assert.throws(() => writer.sendResult(4, nested(15)), /Too deep/);
  assert.throws(() => writer.sendRequest(5, "m", [{ f: () => 1 }], undefined), /Unrecognized object/);
  const messages = flushed(writer, written, 16) as unknown[][];
  assert.deepEqual(messages.map((message) => message[1]), [1, 2], "a failed message leaves no byte behind");
});

test("method names are encoded once each, and the cache of them stays bounded", () => {
  const { socket, written } = sink();
  const writer = new BatchWriter(socket);
  for (let i = 0; i < 1_000; i++) writer.sendRequest(i, `svc.m${i}`, [], undefined);
  const messages = flushed(writer, written) as unknown[][];
  assert.deepEqual(messages.map((message) => message[2]), Array.from({ length: 1_000 }, (_, i) => `svc.m${i}`));
  const methods = (writer as unknown as { methods: Map<string, Uint8Array> }).methods;
  assert.ok(methods.size <= 256, `${methods.size} method names kept`);
});

test("a value whose getter writes another message while it is encoded cannot split a message: each arrives whole", () => {
  const { socket, written } = sink();
  const writer = new BatchWriter(socket);
  const sneaky = (note: string) => ({
    get x() {
      writer.send([2, note, []]);
      return 1;
    },
  });
  writer.sendResult(5, sneaky("during a result"), { headers: { a: "b" } });
  writer.sendRequest(6, "m", [sneaky("during a request")], { deadline: 10 });
  writer.sendRequest(7, "m", [sneaky("during a request with meta")], { deadline: 10, id: "r" });
  assert.deepEqual(flushed(writer, written), [
    [2, "during a result", []],
    [1, 5, null, { x: 1 }, { headers: { a: "b" } }],
    [2, "during a request", []],
    [0, 6, "m", [{ x: 1 }], { deadline: 10 }],
    [2, "during a request with meta", []],
    [0, 7, "m", [{ x: 1 }], { deadline: 10, id: "r" }],
  ]);
});

test("a number as meta stands for a meta that is only that deadline, whole or not", () => {
  const { socket, written } = sink();
  const writer = new BatchWriter(socket);
  for (const deadline of [0, 1, 30_000, 0xffff_ffff, 1.5, 2 ** 33]) writer.sendRequest(9, "m", [], deadline);
  assert.deepEqual(
    flushed(writer, written),
    [0, 1, 30_000, 0xffff_ffff, 1.5, 2 ** 33].map((deadline) => [0, 9, "m", [], { deadline }]),
  );
});
