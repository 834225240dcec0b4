import type { ErrorCode } from "./codes.ts";

/** msgpack-rpc message types. Append-only. */
export const REQUEST = 0;
export const RESPONSE = 1;
export const NOTIFICATION = 2;

/** Call metadata: string values by lower-case name (see checkHeaders for the bounds). */
export type CallHeaders = Readonly<Record<string, string>>;

/** The optional fifth element of a request, sent by ebb clients. */
export interface RequestMeta {
  /** Milliseconds the caller will still wait for the answer. */
  deadline?: number;
  /** Request id, for idempotency and tracing. */
  id?: string;
  /** The caller's metadata. */
  headers?: CallHeaders;
  /** W3C trace context of the caller's span: `00-<trace id>-<span id>-<flags>`. */
  traceparent?: string;
  /** W3C `tracestate`, passed on as it came. */
  tracestate?: string;
}

/** The optional fifth element of a response: sent only to a caller whose request had a meta (an ebb client). */
export interface ResponseMeta {
  /** Metadata the handler or an interceptor set. */
  headers?: CallHeaders;
}

/** Most headers one call or one answer carries. */
export const MAX_HEADERS = 64;
/** Most characters in one call's or one answer's headers, names and values together (gRPC's default metadata bound is 8 KiB). */
export const MAX_HEADER_CHARS = 8_192;
/** A header name: lower case, as HTTP/2 sends them, and usable as an HTTP header after the gateway's prefix. */
const HEADER_NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
/** A header value: printable ASCII and space, as gRPC's ASCII metadata, so it travels unchanged as an HTTP header value too. */
const HEADER_VALUE = /^[\x20-\x7e]*$/;

/** What is wrong with `value` as a headers map, or undefined when it is one within the bounds. */
export function checkHeaders(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof Uint8Array) return "headers are not a map of strings";
  let count = 0;
  let chars = 0;
  for (const name in value) {
    if (!Object.hasOwn(value, name)) continue;
    if (++count > MAX_HEADERS) return `more than ${MAX_HEADERS} headers`;
    if (!HEADER_NAME.test(name)) return `header name ${JSON.stringify(name.slice(0, 80))} is not 1 to 64 of a-z 0-9 . _ - (lower case, starting with a letter or digit)`;
    const text = (value as Record<string, unknown>)[name];
    if (typeof text !== "string") return `header "${name}" is not a string`;
    chars += name.length + text.length;
    if (chars > MAX_HEADER_CHARS) return `headers are longer than ${MAX_HEADER_CHARS} characters, names and values together`;
    if (!HEADER_VALUE.test(text)) return `header "${name}" holds a character other than printable ASCII and space`;
  }
  return undefined;
}

/** What a `tracestate` may hold: printable ASCII (W3C's list-members are narrower still; this keeps it safe to pass on). */
const TRACESTATE = /^[\x20-\x7e]*$/;

/** `tracestate` if it may be passed on: printable ASCII, at most MAX_TRACESTATE_CHARS; else undefined (dropped). */
export function checkedTracestate(value: string | undefined): string | undefined {
  return value !== undefined && value.length <= MAX_TRACESTATE_CHARS && TRACESTATE.test(value) ? value : undefined;
}

/** W3C trace context's `traceparent`, version 00 (later versions are read as 00, as the spec says). */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
/** Longest `tracestate` passed on (W3C: at least 512 characters must be propagated; longer may be cut). */
export const MAX_TRACESTATE_CHARS = 512;

/** A parsed `traceparent`. */
export interface TraceParent {
  traceId: string;
  /** The caller's span. */
  spanId: string;
  /** trace-flags: bit 0 is "sampled". */
  flags: number;
}

/** Parses a `traceparent`; undefined for anything W3C says to ignore (then a new trace starts). */
export function parseTraceparent(value: string | undefined): TraceParent | undefined {
  if (value === undefined || value.length > 512) return undefined;
  const match = TRACEPARENT.exec(value);
  if (!match) return undefined;
  const [, version, traceId, spanId, flags, rest] = match as unknown as [string, string, string, string, string, string | undefined];
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, flags: parseInt(flags, 16) };
}

