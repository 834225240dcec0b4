import type { Context } from "hono";
import type { Dispatcher } from "../rpc/dispatch.ts";
import { RpcError } from "../rpc/errors.ts";
import type { ErrorCode } from "../wire/codes.ts";

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

/**
 * `POST /rpc/:method`: a JSON body is the method's input; the answer is
 * `{"result": ...}` or `{"error": {code, message, processed?, data?}}`. It goes
 * through the same dispatch as TCP calls: validation, the baffle, the counter.
 * Headers: `ebb-timeout-ms` (deadline), `ebb-request-id`.
 */
export async function gateway(c: Context, dispatcher: Dispatcher): Promise<Response> {
  const method = c.req.param("method") ?? "";
  let input: unknown;
  const text = await c.req.text();
  if (text.length > 0) {
    try {
      input = JSON.parse(text);
    } catch {
      return reply(c, new RpcError("Body is not valid JSON", "INVALID_REQUEST"));
    }
  }
  const timeout = c.req.header("ebb-timeout-ms");
  const deadline = timeout === undefined ? undefined : Number(timeout);
  if (deadline !== undefined && !(Number.isFinite(deadline) && deadline >= 0)) {
    return reply(c, new RpcError(`Header ebb-timeout-ms="${timeout}" is not a number of milliseconds`, "INVALID_REQUEST"));
  }
  const requestId = c.req.header("ebb-request-id");
  let callerGone: AbortSignal | undefined;
  let onGone: (() => void) | undefined;
  const answer = await new Promise<{ error: RpcError | null; result: unknown }>((resolve) => {
    const active = dispatcher.dispatch(
      { method, params: input === undefined ? [] : [input], meta: { deadline, id: requestId }, peer: "http" },
      (error, result) => resolve({ error, result }),
    );
    if (!active) return;
    // A caller that goes away cancels its call, as on TCP.
    onGone = () => active.abort(new RpcError("The HTTP caller went away", "CANCELLED"));
    callerGone = c.req.raw.signal;
    callerGone.addEventListener("abort", onGone, { once: true });
  });
  // Deno also aborts the request's signal after a response is sent: stop listening first.
  if (onGone) callerGone?.removeEventListener("abort", onGone);
  if (answer.error) return reply(c, answer.error);
  return c.json({ result: answer.result ?? null });
}

function reply(c: Context, error: RpcError): Response {
  return c.json({ error: error.toWire() }, HTTP_STATUS[error.code] as 400);
}
