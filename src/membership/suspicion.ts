/**
 * Lifeguard's dynamic suspicion timeout: it starts at `maxMs` and shrinks
 * towards `minMs` as independent members confirm the suspicion, reaching it at
 * `k` confirmations: max(min, max - (max - min) * log(n + 1) / log(k + 1)).
 */
export function suspicionTimeoutMs(confirmations: number, k: number, minMs: number, maxMs: number): number {
  if (k < 1) return minMs;
  const frac = Math.log(confirmations + 1) / Math.log(k + 1);
  return Math.max(minMs, Math.floor(maxMs - frac * (maxMs - minMs)));
}

/** The time left on a suspicion that began `elapsedMs` ago with `confirmations` so far. */
export function remainingSuspicionMs(confirmations: number, k: number, elapsedMs: number, minMs: number, maxMs: number): number {
  return Math.max(0, suspicionTimeoutMs(confirmations, k, minMs, maxMs) - elapsedMs);
}

/** The base suspicion timeout for a cluster of `n`: mult * max(1, log10(n)) * probe interval (memberlist's formula). */
export function baseSuspicionMs(mult: number, n: number, probeIntervalMs: number): number {
  return Math.floor(mult * Math.max(1, Math.log10(Math.max(1, n))) * probeIntervalMs);
}

/** How many times an update is gossiped: mult * ceil(log10(n + 1)). */
export function retransmitLimit(mult: number, n: number): number {
  return mult * Math.ceil(Math.log10(n + 1));
}

/** One suspicion: who confirmed it, and when it began. The timer that uses it lives in the membership. */
export class Suspicion {
  private readonly accusers = new Set<string>();

  constructor(
    readonly startedAt: number,
    /** Confirmations that bring the timeout down to its minimum. */
    readonly k: number,
    readonly minMs: number,
    readonly maxMs: number,
    firstAccuser: string,
  ) {
    this.accusers.add(firstAccuser);
  }

  /** Independent confirmations beyond the first accuser. */
  get confirmations(): number {
    return this.accusers.size - 1;
  }

  /** Records an accuser; true when it is a new, independent confirmation. */
  confirm(accuser: string): boolean {
    if (this.accusers.has(accuser)) return false;
    this.accusers.add(accuser);
    return true;
  }

  /** Milliseconds left at `now`. */
  remainingMs(now: number): number {
    return remainingSuspicionMs(this.confirmations, this.k, now - this.startedAt, this.minMs, this.maxMs);
  }
}
