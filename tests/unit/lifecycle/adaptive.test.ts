import { test } from "node:test";
import assert from "node:assert/strict";
import { AdaptiveLimit } from "../../../src/lifecycle/adaptive.ts";

// The adaptive concurrency limit (issue 16, item 4), driven window by window on virtual time.

/** Feeds `windows` windows of 10 samples (the fewest an update takes) of `ms` each, at `inflight` in flight; returns the limit after. */
function feed(limit: AdaptiveLimit, clock: { now: number }, windows: number, ms: number, inflight: (limit: number) => number): number {
  for (let w = 0; w < windows; w++) {
    clock.now += 100;
    for (let i = 0; i < 10; i++) limit.sample(ms, inflight(limit.limit), clock.now);
  }
  return limit.limit;
}

test("adaptive limit: steady latency with the node busy grows the limit toward the ceiling", () => {
  const clock = { now: 0 };
  const limit = new AdaptiveLimit({ max: 200 }, clock.now);
  assert.equal(limit.limit, 20);
  const grown = feed(limit, clock, 50, 10, (l) => l);
  assert.ok(grown > 40, `grew to ${grown}`);
  assert.ok(feed(limit, clock, 500, 10, (l) => l) === 200, "reaches the ceiling, never beyond");
});

test("adaptive limit: latency rising past the tolerance shrinks it, a smoothed step an update; a lasting rise becomes the new normal in time", () => {
  const clock = { now: 0 };
  const limit = new AdaptiveLimit({ max: 1_000, initial: 100 }, clock.now);
  feed(limit, clock, 20, 10, (l) => l);
  const before = limit.limit;
  const after = feed(limit, clock, 1, 40, (l) => l);
  assert.ok(after < before, `${after} < ${before}`);
  assert.ok(after >= before * 0.5 * 0.2 + before * 0.8 - 1, "one update moves a smoothed step");
  const fallen = feed(limit, clock, 4, 40, (l) => l);
  assert.ok(fallen < before * 0.75, `${fallen} after 5 slow windows, from ${before}`);
  // Slow for good (a dependency got slower): the long-run average follows and the limit grows again, within its bounds.
  const settled = feed(limit, clock, 800, 40, (l) => l);
  assert.ok(settled > fallen && settled <= 1_000, `${settled}`);
});

test("adaptive limit: a node using less than half its limit does not grow it (app-limited); a slow spell's end lets it grow again at once", () => {
  const clock = { now: 0 };
  const limit = new AdaptiveLimit({ max: 1_000 }, clock.now);
  assert.equal(feed(limit, clock, 50, 10, () => 3), 20);
  // A slow spell shrinks it; when latency falls back the long-run average follows, and it grows.
  const low = feed(limit, clock, 5, 100, (l) => l);
  assert.ok(low < 20, `${low}`);
  assert.ok(feed(limit, clock, 10, 10, (l) => l) > low);
});

test("adaptive limit: bad options are refused", () => {
  assert.throws(() => new AdaptiveLimit({ max: 0 }, 0), RangeError);
  assert.throws(() => new AdaptiveLimit({ max: 10, tolerance: 0.5 }, 0), RangeError);
});
