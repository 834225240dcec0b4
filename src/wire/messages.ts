import type { ErrorCode } from "./codes.ts";

/** msgpack-rpc message types. Append-only. */
export const REQUEST = 0;
export const RESPONSE = 1;
export const NOTIFICATION = 2;

/** The optional fifth element of a request, sent by ebb clients. */
export interface RequestMeta {
  /** Milliseconds the caller will still wait for the answer. */
  deadline?: number;
  /** Request id, for idempotency and tracing. */
  id?: string;
}

/** The error object of a response. */
export interface WireError {
  code: ErrorCode | string;
  message: string;
  /** `false` promises that no handler ran: the call is safe to send to any node again. */
  processed?: boolean;
  data?: unknown;
}

export type RequestMessage = [typeof REQUEST, number, string, unknown[]] | [typeof REQUEST, number, string, unknown[], RequestMeta];
export type ResponseMessage = [typeof RESPONSE, number, WireError | null, unknown];
export type NotificationMessage = [typeof NOTIFICATION, string, unknown[]];
export type Message = RequestMessage | ResponseMessage | NotificationMessage;

/** A decoded message, checked against the msgpack-rpc shapes. */
export type Parsed =
  | { kind: "request"; msgid: number; method: string; params: unknown[]; meta: RequestMeta | undefined }
  | { kind: "response"; msgid: number; error: unknown; result: unknown }
  | { kind: "notification"; method: string; params: unknown[] }
  /** A request with a bad shape whose msgid could be read: answer INVALID_REQUEST. */
  | { kind: "invalid-request"; msgid: number; reason: string }
  /** Not a msgpack-rpc message at all: close the connection. */
  | { kind: "malformed"; reason: string };

/** True for a msgid msgpack-rpc allows: a 32-bit unsigned integer. */
export function isMsgid(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 0xffff_ffff;
}

/** Checks a decoded value against the msgpack-rpc message shapes. */
export function parseMessage(value: unknown): Parsed {
  if (!Array.isArray(value)) return { kind: "malformed", reason: "message is not an array" };
  switch (value[0]) {
    case REQUEST:
      return parseRequest(value);
    case RESPONSE:
      if (value.length !== 4 || !isMsgid(value[1])) return { kind: "malformed", reason: "response is not [1, msgid, error, result]" };
      return { kind: "response", msgid: value[1], error: value[2], result: value[3] };
    case NOTIFICATION:
      if (value.length !== 3 || typeof value[1] !== "string" || !Array.isArray(value[2])) {
        return { kind: "malformed", reason: "notification is not [2, method, params]" };
      }
      return { kind: "notification", method: value[1], params: value[2] };
    default:
      return { kind: "malformed", reason: `unknown message type ${JSON.stringify(value[0]) ?? String(value[0])}` };
  }
}

function parseRequest(value: unknown[]): Parsed {
  const msgid = value[1];
  if (!isMsgid(msgid)) return { kind: "malformed", reason: "request msgid is not a 32-bit unsigned integer" };
  if (value.length !== 4 && value.length !== 5) {
    return { kind: "invalid-request", msgid, reason: `Request has ${value.length} elements, expected 4 or 5` };
  }
  const method = value[2];
  if (typeof method !== "string" || method.length === 0) {
    return { kind: "invalid-request", msgid, reason: "Request method is not a non-empty string" };
  }
  const params = value[3];
  if (!Array.isArray(params)) return { kind: "invalid-request", msgid, reason: "Request params is not an array" };
  const meta = value[4];
  if (meta === undefined || meta === null) return { kind: "request", msgid, method, params, meta: undefined };
  if (typeof meta !== "object" || Array.isArray(meta) || meta instanceof Uint8Array) {
    return { kind: "invalid-request", msgid, reason: "Request meta is not a map" };
  }
  const { deadline, id } = meta as Record<string, unknown>;
  if (deadline !== undefined && (typeof deadline !== "number" || !Number.isFinite(deadline))) {
    return { kind: "invalid-request", msgid, reason: "Request meta.deadline is not a number of milliseconds" };
  }
  if (id !== undefined && typeof id !== "string") {
    return { kind: "invalid-request", msgid, reason: "Request meta.id is not a string" };
  }
  return { kind: "request", msgid, method, params, meta: { deadline, id } };
}
