/** Options of the adaptive concurrency limit (EBB_ADAPTIVE_CONCURRENCY). */
export interface AdaptiveLimitOptions {
  /** The limit at start. Default 20 (Netflix concurrency-limits' Gradient2). */
  initial?: number;
  /** Never below. Default 4. */
  min?: number;
  /** Never above: EBB_MAX_INFLIGHT, the hard ceiling. */
  max: number;
  /** Latency may rise this much over the unloaded latency before the limit falls. Default 1.2 (Gradient2 has 1.5; 1.2 kept p99 within 5x on Deno). */
  tolerance?: number;
  /** Share of a new estimate taken at each update. Default 0.2 (Gradient2's `smoothing`). */
  smoothing?: number;
  /** Shortest window of samples between updates. Default 100 ms. */
  windowMs?: number;
  /** Fewest samples in a window for an update. Default 10. */
  minSamples?: number;
}

const DEFAULTS = { initial: 20, min: 4, tolerance: 1.2, smoothing: 0.2, windowMs: 100, minSamples: 10 };
/** The unloaded latency is forgotten this much a window (about 35 s to double at 100 ms windows), so a lasting change of the work is learnt. */
const MIN_DRIFT = 1.002;
/** Latencies a window keeps for its 90th percentile (the latest ones). */
const WINDOW_SAMPLES = 256;
/** The same, while the limit is held at its floor. */
const FLOOR_DRIFT = 1.01;

/**
 * A concurrency limit that follows measured latency, as Envoy's adaptive concurrency filter and
 * Netflix's gradient limiters do: per window, the window's 90th-percentile latency is compared with
 * the unloaded latency (the least such figure seen, forgotten slowly: MIN_DRIFT); while it stays
 * within `tolerance` of it the limit grows by about half its square root (the queue it allows), and
 * when latency rises beyond it the limit shrinks by the ratio (a gradient of at least one half,
 * smoothed). An update while the node is not using half its limit does not grow it (app-limited:
 * spare capacity unused proves nothing). A handler whose latency grows with concurrency (CPU, a
 * saturated dependency) gets a limit near where it stops gaining throughput; one whose latency
 * does not (timers, a dependency with room) grows to the ceiling. Pure: callers pass the time.
 */
export class AdaptiveLimit {
  private readonly options: typeof DEFAULTS & { max: number };
  private current: number;
  private minMs = 0;
  private sumMs = 0;
  private samples = 0;
  private peakInflight = 0;
  private windowStart: number;
  /** The last window's mean latency: what a refused caller is told to wait (`retryAfterMs`). */
  shortMs = 0;
  /** The window's latest latencies (a ring of WINDOW_SAMPLES): its 90th percentile is what the limit follows. */
  private readonly recent = new Float64Array(WINDOW_SAMPLES);

  constructor(options: AdaptiveLimitOptions, now: number) {
    this.options = { ...DEFAULTS, ...options };
    const { initial, min, max, tolerance, smoothing, windowMs, minSamples } = this.options;
    if (!(min >= 1 && max >= min && initial >= 1 && tolerance >= 1 && smoothing > 0 && smoothing <= 1 && windowMs > 0 && minSamples >= 1)) {
      throw new RangeError(`adaptive limit: 1 <= min <= max, initial >= 1, tolerance >= 1, 0 < smoothing <= 1, windowMs > 0, minSamples >= 1; not ${JSON.stringify(options)}`);
    }
    this.current = Math.min(max, Math.max(min, initial));
    this.windowStart = now;
  }

  /** Calls admitted at once now. */
  get limit(): number {
    return Math.floor(this.current);
  }

  /** One call ran `ms` with `inflight` calls in flight when it ended (itself included). */
  sample(ms: number, inflight: number, now: number): void {
    this.sumMs += ms;
    this.recent[this.samples % WINDOW_SAMPLES] = ms;
    this.samples++;
    if (inflight > this.peakInflight) this.peakInflight = inflight;
    if (now - this.windowStart < this.options.windowMs || this.samples < this.options.minSamples) return;
    const kept = this.recent.slice(0, Math.min(this.samples, WINDOW_SAMPLES)).sort();
    this.update(this.sumMs / this.samples, kept[Math.ceil(kept.length * 0.9) - 1]!);
    this.sumMs = 0;
    this.samples = 0;
    this.peakInflight = 0;
    this.windowStart = now;
  }

  private update(meanMs: number, tailMs: number): void {
    const { min, max, tolerance, smoothing } = this.options;
    this.shortMs = meanMs;
    // The tail, not the mean: what callers of an overloaded node suffer first is its slowest calls.
    const shortMs = tailMs;
    // Held at the floor, the unloaded latency is forgotten faster (1% a window): either load is what
    // slows the calls, and the limit falls back after a few windows, or the work itself got slower (a
    // dependency), which is learnt in tens of seconds instead of minutes of drift.
    const drift = this.current < min + 1 ? FLOOR_DRIFT : MIN_DRIFT;
    this.minMs = this.minMs === 0 ? shortMs : Math.min(shortMs, this.minMs * drift);
    const gradient = Math.max(0.5, Math.min(1, (tolerance * this.minMs) / Math.max(shortMs, 1e-3)));
    const estimate = this.current * gradient + Math.sqrt(this.current) / 2;
    // App-limited: a node using less than half its limit has not shown it can take more.
    if (estimate > this.current && this.peakInflight < this.current / 2) return;
    this.current = Math.min(max, Math.max(min, this.current * (1 - smoothing) + estimate * smoothing));
  }
}
