/** Upper bounds of the call duration buckets in seconds (Prometheus `le`), 0.5 ms to 10 s. Append-only once shipped. */
export const DURATION_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** What one method's calls came to: answers by code, and a histogram of how long they took. */
export interface MethodStats {
  /** Answers by code, `OK` for success. */
  readonly codes: Map<string, number>;
  /** Calls per bucket of DURATION_BUCKETS_SECONDS (not cumulative); the last slot counts what took longer than 10 s. */
  readonly buckets: Float64Array;
  sumSeconds: number;
  count: number;
}

/**
 * Answers and durations of service calls by method, for `/metrics`: from the
 * moment a request reached dispatch to its answer, refusals (baffle, limits,
 * validation) included, as gRPC's handling-time histogram counts them.
 */
export class CallStats {
  readonly methods = new Map<string, MethodStats>();

  /** Records `calls` answered calls (one by default) that each took `seconds`. */
  record(method: string, code: string, seconds: number, calls = 1): void {
    let stats = this.methods.get(method);
    if (!stats) {
      stats = { codes: new Map(), buckets: new Float64Array(DURATION_BUCKETS_SECONDS.length + 1), sumSeconds: 0, count: 0 };
      this.methods.set(method, stats);
    }
    stats.codes.set(code, (stats.codes.get(code) ?? 0) + calls);
    let bucket = 0;
    while (bucket < DURATION_BUCKETS_SECONDS.length && seconds > DURATION_BUCKETS_SECONDS[bucket]!) bucket++;
    stats.buckets[bucket]! += calls;
    stats.sumSeconds += seconds * calls;
    stats.count += calls;
  }

  /** The histogram of `stats` as Prometheus wants it: cumulative counts by `le` bound, `+Inf` last. */
  static cumulative(stats: MethodStats): [le: string, count: number][] {
    const out: [string, number][] = [];
    let running = 0;
    for (let i = 0; i < stats.buckets.length; i++) {
      running += stats.buckets[i]!;
      out.push([i < DURATION_BUCKETS_SECONDS.length ? String(DURATION_BUCKETS_SECONDS[i]) : "+Inf", running]);
    }
    return out;
  }
}
