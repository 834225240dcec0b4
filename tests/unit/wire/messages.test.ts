import { test } from "node:test";
import assert from "node:assert/strict";
import { parseMessage } from "../../../src/wire/messages.ts";

test("parseMessage reads requests with and without meta", () => {
  assert.deepEqual(parseMessage([0, 7, "demo.echo", [1]]), { kind: "request", msgid: 7, method: "demo.echo", params: [1], meta: undefined });
  assert.deepEqual(parseMessage([0, 7, "demo.echo", [], { deadline: 50, id: "a" }]), {
    kind: "request",
    msgid: 7,
    method: "demo.echo",
    params: [],
    meta: { deadline: 50, id: "a" },
  });
  assert.equal(parseMessage([0, 7, "demo.echo", [], null]).kind, "request");
});

test("parseMessage answers a bad request shape with INVALID_REQUEST when the msgid is readable", () => {
  const cases: [unknown[], RegExp][] = [
    [[0, 1, 42, []], /method is not a non-empty string/],
    [[0, 1, "", []], /method is not a non-empty string/],
    [[0, 1, "m", "not-array"], /params is not an array/],
    [[0, 1, "m", [], "meta"], /meta is not a map/],
    [[0, 1, "m", [], { deadline: "soon" }], /deadline is not a number/],
    [[0, 1, "m", [], { id: 5 }], /id is not a string/],
    [[0, 1, "m"], /3 elements, expected 4 or 5/],
  ];
  for (const [message, reason] of cases) {
    const parsed = parseMessage(message);
    assert.equal(parsed.kind, "invalid-request", JSON.stringify(message));
    assert.match((parsed as { reason: string }).reason, reason);
    assert.equal((parsed as { msgid: number }).msgid, 1);
  }
});

test("parseMessage marks messages it cannot answer as malformed", () => {
  for (const message of [42, "x", {}, [], [9, 1], [0, -1, "m", []], [0, "1", "m", []], [0, 2 ** 32, "m", []], [1, 1, null], [2, 5, []]]) {
    assert.equal(parseMessage(message).kind, "malformed", JSON.stringify(message));
  }
});

test("parseMessage reads responses and notifications", () => {
  assert.deepEqual(parseMessage([1, 3, null, "ok"]), { kind: "response", msgid: 3, error: null, result: "ok", meta: undefined });
  // ebb's answer to an ebb client may carry the headers its handler set.
  assert.deepEqual(parseMessage([1, 3, null, "ok", { headers: { a: "b" } }]), { kind: "response", msgid: 3, error: null, result: "ok", meta: { headers: { a: "b" } } });
  assert.equal(parseMessage([1, 3, null, "ok", {}, 1]).kind, "malformed");
  assert.deepEqual(parseMessage([2, "$goaway", [{ reason: "draining" }]]), { kind: "notification", method: "$goaway", params: [{ reason: "draining" }] });
});
