import type { ErrorCode } from "../wire/codes.ts";

/** Options of a client's outlier ejection (`ClusterClientOptions.outlierEjection`), Envoy's outlier detection. */
export interface OutlierOptions {
  /** Node faults in a row that eject a node. Default 5 (Envoy's `consecutive_5xx`). */
  consecutiveFailures?: number;
  /** First ejection's length; the nth lasts n times this, up to `maxEjectionMs`. Default 10 s. */
  baseEjectionMs?: number;
  /** Longest ejection. Default 5 min (Envoy's `max_ejection_time`). */
  maxEjectionMs?: number;
  /** Most nodes ejected at once, as a share of the nodes known. Default 0.5. */
  maxEjectedShare?: number;
}

export const DEFAULT_OUTLIER_EJECTION: Required<OutlierOptions> = { consecutiveFailures: 5, baseEjectionMs: 10_000, maxEjectionMs: 300_000, maxEjectedShare: 0.5 };

/** What outlier ejection keeps of a node. */
export interface OutlierState {
  /** Node faults in a row. */
  faults: number;
  /** Ejected until this client-local time (0: not ejected). */
  ejectedUntil: number;
  /** Times ejected: the next ejection lasts one base longer. */
  ejections: number;
}

/**
 * Answers that speak of the node rather than the request: its handler failed unexpectedly
 * (INTERNAL), the call's outcome is unknown or the connection was lost (UNAVAILABLE without
 * `processed: false`), or it ran out of time there (DEADLINE_EXCEEDED). An application's own
 * error, bad input or a refusal the node promised it did not process say nothing against it.
 */
export function isNodeFault(code: ErrorCode, processed: boolean | undefined): boolean {
  if (processed === false) return false;
  return code === "INTERNAL" || code === "UNAVAILABLE" || code === "DEADLINE_EXCEEDED";
}

/**
 * Outlier ejection: a node whose calls fail with node faults `consecutiveFailures` times in a row is
 * left out of this client's picks for a growing interval, never more than `maxEjectedShare` of the
 * nodes at once; it comes back through the warm-up ramp (the caller restarts its warm-up at the
 * ejection's end). Membership stays the judge of liveness: this is the client's own view of a node
 * that is alive but failing (a bad deploy, a broken dependency). Pure: the caller passes `now`.
 */
export class OutlierDetector {
  readonly options: Required<OutlierOptions>;

  constructor(options: OutlierOptions = {}) {
    this.options = { ...DEFAULT_OUTLIER_EJECTION, ...options };
    const { consecutiveFailures, baseEjectionMs, maxEjectionMs, maxEjectedShare } = this.options;
    if (!(consecutiveFailures >= 1) || !(baseEjectionMs > 0) || !(maxEjectionMs >= baseEjectionMs) || !(maxEjectedShare >= 0 && maxEjectedShare <= 1)) {
      throw new RangeError(`outlierEjection: consecutiveFailures at least 1, baseEjectionMs above 0, maxEjectionMs at least baseEjectionMs, maxEjectedShare from 0 to 1; not ${JSON.stringify(options)}`);
    }
  }

  /** True while `state`'s node is ejected. */
  ejected(state: OutlierState, now: number): boolean {
    return state.ejectedUntil > now;
  }

  /**
   * Records one answer of the node. Returns the end of a new ejection when this answer ejects it
   * (`ejectedNow` is how many of `total` nodes are ejected already), else undefined.
   */
  record(state: OutlierState, fault: boolean, now: number, ejectedNow: number, total: number): number | undefined {
    if (!fault) {
      state.faults = 0;
      return undefined;
    }
    if (++state.faults < this.options.consecutiveFailures || this.ejected(state, now)) return undefined;
    if (ejectedNow + 1 > Math.floor(this.options.maxEjectedShare * total)) return undefined;
    state.faults = 0;
    state.ejections++;
    state.ejectedUntil = now + Math.min(this.options.maxEjectionMs, this.options.baseEjectionMs * state.ejections);
    return state.ejectedUntil;
  }
}