/** A `traceparent` header for a span. */
export function formatTraceparent(traceId: string, spanId: string, flags: number): string {
  return `00-${traceId}-${spanId}-${(flags & 0xff).toString(16).padStart(2, "0")}`;
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
export type ResponseMessage = [typeof RESPONSE, number, WireError | null, unknown] | [typeof RESPONSE, number, WireError | null, unknown, ResponseMeta];
export type NotificationMessage = [typeof NOTIFICATION, string, unknown[]];
export type Message = RequestMessage | ResponseMessage | NotificationMessage;

/** A decoded message, checked against the msgpack-rpc shapes. */
export type Parsed =
  | { kind: "request"; msgid: number; method: string; params: unknown[]; meta: RequestMeta | undefined }
  /** `meta` is unchecked: the receiver checks what it reads (checkHeaders). */
  | { kind: "response"; msgid: number; error: unknown; result: unknown; meta: unknown }
  | { kind: "notification"; method: string; params: unknown[] }
  /** A request with a bad shape whose msgid could be read: answer INVALID_REQUEST. */
  | { kind: "invalid-request"; msgid: number; reason: string }
  /** Not a msgpack-rpc message at all: close the connection. */
  | { kind: "malformed"; reason: string };

/** True for a msgid msgpack-rpc allows: a 32-bit unsigned integer. */
export function isMsgid(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 0xffff_ffff;
}

/** True for a decoded response (`[1, msgid, error, result]`, meta optional): the one check parseMessage makes of responses, for readers that take them in place. */
export function isResponse(value: unknown): value is [typeof RESPONSE, number, unknown, unknown, unknown?] {
  return Array.isArray(value) && value[0] === RESPONSE && (value.length === 4 || value.length === 5) && isMsgid(value[1]);
}

/** Checks a decoded value against the msgpack-rpc message shapes. */
export function parseMessage(value: unknown): Parsed {
  if (!Array.isArray(value)) return { kind: "malformed", reason: "message is not an array" };
  switch (value[0]) {
    case REQUEST:
      return parseRequest(value);
    case RESPONSE:
      if (!isResponse(value)) return { kind: "malformed", reason: "response is not [1, msgid, error, result] or [1, msgid, error, result, meta]" };
      return { kind: "response", msgid: value[1], error: value[2], result: value[3], meta: value[4] };
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
  const { deadline, id, headers, traceparent, tracestate } = meta as Record<string, unknown>;
  if (deadline !== undefined && (typeof deadline !== "number" || !Number.isFinite(deadline))) {
    return { kind: "invalid-request", msgid, reason: "Request meta.deadline is not a number of milliseconds" };
  }
  if (id !== undefined && typeof id !== "string") {
    return { kind: "invalid-request", msgid, reason: "Request meta.id is not a string" };
  }
  if (headers === undefined && traceparent === undefined && tracestate === undefined) return { kind: "request", msgid, method, params, meta: { deadline, id } };
  if (headers !== undefined) {
    const problem = checkHeaders(headers);
    if (problem) return { kind: "invalid-request", msgid, reason: `Request meta.headers: ${problem}` };
  }
  if (traceparent !== undefined && typeof traceparent !== "string") return { kind: "invalid-request", msgid, reason: "Request meta.traceparent is not a string" };
  if (tracestate !== undefined && typeof tracestate !== "string") return { kind: "invalid-request", msgid, reason: "Request meta.tracestate is not a string" };
  // Without a prototype: a header named like an Object method is absent unless sent.
  const checked: RequestMeta = { deadline, id, headers: headers === undefined ? undefined : Object.assign(Object.create(null), headers) as CallHeaders };
  // W3C trace context: a traceparent that does not parse is ignored (a new trace starts), and its tracestate with it.
  if (parseTraceparent(traceparent) !== undefined) {
    checked.traceparent = traceparent;
    const state = checkedTracestate(tracestate);
    if (state !== undefined) checked.tracestate = state;
  }
  return { kind: "request", msgid, method, params, meta: checked };
}
