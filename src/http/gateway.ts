import { decode, encode } from "@msgpack/msgpack";
import type { Context } from "hono";
import type { Dispatcher } from "../rpc/dispatch.ts";
import { RpcError } from "../rpc/errors.ts";
import type { ErrorCode } from "../wire/codes.ts";
import { type CallHeaders, checkHeaders, type RequestMeta } from "../wire/messages.ts";
import { DEFAULT_MAX_DEPTH } from "../wire/decoder.ts";
import { nestsDeeperThan } from "../wire/depth.ts";

/** The HTTP status that fits each error code. */
export const HTTP_STATUS: Record<ErrorCode, number> = {
  INVALID_REQUEST: 400,
  METHOD_NOT_FOUND: 404,
  INVALID_PARAMS: 400,
  SHUTTING_DOWN: 503,
  OVERLOADED: 503,
  DEADLINE_EXCEEDED: 504,
  CANCELLED: 499,
  UNAUTHENTICATED: 401,
  UNAVAILABLE: 503,
  INTERNAL: 500,
  APPLICATION: 422,
};

/** Content types read and written as msgpack; anything else is JSON. */
const MSGPACK_TYPES = ["application/msgpack", "application/x-msgpack", "application/vnd.msgpack"];
/** The content type of msgpack answers. */
export const MSGPACK_CONTENT_TYPE = "application/msgpack";

function isMsgpack(header: string | undefined): boolean {
  if (!header) return false;
  const value = header.toLowerCase();
  return MSGPACK_TYPES.some((type) => value.includes(type));
}

/**
 * `POST /rpc/:method`: the body (JSON, or msgpack with `Content-Type:
 * application/msgpack`) is the method's input; the answer is `{"result": ...}`
 * or `{"error": {code, message, processed?, data?}}`, in msgpack when the body
 * was msgpack or `Accept` asks for it. It goes through the same dispatch as TCP
 * calls: validation, the baffle, the counter. Only application methods: the
 * `$` methods belong to ebb's own peers (`$swim.*`, `$members`, `$info`...) and
 * are answered METHOD_NOT_FOUND before the body is read or dispatch is reached.
 * Headers: `ebb-timeout-ms` (deadline), `ebb-request-id`, W3C `traceparent` and `tracestate`, and
 * the call's metadata as `ebb-meta-<name>` both ways (HEADER_PREFIX): in `ctx.headers`, and what the
 * handler set with `ctx.setHeader` on the answer.
 */
