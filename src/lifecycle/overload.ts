import { RpcError } from "../rpc/errors.ts";
import type { InflightCounter } from "./inflight.ts";

/** EBB_MAX_INFLIGHT: past the limit, a new request is refused unprocessed, so the caller tries another node. */
export class InflightLimit {
  /** Requests refused OVERLOADED since start. */
  refused = 0;

  /** `limit` 0 admits everything. */
  constructor(private readonly nodeId: string, private readonly limit: number, private readonly inflight: Pick<InflightCounter, "count">) {}

  /** The refusal when the node is at its limit; undefined admits. */
  check(): RpcError | undefined {
    const { count } = this.inflight;
    if (this.limit === 0 || count < this.limit) return undefined;
    this.refused++;
    return new RpcError(`Node ${this.nodeId} has ${count} requests in flight, its limit (EBB_MAX_INFLIGHT)`, "OVERLOADED", {
      data: { inflight: count, limit: this.limit },
    });
  }
}
