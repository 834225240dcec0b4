import { test } from "node:test";
import assert from "node:assert/strict";
import { Deadline, type DeadlineHandle, DeadlineWheel, disarm, type WheelEntry } from "../../../src/rpc/deadlines.ts";
import { ManualClock } from "../../helpers/clock.ts";

/** Schedules `ms` on the wheel; `elapsed` is the virtual time it took to fire (undefined until it does). */
function fired(wheel: DeadlineWheel, clock: ManualClock, ms: number): { elapsed(): number | undefined; handle: DeadlineHandle } {
  let elapsed: number | undefined;
  const started = clock.now();
  const handle = wheel.schedule(ms, () => (elapsed = clock.now() - started));
  return { elapsed: () => elapsed, handle };
}

test("the wheel fires each deadline no earlier than asked and at most one bucket late", () => {
  const clock = new ManualClock();
  clock.tick(3); // not on a bucket boundary
  const wheel = new DeadlineWheel(10, 0, clock);
  const asked = [40, 20, 60];
  const deadlines = asked.map((ms) => fired(wheel, clock, ms));
  clock.tick(100);
  deadlines.forEach((deadline, i) => {
    const ms = asked[i]!;
    const elapsed = deadline.elapsed();
    assert.ok(elapsed !== undefined, `asked ${ms}, never fired`);
    assert.ok(elapsed >= ms, `fired after ${elapsed} ms, asked ${ms}`);
    assert.ok(elapsed <= ms + 10, `fired after ${elapsed} ms, asked ${ms}`);
  });
});

test("a cancelled deadline never fires, and its neighbours still do", () => {
  const clock = new ManualClock();
  const wheel = new DeadlineWheel(10, 0, clock);
  let cancelledFired = false;
  const cancelled = wheel.schedule(20, () => (cancelledFired = true));
  const later = fired(wheel, clock, 40);
  cancelled.cancel();
  clock.tick(100);
  assert.equal(later.elapsed(), 40);
  assert.equal(cancelledFired, false);
});

test("an earlier deadline added after a later one re-arms the wheel", () => {
  const clock = new ManualClock();
  const wheel = new DeadlineWheel(10, 0, clock);
  const order: number[] = [];
  wheel.schedule(80, () => order.push(80));
  wheel.schedule(20, () => order.push(20));
  clock.tick(20);
  assert.deepEqual(order, [20]);
  clock.tick(60);
  assert.deepEqual(order, [20, 80]);
});

test("short deadlines take a precise timer of their own", () => {
  const clock = new ManualClock();
  clock.tick(7);
  const wheel = new DeadlineWheel(1_000, 500, clock);
  const short = fired(wheel, clock, 15);
  clock.tick(15);
  const elapsed = short.elapsed();
  assert.ok(elapsed !== undefined && elapsed < 500, `a 15 ms deadline fired after ${elapsed} ms`);
  assert.equal(elapsed, 15);
});

test("a deadline beyond what a timer can hold (a hostile meta.deadline of 2^32 ms) arms one timer, not a 1 ms spin", () => {
  const clock = new ManualClock();
  const wheel = new DeadlineWheel(25, 10, clock);
  let early = false;
  const far = wheel.schedule(2 ** 32, () => (early = true));
  const near = fired(wheel, clock, 60);
  clock.tick(100);
  assert.ok(near.elapsed() !== undefined);
  assert.equal(early, false);
  far.cancel();
  // An overflowed delay would fire at once and re-arm, over and over.
  assert.ok(clock.delays.every((ms) => ms <= 2 ** 31 - 1), `delays ${clock.delays.slice(0, 5).join(", ")}`);
  assert.ok(clock.delays.length <= 4, `${clock.delays.length} timers armed`);
});

test("by default the wheel runs on the real clock", async () => {
  const wheel = new DeadlineWheel(10, 0);
  const started = Date.now();
  const elapsed = await new Promise<number>((resolve) => wheel.schedule(20, () => resolve(Date.now() - started)));
  assert.ok(elapsed >= 19, `fired after ${elapsed} ms, asked 20`);
});

