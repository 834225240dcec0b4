/**
 * Counts requests in flight, RPC and HTTP alike: `enter()` before a handler
 * starts, `leave()` in its `finally`. `idle()` resolves the moment the count
 * reaches zero: a promise, no polling.
 */
export class InflightCounter {
  private current = 0;
  private waiters: (() => void)[] = [];
  /** Handler entries since start. */
  entered = 0;

  /** Requests in flight now. */
  get count(): number {
    return this.current;
  }

  enter(): void {
    this.current++;
    this.entered++;
  }

  leave(): void {
    if (this.current === 0) throw new Error("InflightCounter.leave() without a matching enter()");
    this.current--;
    if (this.current === 0 && this.waiters.length > 0) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** Resolves when nothing is in flight (at once if nothing is). */
  idle(): Promise<void> {
    if (this.current === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
