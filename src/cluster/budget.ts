/** Options of a client's retry budget (`ClusterClientOptions.retryBudget`). */
export interface RetryBudgetOptions {
  /** Retries and hedges may add this share of the calls made in the window. Default 0.1 (gRPC's retry throttling `tokenRatio`). */
  ratio?: number;
  /** And this many a second besides, so that a client making few calls can still retry. Default 10 (Finagle's `minRetriesPerSec`). */
  minPerSecond?: number;
  /** The window calls and retries are counted over. Default 10 s (Finagle's budget `ttl`). */
  windowMs?: number;
}

export const DEFAULT_RETRY_BUDGET: Required<RetryBudgetOptions> = { ratio: 0.1, minPerSecond: 10, windowMs: 10_000 };

/** The window is counted in this many slots: a slot's counts leave it whole, windowMs / SLOTS late at most. */
const SLOTS = 10;

/**
 * A retry budget, Finagle's in spirit: over a sliding window, retries may number at most
 * `ratio` of the calls made plus `minPerSecond` a second. Each call deposits; each retry or hedge
 * withdraws, or is refused when the budget is spent, and the caller then gets the error it had.
 * So a cluster where every node refuses (OVERLOADED everywhere) gets about 1 + ratio sends per
 * call, not one per node, exactly when it is drowning. Pure but for the clock.
 */
export class RetryBudget {
  private readonly slotMs: number;
  private readonly calls = new Float64Array(SLOTS);
  private readonly retries = new Float64Array(SLOTS);
  private callSum = 0;
  private retrySum = 0;
  private current: number;
  readonly ratio: number;
  /** Retries the window allows whatever the calls. */
  readonly floor: number;

  constructor(options: RetryBudgetOptions, private readonly now: () => number) {
    const { ratio, minPerSecond, windowMs } = { ...DEFAULT_RETRY_BUDGET, ...options };
    if (!(ratio >= 0) || !(minPerSecond >= 0) || !(windowMs > 0)) throw new RangeError(`retryBudget: ratio and minPerSecond must be 0 or more and windowMs above 0, not ${JSON.stringify(options)}`);
    this.ratio = ratio;
    this.floor = (minPerSecond * windowMs) / 1_000;
    this.slotMs = windowMs / SLOTS;
    this.current = Math.floor(now() / this.slotMs);
  }

  /** A call was made. */
  deposit(): void {
    this.advance();
    this.calls[this.current % SLOTS]!++;
    this.callSum++;
  }

  /** Takes one retry (or hedge) from the budget; false when it is spent. */
  tryWithdraw(): boolean {
    this.advance();
    if (this.retrySum + 1 > this.ratio * this.callSum + this.floor) return false;
    this.retries[this.current % SLOTS]!++;
    this.retrySum++;
    return true;
  }

  /** Calls and retries in the window, for metrics and tests. */
  get counts(): { calls: number; retries: number } {
    this.advance();
    return { calls: this.callSum, retries: this.retrySum };
  }

  /** Empties the slots that slid out of the window since the last look. */
  private advance(): void {
    const slot = Math.floor(this.now() / this.slotMs);
    if (slot <= this.current) return;
    const steps = Math.min(SLOTS, slot - this.current);
    for (let k = 1; k <= steps; k++) {
      const i = (this.current + k) % SLOTS;
      this.callSum -= this.calls[i]!;
      this.retrySum -= this.retries[i]!;
      this.calls[i] = 0;
      this.retries[i] = 0;
    }
    this.current = slot;
  }
}
