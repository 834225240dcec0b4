/**
 * The closed set of error codes on the wire.
 *
 * Append-only: a code, once shipped, keeps its name and meaning forever.
 */
export const ErrorCodes = [
  "INVALID_REQUEST",
  "METHOD_NOT_FOUND",
  "INVALID_PARAMS",
  "SHUTTING_DOWN",
  "OVERLOADED",
  "DEADLINE_EXCEEDED",
  "CANCELLED",
  "UNAUTHENTICATED",
  "UNAVAILABLE",
  "INTERNAL",
  "APPLICATION",
] as const;

/** One of the wire's error codes. */
export type ErrorCode = (typeof ErrorCodes)[number];

const known: ReadonlySet<string> = new Set(ErrorCodes);

/** True when `value` names one of the wire's error codes. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && known.has(value);
}

/** Codes whose answer promises that no handler ran, so any node may be asked again. */
export const UNPROCESSED_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(["SHUTTING_DOWN", "OVERLOADED"]);
