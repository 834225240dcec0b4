/** Buckets per power of two: values are kept within 1/64 (1.6%) of what was recorded. */
const SUB = 64;
const BUCKETS = 40 * SUB;

/**
 * A latency histogram in microseconds with log-linear buckets (HdrHistogram's
 * layout, fixed precision): constant memory and O(1) recording, for load
 * generators that make millions of calls.
 */
export class Histogram {
  private readonly counts = new Float64Array(BUCKETS);
  count = 0;
  sum = 0;
  max = 0;

  /** Records one value in milliseconds. */
  record(ms: number): void {
    const us = Math.min(0xffff_ffff, Math.max(0, Math.round(ms * 1_000)));
    this.counts[bucketOf(us)]!++;
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  /** The value at quantile `q` (0..1) in milliseconds; 0 when empty. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.max, middleOf(i) / 1_000);
    }
    return this.max;
  }

  mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }

  /** Adds another histogram's values to this one. */
  add(other: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.count += other.count;
    this.sum += other.sum;
    this.max = Math.max(this.max, other.max);
  }
}

function bucketOf(us: number): number {
  if (us < 2 * SUB) return us;
  const shift = 31 - Math.clz32(us) - 6;
  return shift * SUB + (us >>> shift);
}

/** The middle of bucket `i`'s range, in microseconds. */
function middleOf(i: number): number {
  if (i < 2 * SUB) return i;
  const shift = Math.floor(i / SUB) - 1;
  const low = (i - shift * SUB) * 2 ** shift;
  return low + (2 ** shift - 1) / 2;
}
