/**
 * Lifeguard's local health awareness: a score from 0 (healthy) to `max`. A
 * member that misses nacks, has to refute suspicions about itself, or sees its
 * event loop lag is probably the slow one, so it stretches its own probe
 * interval and timeouts by (score + 1) instead of accusing others.
 */
export class Awareness {
  private current = 0;

  constructor(readonly max: number) {}

  get score(): number {
    return this.current;
  }

  /** Adds `delta` (negative to heal), clamped to [0, max]. */
  apply(delta: number): void {
    this.current = Math.min(this.max, Math.max(0, this.current + delta));
  }

  /** `ms` stretched by the current score. */
  scale(ms: number): number {
    return ms * (this.current + 1);
  }
}
