import { test } from "node:test";
import assert from "node:assert/strict";
import { DeadlineWheel } from "../../../src/rpc/deadlines.ts";

function fired(wheel: DeadlineWheel, ms: number): { at: Promise<number>; handle: { cancel(): void } } {
  let resolve!: (elapsed: number) => void;
  const at = new Promise<number>((r) => (resolve = r));
  const started = Date.now();
  const handle = wheel.schedule(ms, () => resolve(Date.now() - started));
  return { at, handle };
}

test("the wheel fires each deadline no earlier than asked and at most one bucket late", async () => {
  const wheel = new DeadlineWheel(10, 0);
  const asked = [40, 20, 60];
  const results = await Promise.all(asked.map((ms) => fired(wheel, ms).at));
  results.forEach((elapsed, i) => {
    const ms = asked[i]!;
    assert.ok(elapsed >= ms - 1, `fired after ${elapsed} ms, asked ${ms}`);
    assert.ok(elapsed < ms + 200, `fired after ${elapsed} ms, asked ${ms}`);
  });
});

test("a cancelled deadline never fires, and its neighbours still do", async () => {
  const wheel = new DeadlineWheel(10, 0);
  let cancelledFired = false;
  const cancelled = wheel.schedule(20, () => (cancelledFired = true));
  const later = fired(wheel, 40);
  cancelled.cancel();
  await later.at;
  assert.equal(cancelledFired, false);
});

test("an earlier deadline added after a later one re-arms the wheel", async () => {
  const wheel = new DeadlineWheel(10, 0);
  const order: number[] = [];
  const done = new Promise<void>((resolve) => {
    wheel.schedule(80, () => {
      order.push(80);
      resolve();
    });
    wheel.schedule(20, () => order.push(20));
  });
  await done;
  assert.deepEqual(order, [20, 80]);
});

test("short deadlines take a precise timer of their own", async () => {
  const wheel = new DeadlineWheel(1_000, 500);
  const elapsed = await fired(wheel, 15).at;
  assert.ok(elapsed < 500, `a 15 ms deadline fired after ${elapsed} ms`);
});

test("a deadline beyond what a timer can hold (a hostile meta.deadline of 2^32 ms) arms one timer, not a 1 ms spin", async () => {
  const wheel = new DeadlineWheel(25, 10);
  const realSetTimeout = globalThis.setTimeout;
  const delays: number[] = [];
  // Count the wheel's timers: an overflowed delay fires at once and re-arms, over and over.
  globalThis.setTimeout = ((fn: () => void, ms?: number) => (delays.push(ms ?? 0), realSetTimeout(fn, ms))) as typeof setTimeout;
  let far: { cancel(): void } | undefined;
  try {
    let early = false;
    far = wheel.schedule(2 ** 32, () => (early = true));
    const near = fired(wheel, 60);
    await near.at;
    assert.equal(early, false);
  } finally {
    globalThis.setTimeout = realSetTimeout;
    far?.cancel();
  }
  assert.ok(delays.every((ms) => ms <= 2 ** 31 - 1), `delays ${delays.slice(0, 5).join(", ")}`);
  assert.ok(delays.length <= 4, `${delays.length} timers armed`);
});
