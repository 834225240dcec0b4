import { type Clock, realClock, type TimerHandle } from "../runtime/clock.ts";

/** A scheduled deadline; cancel it when the call settles first. */
export type DeadlineHandle = TimerHandle;

/** Resolution of the shared wheel: long deadlines fire up to this much late. */
export const WHEEL_RESOLUTION_MS = 25;
/** Deadlines shorter than this get their own precise timer. */
export const WHEEL_MIN_MS = 1_000;

class WheelEntry implements DeadlineHandle {
  constructor(
    readonly fire: () => void,
    readonly bucket: Set<WheelEntry>,
    readonly key: number,
    private readonly wheel: DeadlineWheel,
  ) {}

  cancel(): void {
    if (this.bucket.delete(this) && this.bucket.size === 0) this.wheel.dropBucket(this.key);
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

  private readonly buckets = new Map<number, Set<WheelEntry>>();
  private timer: DeadlineHandle | undefined;
  private armedKey = Infinity;

  /** Calls `fire` after `ms` (long deadlines up to WHEEL_RESOLUTION_MS late) unless cancelled. */
  schedule(ms: number, fire: () => void): DeadlineHandle {
    if (ms < this.minMs) return this.clock.setTimer(ms, fire);
    const key = Math.ceil((this.clock.now() + ms) / this.resolutionMs);
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = new Set();
      this.buckets.set(key, bucket);
      if (key < this.armedKey) this.arm(key);
    }
    const entry = new WheelEntry(fire, bucket, key, this);
    bucket.add(entry);
    return entry;
  }

  /** @internal An emptied bucket leaves the wheel; its timer, if armed, finds nothing and re-arms if other buckets are left. */
  dropBucket(key: number): void {
    this.buckets.delete(key);
  }

  private arm(key: number): void {
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
    const due: Set<WheelEntry>[] = [];
    for (const [key, bucket] of this.buckets) {
      if (key * this.resolutionMs <= now) {
        due.push(bucket);
        this.buckets.delete(key);
      } else if (key < next) {
        next = key;
      }
    }
    if (next !== Infinity) this.arm(next);
    for (const bucket of due) for (const entry of bucket) entry.fire();
  }
}

/** The process-wide wheel used by clients and servers. */
export const deadlines = new DeadlineWheel();
