import type { Clock, TimerHandle } from "../../src/runtime/clock.ts";

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * Virtual time for code that mixes timers and promises: `advance` runs each due
 * timer in time order and lets the promise callbacks it started run before the
 * next one, so an `await` chain sees the same order it would in real time.
 */
export class ManualClock implements Clock {
  private time = 0;
  private seq = 0;
  private timers: Timer[] = [];
  /** Every delay a timer was armed with. */
  readonly delays: number[] = [];

  now(): number {
    return this.time;
  }

  setTimer(ms: number, fn: () => void): TimerHandle {
    this.delays.push(ms);
    const timer: Timer = { at: this.time + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => (timer.cancelled = true) };
  }

  /** Timers armed and not yet run or cancelled. */
  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** Moves time forward by `ms`, running due timers in order and settling promises after each. */
  async advance(ms: number): Promise<void> {
    const until = this.time + ms;
    await settle();
    while (this.runNext(until)) await settle();
    this.time = until;
    await settle();
  }

  /** Moves time forward by `ms`, running due timers in order, for code without promises. */
  tick(ms: number): void {
    const until = this.time + ms;
    while (this.runNext(until));
    this.time = until;
  }

  /** Runs the next timer due by `until`, at its own moment; false when none is. */
  private runNext(until: number): boolean {
    this.timers = this.timers.filter((t) => !t.cancelled);
    const next = this.timers.reduce<Timer | undefined>((a, t) => (!a || t.at < a.at || (t.at === a.at && t.seq < a.seq) ? t : a), undefined);
    if (!next || next.at > until) return false;
    this.timers.splice(this.timers.indexOf(next), 1);
    this.time = next.at;
    next.fn();
    return true;
  }
}

/** Lets every promise callback already queued, and those they queue, run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await Promise.resolve();
}
