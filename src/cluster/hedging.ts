/** Options of hedged calls (`ClusterClientOptions.hedging`), gRPC's hedging policy (A6) in spirit. */
export interface HedgingOptions {
  /** Hedges at most per call, besides the first try. Default 1. */
  maxHedges?: number;
  /** A fixed delay before each hedge. Default: the method's observed latency at `quantile`, at least `floorMs`. */
  delayMs?: number;
  /** The least delay a method's observed latency gives. Default 5 ms. */
  floorMs?: number;
  /** The quantile of a method's answered calls that sets its delay. Default 0.95. */
  quantile?: number;
}

export const DEFAULT_HEDGING: Required<Omit<HedgingOptions, "delayMs">> = { maxHedges: 1, floorMs: 5, quantile: 0.95 };

/** Latencies kept per method: the last this many answered calls. */
const SAMPLES = 256;
/** Answered calls a method needs before its delay is known (until then its calls are not hedged), and between recomputations. */
const EVERY = 32;
/** Most methods tracked (a generic client may call many): past it, new methods keep no latencies and use the fixed delay or none. */
const MAX_METHODS = 1_024;

class MethodLatency {
  readonly samples = new Float64Array(SAMPLES);
  count = 0;
  delay: number | undefined;
}

/**
 * Per method, the latency of its answered calls over the last SAMPLES, and the hedge delay it gives:
 * their `quantile` (recomputed every EVERY answers), at least `floorMs`.
 */
export class LatencyTracker {
  private readonly methods = new Map<string, MethodLatency>();

  constructor(private readonly quantile: number, private readonly floorMs: number) {}

  record(method: string, ms: number): void {
    let latency = this.methods.get(method);
    if (!latency) {
      if (this.methods.size >= MAX_METHODS) return;
      latency = new MethodLatency();
      this.methods.set(method, latency);
    }
    latency.samples[latency.count % SAMPLES] = ms;
    latency.count++;
    if (latency.count % EVERY !== 0) return;
    const sorted = latency.samples.slice(0, Math.min(latency.count, SAMPLES)).sort();
    const at = sorted[Math.min(sorted.length - 1, Math.ceil(this.quantile * sorted.length) - 1)]!;
    latency.delay = Math.max(this.floorMs, at);
  }

  /** The hedge delay of `method`, once enough of its calls were answered. */
  delay(method: string): number | undefined {
    return this.methods.get(method)?.delay;
  }
}