export async function gateway(c: Context, dispatcher: Dispatcher, maxDepth = DEFAULT_MAX_DEPTH): Promise<Response> {
  const method = c.req.param("method") ?? "";
  const msgpackIn = isMsgpack(c.req.header("content-type"));
  const answerAs = requestedFormat(c);
  if (isBuiltinMethod(method)) {
    return replyError(c, new RpcError(`Method "${method}" is not served over HTTP: "$" methods belong to ebb itself`, "METHOD_NOT_FOUND"), answerAs);
  }
  let input: unknown;
  const body = new Uint8Array(await c.req.arrayBuffer());
  if (body.byteLength > 0) {
    try {
      input = msgpackIn ? decode(body) : JSON.parse(new TextDecoder().decode(body));
    } catch (error) {
      const why = error instanceof Error ? `: ${error.message}` : "";
      return replyError(c, new RpcError(`Body is not valid ${msgpackIn ? "msgpack" : "JSON"}${why}`, "INVALID_REQUEST"), answerAs);
    }
  }
  // The same nesting limit as a TCP request, where the input sits at level 3 ([0, id, method, [input]]).
  if (nestsDeeperThan(input, maxDepth - 2)) {
    return replyError(c, new RpcError(`Body nests deeper than the limit of ${maxDepth - 2} levels (EBB_MAX_DEPTH)`, "INVALID_REQUEST"), answerAs);
  }
  const timeout = c.req.header("ebb-timeout-ms");
  const deadline = timeout === undefined ? undefined : Number(timeout);
  if (deadline !== undefined && !(Number.isFinite(deadline) && deadline >= 0)) {
    return replyError(c, new RpcError(`Header ebb-timeout-ms="${timeout}" is not a number of milliseconds`, "INVALID_REQUEST"), answerAs);
  }
  const meta: RequestMeta = { deadline, id: c.req.header("ebb-request-id"), traceparent: c.req.header("traceparent"), tracestate: c.req.header("tracestate") };
  const headers = metaHeaders(c.req.raw.headers);
  if (headers) {
    const problem = checkHeaders(headers);
    if (problem) return replyError(c, new RpcError(`Headers ${HEADER_PREFIX}*: ${problem}`, "INVALID_REQUEST"), answerAs);
    meta.headers = headers;
  }
  let callerGone: AbortSignal | undefined;
  let onGone: (() => void) | undefined;
  const answer = await new Promise<{ error: RpcError | null; result: unknown; headers?: CallHeaders }>((resolve) => {
    const active = dispatcher.dispatch({
      method,
      params: input === undefined ? [] : [input],
      meta,
      peer: "http",
      reply: (error, result, headers) => resolve({ error, result, headers }),
    });
    if (!active) return;
    // A caller that goes away cancels its call, as on TCP.
    onGone = () => active.abort(new RpcError("The HTTP caller went away", "CANCELLED"));
    callerGone = c.req.raw.signal;
    callerGone.addEventListener("abort", onGone, { once: true });
  });
  // Deno also aborts the request's signal after a response is sent: stop listening first.
  if (onGone) callerGone?.removeEventListener("abort", onGone);
  for (const [name, value] of Object.entries(answer.headers ?? {})) c.header(`${HEADER_PREFIX}${name}`, value);
  if (answer.error) return replyError(c, answer.error, answerAs);
  // As over TCP: an answer too deep to write becomes one INTERNAL error that says so.
  if (nestsDeeperThan(answer.result, maxDepth - 1)) {
    return replyError(c, new RpcError(`Result of "${method}" cannot be encoded: it nests deeper than the limit of ${maxDepth} levels (EBB_MAX_DEPTH)`, "INTERNAL"), answerAs);
  }
  return reply(c, { result: answer.result ?? null }, 200, answerAs);
}

/** The prefix of HTTP headers that carry a call's metadata, both ways: `ebb-meta-tenant: acme` is `ctx.headers.tenant`. */
export const HEADER_PREFIX = "ebb-meta-";

/** The request's `ebb-meta-*` headers as call metadata (HTTP header names arrive lower-cased); undefined when there are none. */
function metaHeaders(http: Headers): Record<string, string> | undefined {
  let headers: Record<string, string> | undefined;
  for (const [name, value] of http) {
    if (name.startsWith(HEADER_PREFIX)) (headers ??= Object.create(null) as Record<string, string>)[name.slice(HEADER_PREFIX.length)] = value;
  }
  return headers;
}

/** True for ebb's own methods (`$ping`, `$swim.ping`...), which the gateway never serves. */
export function isBuiltinMethod(method: string): boolean {
  return method.startsWith("$");
}

type Format = "json" | "msgpack";

/** An error as the gateway answers it: the wire error object, with the HTTP status of its code. */
export function replyError(c: Context, error: RpcError, format: Format, status = HTTP_STATUS[error.code]): Response {
  return reply(c, { error: error.toWire() }, status, format);
}

function reply(c: Context, body: object, status: number, format: Format): Response {
  if (format === "json") return c.json(body, status as 200);
  return c.body(encode(body, { ignoreUndefined: true }), status as 200, { "Content-Type": MSGPACK_CONTENT_TYPE });
}

/** The format the caller asked for, for answers given before the gateway runs (body too large). */
export function requestedFormat(c: Context): Format {
  return isMsgpack(c.req.header("content-type")) || isMsgpack(c.req.header("accept")) ? "msgpack" : "json";
}
