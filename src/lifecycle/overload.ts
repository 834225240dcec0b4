import { RpcError } from "../rpc/errors.ts";
import type { AdaptiveLimit } from "./adaptive.ts";
import type { InflightCounter } from "./inflight.ts";

/** The longest `retryAfterMs` a refusal suggests. */
const MAX_RETRY_AFTER_MS = 1_000;

/**
 * Admission past the node's limit: EBB_MAX_INFLIGHT, or with EBB_ADAPTIVE_CONCURRENCY the adaptive
 * limit under it. A request past it is refused OVERLOADED, unprocessed, so the caller tries another
 * node; an adaptive refusal carries a pushback hint, `retryAfterMs` (the recent call latency), for
 * which the caller's client leaves this node out.
 */
export class InflightLimit {
  /** Requests refused OVERLOADED since start. */
  refused = 0;

  /** `limit` 0 admits everything (but the adaptive limit, when there is one). */
  constructor(
    private readonly nodeId: string,
    private readonly limit: number,
    private readonly inflight: Pick<InflightCounter, "count">,
    private readonly adaptive?: AdaptiveLimit,
  ) {}

  /** The limit now: the adaptive one, or the fixed one (0: none). */
  get current(): number {
    return this.adaptive ? this.adaptive.limit : this.limit;
  }

  /** The refusal when the node is at its limit; undefined admits. */
  check(): RpcError | undefined {
    const { count } = this.inflight;
    const limit = this.current;
    if (limit === 0 || count < limit) return undefined;
    this.refused++;
    if (!this.adaptive) {
      return new RpcError(`Node ${this.nodeId} has ${count} requests in flight, its limit (EBB_MAX_INFLIGHT)`, "OVERLOADED", { data: { inflight: count, limit } });
    }
    const retryAfterMs = Math.min(MAX_RETRY_AFTER_MS, Math.max(1, Math.round(this.adaptive.shortMs)));
    return new RpcError(`Node ${this.nodeId} has ${count} requests in flight, its adaptive limit (EBB_ADAPTIVE_CONCURRENCY)`, "OVERLOADED", { data: { inflight: count, limit, retryAfterMs, node: this.nodeId } });
  }

  /** A call that ran answered after `ms`: a latency sample for the adaptive limit. */
  observe(ms: number): void {
    this.adaptive?.sample(ms, this.inflight.count, performance.now());
  }
}
