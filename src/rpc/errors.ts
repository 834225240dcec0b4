import { type ErrorCode, ErrorCodes, isErrorCode, UNPROCESSED_CODES } from "../wire/codes.ts";
import type { WireError } from "../wire/messages.ts";

/** Options of an `RpcError`. */
export interface RpcErrorOptions {
  data?: unknown;
  cause?: unknown;
  /** Defaults to `false` for the codes that promise no handler ran, unset otherwise. */
  processed?: boolean;
}

/**
 * The one error class of ebb, with a code from the wire's closed set.
 *
 * The code is part of the message (`[SHUTTING_DOWN] node n1 is draining`)
 * because tools often show only the message.
 */
export class RpcError extends Error {
  override readonly name = "RpcError";
  readonly code: ErrorCode;
  /** The message without the code prefix, as sent on the wire. */
  readonly rawMessage: string;
  readonly data: unknown;
  /** `false` promises that no handler ran; `undefined` means it may have. */
  readonly processed: boolean | undefined;

  constructor(message: string, code: ErrorCode, options: RpcErrorOptions = {}) {
    // A type error in TypeScript; from JavaScript (or past a cast) a clear one here, not an INTERNAL "unknown code" later.
    if (!isErrorCode(code)) {
      throw new TypeError(
        isErrorCode(message)
          ? `new RpcError(message, code): the message comes first: new RpcError(${JSON.stringify(String(code))}, "${message}")`
          : `new RpcError(message, code): ${JSON.stringify(code)} is not an error code (${ErrorCodes.join(", ")})`,
      );
    }
    super(`[${code}] ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.rawMessage = message;
    this.data = options.data;
    this.processed = options.processed ?? (UNPROCESSED_CODES.has(code) ? false : undefined);
  }

  /** Turns anything thrown into an `RpcError`; what is not one already becomes `fallback`. */
  static from(reason: unknown, fallback: ErrorCode = "INTERNAL"): RpcError {
    if (reason instanceof RpcError) return reason;
    if (reason instanceof Error) {
      if (reason.name === "AbortError" || reason.name === "TimeoutError") {
        return new RpcError(reason.message, reason.name === "TimeoutError" ? "DEADLINE_EXCEEDED" : "CANCELLED", { cause: reason });
      }
      return new RpcError(reason.message, fallback, { cause: reason });
    }
    return new RpcError(String(reason), fallback, { cause: reason });
  }

  /** Rebuilds an error from a response's error object; an unknown shape becomes INTERNAL. */
  static fromWire(error: unknown): RpcError {
    if (typeof error === "object" && error !== null && !Array.isArray(error)) {
      const { code, message, processed, data } = error as Record<string, unknown>;
      const text = typeof message === "string" ? message : "Error without a message";
      if (isErrorCode(code)) {
        return new RpcError(text, code, { data, processed: typeof processed === "boolean" ? processed : undefined });
      }
      return new RpcError(`${text} (unknown code ${JSON.stringify(code)})`, "INTERNAL", { data });
    }
    // Other msgpack-rpc servers send a bare string or any value as the error.
    return new RpcError(typeof error === "string" ? error : JSON.stringify(error) ?? String(error), "APPLICATION", { data: error });
  }

  /** The error object sent in a response. */
  toWire(): WireError {
    const wire: WireError = { code: this.code, message: this.rawMessage };
    if (this.processed !== undefined) wire.processed = this.processed;
    if (this.data !== undefined) wire.data = this.data;
    return wire;
  }
}
