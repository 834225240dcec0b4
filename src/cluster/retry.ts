import type { ErrorCode } from "../wire/codes.ts";

/** Why a failed try is sent again to another node; the key of `ClusterClientMetrics.retries`. */
export type RetryReason = "baffled" | "overloaded" | "not ready" | "unprocessed" | "connection lost (idempotent)" | "attempt timed out (idempotent)";

/** What the retry policy knows of a failed try. */
export interface FailedTry {
  code: ErrorCode;
  /** What the node said of the call: false when it promised not to have run it; undefined when unknown. */
  processed: boolean | undefined;
  /** The method was declared idempotent. */
  idempotent: boolean;
  /** The client's `idempotentRetries` option. */
  idempotentRetries: boolean;
  /** The try ran out of its attempt timeout (`attemptTimeoutMs`), not of the call's deadline. */
  attemptTimedOut?: boolean;
}

/**
 * Codes that fail the same call the same way on every node, `processed: false` or not: the client's
 * own refusals before sending (headers past the bounds, an input msgpack cannot carry, a call
 * cancelled or out of time) and a node's verdict on the request itself.
 */
const SAME_EVERYWHERE: ReadonlySet<ErrorCode> = new Set(["INVALID_REQUEST", "INVALID_PARAMS", "CANCELLED", "DEADLINE_EXCEEDED"]);

/**
 * The retry policy: whatever a node promised it did not process goes to
 * another node at once; a call whose outcome is unknown (connection lost)
 * runs again only when its method is idempotent and the option allows it;
 * so does a try that outlived its attempt timeout with time left in the deadline.
 * Undefined: the caller sees the error.
 */
export function retryReason(failed: FailedTry): RetryReason | undefined {
  if (failed.processed === false && !SAME_EVERYWHERE.has(failed.code)) {
    if (failed.code === "SHUTTING_DOWN") return "baffled";
    if (failed.code === "OVERLOADED") return "overloaded";
    if (failed.code === "UNAVAILABLE") return "not ready";
    return "unprocessed";
  }
  if (!failed.idempotentRetries || !failed.idempotent) return undefined;
  if (failed.code === "UNAVAILABLE") return "connection lost (idempotent)";
  if (failed.code === "DEADLINE_EXCEEDED" && failed.attemptTimedOut) return "attempt timed out (idempotent)";
  return undefined;
}
