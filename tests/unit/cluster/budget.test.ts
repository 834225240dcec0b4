import { test } from "node:test";
import assert from "node:assert/strict";
import { RetryBudget } from "../../../src/cluster/budget.ts";
import { isNodeFault, OutlierDetector, type OutlierState } from "../../../src/cluster/outliers.ts";
import { LatencyTracker } from "../../../src/cluster/hedging.ts";

test("retry budget: retries may number the ratio of calls plus the floor over the window, and the window slides", () => {
  let now = 0;
  const budget = new RetryBudget({ ratio: 0.1, minPerSecond: 1, windowMs: 10_000 }, () => now);
  assert.equal(budget.floor, 10);
  // No calls yet: the floor alone.
  let granted = 0;
  while (budget.tryWithdraw()) granted++;
  assert.equal(granted, 10);
  // 100 calls add 10 more.
  for (let i = 0; i < 100; i++) budget.deposit();
  granted = 0;
  while (budget.tryWithdraw()) granted++;
  assert.equal(granted, 10);
  assert.deepEqual(budget.counts, { calls: 100, retries: 20 });
  // Half a window later nothing has left it.
  now = 5_000;
  assert.equal(budget.tryWithdraw(), false);
  // A whole window later everything has: the floor is back.
  now = 10_000;
  assert.deepEqual(budget.counts, { calls: 0, retries: 0 });
  assert.equal(budget.tryWithdraw(), true);
  // Far later (more than a window of slots skipped at once): still clean.
  now = 1_000_000;
  assert.deepEqual(budget.counts, { calls: 0, retries: 0 });
});

test("retry budget: partial expiry by slot, and bad options are refused", () => {
  let now = 0;
  const budget = new RetryBudget({ ratio: 1, minPerSecond: 0, windowMs: 1_000 }, () => now);
  for (let i = 0; i < 5; i++) budget.deposit(); // slot 0
  now = 500;
  for (let i = 0; i < 5; i++) budget.deposit(); // slot 5
  assert.equal(budget.counts.calls, 10);
  now = 1_000; // slot 0 left the window
  assert.equal(budget.counts.calls, 5);
  now = 1_500; // slot 5 too
  assert.equal(budget.counts.calls, 0);
  assert.throws(() => new RetryBudget({ ratio: -1 }, () => 0), RangeError);
  assert.throws(() => new RetryBudget({ windowMs: 0 }, () => 0), RangeError);
});

test("outliers: node faults are INTERNAL, UNAVAILABLE and DEADLINE_EXCEEDED unless processed: false", () => {
  assert.equal(isNodeFault("INTERNAL", undefined), true);
  assert.equal(isNodeFault("UNAVAILABLE", undefined), true);
  assert.equal(isNodeFault("DEADLINE_EXCEEDED", undefined), true);
  assert.equal(isNodeFault("UNAVAILABLE", false), false);
  assert.equal(isNodeFault("OVERLOADED", false), false);
  assert.equal(isNodeFault("APPLICATION", undefined), false);
  assert.equal(isNodeFault("INVALID_PARAMS", undefined), false);
});

test("outliers: a node is ejected after consecutive faults, for a growing interval, within the share", () => {
  const detector = new OutlierDetector({ consecutiveFailures: 3, baseEjectionMs: 1_000, maxEjectionMs: 2_500, maxEjectedShare: 0.5 });
  const state: OutlierState = { faults: 0, ejectedUntil: 0, ejections: 0 };
  // A success in between clears the count.
  assert.equal(detector.record(state, true, 0, 0, 4), undefined);
  assert.equal(detector.record(state, true, 0, 0, 4), undefined);
  assert.equal(detector.record(state, false, 0, 0, 4), undefined);
  assert.equal(detector.record(state, true, 0, 0, 4), undefined);
  assert.equal(detector.record(state, true, 0, 0, 4), undefined);
  assert.equal(detector.record(state, true, 10, 0, 4), 1_010);
  assert.equal(detector.ejected(state, 1_009), true);
  assert.equal(detector.ejected(state, 1_010), false);
  // Second ejection: twice as long; third: capped at maxEjectionMs.
  for (let i = 0; i < 2; i++) detector.record(state, true, 2_000, 0, 4);
  assert.equal(detector.record(state, true, 2_000, 0, 4), 4_000);
  for (let i = 0; i < 2; i++) detector.record(state, true, 5_000, 0, 4);
  assert.equal(detector.record(state, true, 5_000, 0, 4), 7_500);
  // The share: with 2 of 4 ejected already, a third is not; with 1 node, never.
  const other: OutlierState = { faults: 0, ejectedUntil: 0, ejections: 0 };
  for (let i = 0; i < 2; i++) detector.record(other, true, 0, 2, 4);
  assert.equal(detector.record(other, true, 0, 2, 4), undefined);
  const only: OutlierState = { faults: 0, ejectedUntil: 0, ejections: 0 };
  for (let i = 0; i < 10; i++) assert.equal(detector.record(only, true, 0, 0, 1), undefined);
  assert.throws(() => new OutlierDetector({ maxEjectedShare: 2 }), RangeError);
});

test("hedge delay: unknown until 32 answers, then their quantile over the last 256, at least the floor", () => {
  const tracker = new LatencyTracker(0.95, 5);
  for (let i = 0; i < 31; i++) tracker.record("m", 10);
  assert.equal(tracker.delay("m"), undefined);
  tracker.record("m", 10);
  assert.equal(tracker.delay("m"), 10);
  // 256 answers of 1..256 ms: the 95th percentile is 244 ms.
  for (let i = 1; i <= 256; i++) tracker.record("m", i);
  assert.equal(tracker.delay("m"), 244);
  // Fast answers: the floor.
  for (let i = 0; i < 256; i++) tracker.record("m", 1);
  assert.equal(tracker.delay("m"), 5);
  assert.equal(tracker.delay("other"), undefined);
});