test("a wheel whose deadlines were all cancelled lets its timer go within a second: it keeps no process alive", () => {
  const clock = new ManualClock();
  const wheel = new DeadlineWheel(25, 10, clock);
  const handles = [30_000, 30_000, 45_000].map((ms) => wheel.schedule(ms, () => assert.fail("cancelled, yet fired")));
  for (const handle of handles) handle.cancel();
  clock.tick(1_000);
  assert.equal(clock.pending, 0);
  assert.ok(clock.delays.every((ms) => ms <= 1_000), `delays ${clock.delays.join(", ")}`);
});

test("a long deadline fires on time though the wheel's timer wakes every second", () => {
  const clock = new ManualClock();
  const wheel = new DeadlineWheel(25, 10, clock);
  const far = fired(wheel, clock, 60_000);
  clock.tick(60_100);
  const elapsed = far.elapsed();
  assert.ok(elapsed !== undefined && elapsed >= 60_000 && elapsed <= 60_025, `fired after ${elapsed} ms, asked 60,000`);
});

test("a deadline cancelled by one that fires before it in the same bucket never fires", () => {
  const clock = new ManualClock();
  const wheel = new DeadlineWheel(10, 0, clock);
  const fired: string[] = [];
  let second: DeadlineHandle | undefined;
  // Both land in one bucket; whichever fires first cancels the other.
  const first = wheel.schedule(20, () => {
    fired.push("first");
    second!.cancel();
  });
  second = wheel.schedule(21, () => {
    fired.push("second");
    first.cancel();
  });
  clock.tick(40);
  assert.equal(fired.length, 1, `fired: ${fired.join(", ")}`);
  // Cancelling what fired already, or twice, does nothing.
  first.cancel();
  second.cancel();
  clock.tick(40);
  assert.equal(fired.length, 1);
});

test("an object extending Deadline is its own wheel entry", () => {
  const clock = new ManualClock();
  const wheel = new DeadlineWheel(10, 0, clock);
  class Call extends Deadline {
    firedAt: number | undefined;
    fire(): void {
      this.firedAt = clock.now();
    }
  }
  const calls = [30, 30, 50, 70].map((ms) => {
    const call = new Call();
    wheel.arm(call, ms);
    return call;
  });
  calls[1]!.cancel();
  calls[3]!.cancel();
  clock.tick(100);
  assert.deepEqual(calls.map((call) => call.firedAt), [30, undefined, 50, undefined]);
});

test("an object holding the entry's fields is its own entry; entries armed on one clock reading share a bucket, one emptied and dropped is never reused", () => {
  const clock = new ManualClock();
  const wheel = new DeadlineWheel(10, 0, clock);
  class Call implements WheelEntry {
    bucket: WheelEntry["bucket"] = undefined;
    prev: WheelEntry | undefined = undefined;
    next: WheelEntry | undefined = undefined;
    timer: WheelEntry["timer"] = undefined;
    firedAt: number | undefined;
    fire(): void {
      this.firedAt = clock.now();
    }
    cancel(): void {
      disarm(this);
    }
  }
  const now = wheel.now();
  const first = [new Call(), new Call()];
  for (const call of first) wheel.arm(call, 30, now);
  assert.equal(first[0]!.bucket, first[1]!.bucket);
  // Both cancelled: their bucket leaves the wheel. The next entry due in the same slot gets a new one, and fires.
  for (const call of first) call.cancel();
  const later = new Call();
  wheel.arm(later, 30, now);
  assert.notEqual(later.bucket, first[0]!.bucket);
  disarm(later); // twice is nothing
  later.cancel();
  const last = new Call();
  wheel.arm(last, 30, now);
  clock.tick(100);
  assert.deepEqual([...first, later, last].map((call) => call.firedAt), [undefined, undefined, undefined, 30]);
});
