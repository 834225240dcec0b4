import { test } from "node:test";
import assert from "node:assert/strict";
import { RpcError } from "../../../src/rpc/errors.ts";
import { type ErrorCode, ErrorCodes } from "../../../src/wire/codes.ts";

test("RpcError shows its code in the message", () => {
  const error = new RpcError("node n1 is draining", "SHUTTING_DOWN");
  assert.equal(error.message, "[SHUTTING_DOWN] node n1 is draining");
  assert.equal(error.rawMessage, "node n1 is draining");
  assert.equal(error.processed, false);
});

test("only SHUTTING_DOWN and OVERLOADED promise that no handler ran by default", () => {
  for (const code of ErrorCodes) {
    const expected = code === "SHUTTING_DOWN" || code === "OVERLOADED" ? false : undefined;
    assert.equal(new RpcError("x", code).processed, expected, code);
  }
});

test("RpcError.from keeps RpcErrors and wraps anything else", () => {
  const original = new RpcError("x", "APPLICATION");
  assert.equal(RpcError.from(original), original);
  const wrapped = RpcError.from(new TypeError("boom"));
  assert.equal(wrapped.code, "INTERNAL");
  assert.equal(wrapped.rawMessage, "boom");
  assert.ok(wrapped.cause instanceof TypeError);
  assert.equal(RpcError.from("text", "APPLICATION").code, "APPLICATION");
  assert.equal(RpcError.from(new DOMException("gone", "AbortError")).code, "CANCELLED");
  assert.equal(RpcError.from(new DOMException("late", "TimeoutError")).code, "DEADLINE_EXCEEDED");
});

test("RpcError round-trips through its wire form", () => {
  const error = new RpcError("bad", "INVALID_PARAMS", { data: [{ path: ["a"] }] });
  const back = RpcError.fromWire(error.toWire());
  assert.equal(back.code, "INVALID_PARAMS");
  assert.equal(back.rawMessage, "bad");
  assert.deepEqual(back.data, [{ path: ["a"] }]);
  assert.deepEqual(new RpcError("d", "SHUTTING_DOWN").toWire(), { code: "SHUTTING_DOWN", message: "d", processed: false });
});

test("RpcError.fromWire accepts the bare errors other msgpack-rpc servers send", () => {
  const fromString = RpcError.fromWire("no such method");
  assert.equal(fromString.code, "APPLICATION");
  assert.equal(fromString.rawMessage, "no such method");
  assert.equal(RpcError.fromWire({ code: "WAT", message: "m" }).code, "INTERNAL");
});

test("new RpcError with its arguments the wrong way round, or an unknown code, fails at once with a TypeError that says how to write it", () => {
  const message: string = "out of stock";
  // @ts-expect-error: the code comes second; tsc and deno check both refuse this line.
  assert.throws(() => new RpcError("APPLICATION", message), { name: "TypeError", message: 'new RpcError(message, code): the message comes first: new RpcError("out of stock", "APPLICATION")' });
  // From JavaScript, or past a cast: caught at run time too.
  assert.throws(() => new RpcError(message, "APLICATION" as ErrorCode), { name: "TypeError", message: /"APLICATION" is not an error code \(INVALID_REQUEST, .*APPLICATION\)/ });
  assert.equal(new RpcError(message, "APPLICATION", { data: { sku: "b1" } }).message, "[APPLICATION] out of stock");
});
