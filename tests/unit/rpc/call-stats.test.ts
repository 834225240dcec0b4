import { test } from "node:test";
import assert from "node:assert/strict";
import { CallStats, DURATION_BUCKETS_SECONDS } from "../../../src/rpc/call-stats.ts";

test("call stats count answers by code and place each duration in the first bucket whose bound it does not exceed", () => {
  const stats = new CallStats();
  stats.record("svc.m", "OK", 0.0004);
  stats.record("svc.m", "OK", 0.001); // on a bound: that bucket (le means less or equal)
  stats.record("svc.m", "INVALID_PARAMS", 0.02);
  stats.record("svc.m", "OK", 42); // beyond the last bound: only +Inf
  const m = stats.methods.get("svc.m")!;
  assert.deepEqual(Object.fromEntries(m.codes), { OK: 3, INVALID_PARAMS: 1 });
  assert.equal(m.count, 4);
  assert.ok(Math.abs(m.sumSeconds - 42.0214) < 1e-9);
  const cumulative = new Map(CallStats.cumulative(m));
  assert.equal(cumulative.size, DURATION_BUCKETS_SECONDS.length + 1);
  assert.equal(cumulative.get("0.0005"), 1);
  assert.equal(cumulative.get("0.001"), 2);
  assert.equal(cumulative.get("0.01"), 2);
  assert.equal(cumulative.get("0.025"), 3);
  assert.equal(cumulative.get("10"), 3);
  assert.equal(cumulative.get("+Inf"), 4);
});

test("a run of calls with one duration is recorded at once, as that many single calls would be", () => {
  const together = new CallStats();
  const apart = new CallStats();
  together.record("svc.m", "OK", 0.002, 5);
  for (let i = 0; i < 5; i++) apart.record("svc.m", "OK", 0.002);
  const [a, b] = [together.methods.get("svc.m")!, apart.methods.get("svc.m")!];
  assert.deepEqual([...a.codes], [["OK", 5]]);
  assert.deepEqual([a.count, a.sumSeconds, [...a.buckets]], [b.count, b.sumSeconds, [...b.buckets]]);
});
