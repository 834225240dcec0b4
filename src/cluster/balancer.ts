/** What the balancer needs to know about a node. */
export interface Weighted {
  /** Calls this client has in flight to the node. */
  readonly inflight: number;
  /** Client-local time the node was first seen ready (undefined: not ready). */
  readonly readySince: number | undefined;
}

/** Default window over which cluster clients ramp a newly ready node's share of calls (EBB_WARMUP_MS). */
export const DEFAULT_WARMUP_MS = 10_000;

/** Warm-up: a node's weight rises linearly from `floor` to 1 over `warmupMs` from when this client first saw it ready. */
export function warmupWeight(readySince: number, now: number, warmupMs: number, floor: number): number {
  if (warmupMs <= 0) return 1;
  const progress = Math.min(1, Math.max(0, (now - readySince) / warmupMs));
  return floor + (1 - floor) * progress;
}

/** In-flight counts closer than this are noise (a call or so in transit), not load: the first draw stands. */
export const INFLIGHT_SLACK = 2;

/**
 * Power of two choices with weights: two distinct candidates drawn with
 * probability proportional to weight; when their in-flight counts differ by
 * at least INFLIGHT_SLACK, the one with less load per unit of weight wins
 * (load = calls in flight + 1), otherwise the first draw. So under light load a node's share is
 * its weight over the sum of weights (the warm-up ramp holds), and a node that
 * really falls behind is avoided.
 */
export function pickTwoChoices<T extends Weighted>(candidates: readonly T[], weightOf: (c: T) => number, random: () => number = Math.random): T | undefined {
  if (candidates.length <= 1) return candidates[0];
  const weights = candidates.map(weightOf);
  const first = drawWeighted(weights, random, -1);
  const second = drawWeighted(weights, random, first);
  const a = candidates[first]!;
  const b = candidates[second]!;
  if (Math.abs(a.inflight - b.inflight) < INFLIGHT_SLACK) return a;
  // (in flight + 1) / weight, as Envoy's weighted least request: a node in warm-up with nothing
  // in flight does not win over a warm one with a call or two, only over one that falls behind.
  return (b.inflight + 1) / weights[second]! < (a.inflight + 1) / weights[first]! ? b : a;
}

function drawWeighted(weights: number[], random: () => number, exclude: number): number {
  let total = 0;
  for (let i = 0; i < weights.length; i++) if (i !== exclude) total += weights[i]!;
  let point = random() * total;
  for (let i = 0; i < weights.length; i++) {
    if (i === exclude) continue;
    point -= weights[i]!;
    if (point < 0) return i;
  }
  // Rounding: the last eligible index.
  for (let i = weights.length - 1; i >= 0; i--) if (i !== exclude) return i;
  return 0;
}
