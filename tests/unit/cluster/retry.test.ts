import { test } from "node:test";
import assert from "node:assert/strict";
import { retryReason } from "../../../src/cluster/retry.ts";
import type { ErrorCode } from "../../../src/wire/codes.ts";

// code, processed, idempotent, idempotentRetries -> reason (undefined: the caller sees the error)
const table: [ErrorCode, boolean | undefined, boolean, boolean, string | undefined][] = [
  ["SHUTTING_DOWN", false, false, true, "baffled"],
  ["SHUTTING_DOWN", false, true, false, "baffled"],
  ["OVERLOADED", false, false, true, "overloaded"],
  ["UNAVAILABLE", false, false, false, "not ready"],
  ["INTERNAL", false, false, true, "unprocessed"],
  // Unprocessed, but the same call would fail the same way on any node (the client's own refusals before sending).
  ["DEADLINE_EXCEEDED", false, true, true, undefined],
  ["CANCELLED", false, true, true, undefined],
  ["INVALID_REQUEST", false, true, true, undefined],
  ["INVALID_PARAMS", false, true, true, undefined],
  // Outcome unknown: only an idempotent method, and only when the option allows it.
  ["UNAVAILABLE", undefined, true, true, "connection lost (idempotent)"],
  ["UNAVAILABLE", true, true, true, "connection lost (idempotent)"],
  ["UNAVAILABLE", undefined, false, true, undefined],
  ["UNAVAILABLE", undefined, true, false, undefined],
  ["SHUTTING_DOWN", undefined, true, true, undefined],
  ["SHUTTING_DOWN", true, false, true, undefined],
  ["OVERLOADED", undefined, true, true, undefined],
  ["INTERNAL", undefined, true, true, undefined],
  ["DEADLINE_EXCEEDED", undefined, true, true, undefined],
  ["INVALID_PARAMS", true, true, true, undefined],
  ["APPLICATION", undefined, true, true, undefined],
  ["METHOD_NOT_FOUND", false, false, false, "unprocessed"],
];

test("retry policy: code x processed x idempotent x option", () => {
  for (const [code, processed, idempotent, idempotentRetries, expected] of table) {
    assert.equal(retryReason({ code, processed, idempotent, idempotentRetries }), expected, JSON.stringify({ code, processed, idempotent, idempotentRetries }));
  }
});
