import { test } from "node:test";
import assert from "node:assert/strict";
import { baseSuspicionMs, remainingSuspicionMs, retransmitLimit, Suspicion, suspicionTimeoutMs } from "../../../src/membership/suspicion.ts";

test("the suspicion timeout shrinks from max to min as confirmations reach k", () => {
  const table: [confirmations: number, k: number, expectedMs: number][] = [
    [0, 3, 60_000],
    [1, 3, 60_000 - Math.floor((Math.log(2) / Math.log(4)) * 50_000)],
    [2, 3, 60_000 - Math.floor((Math.log(3) / Math.log(4)) * 50_000)],
    [3, 3, 10_000],
    [9, 3, 10_000],
    [0, 0, 10_000],
  ];
  for (const [n, k, expected] of table) {
    assert.ok(Math.abs(suspicionTimeoutMs(n, k, 10_000, 60_000) - expected) <= 1, `n=${n} k=${k}: ${suspicionTimeoutMs(n, k, 10_000, 60_000)} vs ${expected}`);
  }
});

test("remaining time subtracts what has elapsed and never goes negative", () => {
  assert.equal(remainingSuspicionMs(0, 3, 5_000, 10_000, 60_000), 55_000);
  assert.equal(remainingSuspicionMs(3, 3, 5_000, 10_000, 60_000), 5_000);
  assert.equal(remainingSuspicionMs(3, 3, 50_000, 10_000, 60_000), 0);
});

test("the base timeout and retransmit limit follow memberlist's formulas", () => {
  assert.equal(baseSuspicionMs(4, 1, 1_000), 4_000);
  assert.equal(baseSuspicionMs(4, 10, 1_000), 4_000);
  assert.equal(baseSuspicionMs(4, 1_000, 1_000), 12_000);
  assert.equal(retransmitLimit(4, 1), 4);
  assert.equal(retransmitLimit(4, 9), 4);
  assert.equal(retransmitLimit(4, 10), 8);
  assert.equal(retransmitLimit(4, 1_000), 16);
});

test("a suspicion counts each accuser once", () => {
  const suspicion = new Suspicion(0, 2, 1_000, 6_000, "a");
  assert.equal(suspicion.confirm("a"), false);
  assert.equal(suspicion.confirm("b"), true);
  assert.equal(suspicion.confirm("b"), false);
  assert.equal(suspicion.confirmations, 1);
  assert.equal(suspicion.confirm("c"), true);
  assert.equal(suspicion.remainingMs(0), 1_000);
});
