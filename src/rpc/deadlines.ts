import { type Clock, realClock, type TimerHandle } from "../runtime/clock.ts";

/** A scheduled deadline; cancel it when the call settles first. */
export type DeadlineHandle = TimerHandle;

/** Resolution of the shared wheel: long deadlines fire up to this much late. */
export const WHEEL_RESOLUTION_MS = 25;
/** Deadlines shorter than this get their own precise timer. */
export const WHEEL_MIN_MS = 1_000;

/**
 * One deadline on the wheel. A caller that has an object per call already (the channel's pending
 * call) extends this and is itself the entry: no wrapper and no closure per call. Entries of one
 * bucket form an intrusive doubly linked list, so arming and cancelling cost no hashing.
 */
export abstract class Deadline implements DeadlineHandle {
  /** @internal */ bucket: Bucket | undefined = undefined;
  /** @internal */ prev: Deadline | undefined = undefined;
  /** @internal */ next: Deadline | undefined = undefined;
  /** @internal A precise timer of its own (deadlines shorter than the wheel's minimum). */
  timer: TimerHandle | undefined = undefined;

  /** Runs when the deadline passes, unless cancelled before. */
  abstract fire(): void;

  cancel(): void {
    const bucket = this.bucket;
    if (bucket) {
      this.bucket = undefined;
      if (this.prev) this.prev.next = this.next;
      else bucket.head = this.next;
      if (this.next) this.next.prev = this.prev;
      this.prev = this.next = undefined;
      if (bucket.head === undefined) bucket.wheel.dropBucket(bucket);
    } else if (this.timer) {
      this.timer.cancel();
      this.timer = undefined;
    }
  }
}

/** @internal The deadlines due in one slot of the wheel. */
interface Bucket {
  readonly key: number;
  readonly wheel: DeadlineWheel;
  head: Deadline | undefined;
}

/** `schedule`'s entry: a deadline that calls a function. */
class CallbackDeadline extends Deadline {
  constructor(private readonly callback: () => void) {
    super();
  }

  fire(): void {
    this.callback();
  }
}

/**
 * The longest the wheel's one timer sleeps before it looks again. Its deadlines may have been
 * cancelled meanwhile: a timer armed for nothing would keep a process alive (a script whose last
 * call settled would exit 30 s later), so an emptied wheel lets go within this. Also well under
 * the 2^31 - 1 ms a `setTimeout` takes (above it, runtimes fire at once).
 */
const MAX_SLEEP_MS = 1_000;

/**
 * Deadlines for many calls on one timer. Every call carries a deadline, and a
 * timer per call costs about 1.7 µs to set and clear on Deno (0.1 µs on Bun):
 * long deadlines share coarse buckets instead, each removed in O(1) when its call
 * settles, and one real timer is armed for the earliest bucket.
 */
export class DeadlineWheel {
  constructor(
    /** Bucket width: long deadlines fire up to this much late. */
    readonly resolutionMs = WHEEL_RESOLUTION_MS,
    /** Deadlines shorter than this get a precise timer of their own. */
    readonly minMs = WHEEL_MIN_MS,
    private readonly clock: Clock = realClock,
  ) {}

  private readonly buckets = new Map<number, Bucket>();
  private timer: DeadlineHandle | undefined;
  private armedKey = Infinity;

  /** Calls `fire` after `ms` (long deadlines up to WHEEL_RESOLUTION_MS late) unless cancelled. */
  schedule(ms: number, fire: () => void): DeadlineHandle {
    const entry = new CallbackDeadline(fire);
    this.arm(entry, ms);
    return entry;
  }

  /** Arms `entry` to fire after `ms`, as `schedule` does; `entry.cancel()` disarms it. An entry is armed once. */
  arm(entry: Deadline, ms: number): void {
    if (ms < this.minMs) {
      entry.timer = this.clock.setTimer(ms, () => entry.fire());
      return;
    }
    const key = Math.ceil((this.clock.now() + ms) / this.resolutionMs);
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = { key, wheel: this, head: undefined };
      this.buckets.set(key, bucket);
      if (key < this.armedKey) this.wake(key);
    }
    entry.bucket = bucket;
    entry.next = bucket.head;
    if (bucket.head) bucket.head.prev = entry;
    bucket.head = entry;
  }

  /** @internal An emptied bucket leaves the wheel; its timer, if armed, finds nothing and re-arms if other buckets are left. */
  dropBucket(bucket: Bucket): void {
    if (this.buckets.get(bucket.key) === bucket) this.buckets.delete(bucket.key);
  }

  private wake(key: number): void {
    this.timer?.cancel();
    this.armedKey = key;
    // A later deadline wakes after MAX_SLEEP_MS and re-arms; cancelling the timer whenever the wheel
    // empties instead would cost a timer per call to a caller making one call at a time.
    this.timer = this.clock.setTimer(Math.min(MAX_SLEEP_MS, Math.max(0, key * this.resolutionMs - this.clock.now())), () => this.tick());
  }

  private tick(): void {
    this.timer = undefined;
    this.armedKey = Infinity;
    const now = this.clock.now();
    let next = Infinity;
    const due: Bucket[] = [];
    for (const [key, bucket] of this.buckets) {
      if (key * this.resolutionMs <= now) {
        due.push(bucket);
        this.buckets.delete(key);
      } else if (key < next) {
        next = key;
      }
    }
    if (next !== Infinity) this.wake(next);
    for (const bucket of due) {
      // Taken from the head one at a time: an entry cancelled by one that fires before it is unlinked, and never fires.
      for (let entry = bucket.head; entry; entry = bucket.head) {
        bucket.head = entry.next;
        if (entry.next) entry.next.prev = undefined;
        entry.bucket = entry.next = undefined;
        entry.fire();
      }
    }
  }
}

/** The process-wide wheel used by clients and servers. */
export const deadlines = new DeadlineWheel();
