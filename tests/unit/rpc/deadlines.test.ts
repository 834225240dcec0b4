import { test } from "node:test";
import assert from "node:assert/strict";
import { type DeadlineClock, type DeadlineHandle, DeadlineWheel } from "../../../src/rpc/deadlines.ts";

/** Virtual time: timers fire only when the test advances the clock, in the order they are due. */
class ManualClock implements DeadlineClock {
  time = 0;
  /** Every delay a timer was armed with. */
  readonly delays: number[] = [];
  private timers: { at: number; seq: number; fn: () => void }[] = [];
  private seq = 0;

  now(): number {
    return this.time;
  }

  setTimer(ms: number, fn: () => void): DeadlineHandle {
    this.delays.push(ms);
    const timer = { at: this.time + ms, seq: this.seq++, fn };
    this.timers.push(timer);
    return { cancel: () => (this.timers = this.timers.filter((t) => t !== timer)) };
  }

  /** Moves time forward by `ms`, firing each timer due on the way at its own moment. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const next = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!next) break;
      this.timers = this.timers.filter((t) => t !== next);
      this.time = next.at;
      next.fn();
    }
    this.time = end;
  }
}

/** Schedules `ms` on the wheel; `elapsed` is the virtual time it took to fire (undefined until it does). */
function fired(wheel: DeadlineWheel, clock: ManualClock, ms: number): { elapsed(): number | undefined; handle: DeadlineHandle } {
  let elapsed: number | undefined;
  const started = clock.now();
  const handle = wheel.schedule(ms, () => (elapsed = clock.now() - started));
  return { elapsed: () => elapsed, handle };
}

test("the wheel fires each deadline no earlier than asked and at most one bucket late", () => {
  const clock = new ManualClock();
  clock.advance(3); // not on a bucket boundary
  const wheel = new DeadlineWheel(10, 0, clock);
  const asked = [40, 20, 60];
  const deadlines = asked.map((ms) => fired(wheel, clock, ms));
  clock.advance(100);
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
  clock.advance(100);
  assert.equal(later.elapsed(), 40);
  assert.equal(cancelledFired, false);
});

test("an earlier deadline added after a later one re-arms the wheel", () => {
  const clock = new ManualClock();
  const wheel = new DeadlineWheel(10, 0, clock);
  const order: number[] = [];
  wheel.schedule(80, () => order.push(80));
  wheel.schedule(20, () => order.push(20));
  clock.advance(20);
  assert.deepEqual(order, [20]);
  clock.advance(60);
  assert.deepEqual(order, [20, 80]);
});

test("short deadlines take a precise timer of their own", () => {
  const clock = new ManualClock();
  clock.advance(7);
  const wheel = new DeadlineWheel(1_000, 500, clock);
  const short = fired(wheel, clock, 15);
  clock.advance(15);
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
  clock.advance(100);
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
