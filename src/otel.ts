/**
 * OpenTelemetry tracing for ebb, through `@opentelemetry/api` only (runtime-agnostic; bring your own
 * SDK and exporter). Its own entry point: a program that does not import it loads none of it, and
 * ebb's core never reads a tracer.
 *
 *   const otel = openTelemetry();            // the global tracer provider's tracer, or pass `tracer`
 *   node.use(otel.server);                   // first, so that its span is the one nested calls name
 *   node.client(contract, { interceptors: [otel.client] });
 *
 * A server span per call (kind SERVER) whose parent is the caller's `traceparent`; a client span
 * per try of a call (kind CLIENT: one per call, or one per try of a method's retry policy), sent as
 * the callee's `traceparent`; ebb's transparent retries (baffled, overloaded, connection lost…)
 * are events on the client span. A call made inside a handler is a child of that handler's span
 * through ebb's own call scope (src/rpc/call-scope.ts): no OpenTelemetry context manager is needed.
 */
import { context, createTraceState, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace, type Context, type Tracer } from "@opentelemetry/api";
import type { ClientInterceptor } from "./cluster/client.ts";
import type { ServerInterceptor } from "./rpc/contract.ts";
import { RpcError } from "./rpc/errors.ts";
import { formatTraceparent, parseTraceparent } from "./wire/messages.ts";
import { VERSION } from "./node.ts";

/** Options of `openTelemetry`. */
export interface TracingOptions {
  /** Default: `trace.getTracer("ebb", VERSION)` from the global tracer provider (a no-op until an SDK registers one). */
  tracer?: Tracer;
}

/** The interceptors that trace a node's calls (`server`) and a client's (`client`). */
export interface Tracing {
  server: ServerInterceptor;
  client: ClientInterceptor;
}

/** Span attributes of a call: OpenTelemetry's RPC conventions. */
function rpcAttributes(method: string): Record<string, string> {
  const dot = method.indexOf(".");
  return { "rpc.system": "ebb", "rpc.service": method.slice(0, dot), "rpc.method": method.slice(dot + 1) };
}

/** Ends `span` with the call's outcome: OK, or ERROR with the RpcError's code and message. */
function endSpan(span: Span, error?: unknown): void {
  if (error === undefined) {
    span.setStatus({ code: SpanStatusCode.OK });
  } else {
    const rpcError = RpcError.from(error);
    span.setAttribute("rpc.ebb.code", rpcError.code);
    if (rpcError.processed === false) span.setAttribute("rpc.ebb.processed", false);
    span.setStatus({ code: SpanStatusCode.ERROR, message: rpcError.message });
  }
  span.end();
}

/** An OpenTelemetry context whose span is another process's: the parent of a span here. */
function remoteParent(traceId: string, spanId: string, flags: number, tracestate: string | undefined): Context {
  const traceState = tracestate === undefined ? undefined : createTraceState(tracestate);
  return trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId, traceFlags: flags, isRemote: true, traceState });
}

/** Server and client interceptors that record OpenTelemetry spans of ebb calls. */
export function openTelemetry(options: TracingOptions = {}): Tracing {
  const tracer = options.tracer ?? trace.getTracer("ebb", VERSION);

  const server: ServerInterceptor = (next) => (call) => {
    const { ctx } = call;
    const hop = ctx.trace;
    // The caller's span, when it sent one; else a root span (a new trace).
    const parent = hop.parentSpanId === undefined ? ROOT_CONTEXT : remoteParent(hop.traceId, hop.parentSpanId, hop.flags, hop.tracestate);
    const span = tracer.startSpan(call.method, { kind: SpanKind.SERVER, attributes: { ...rpcAttributes(call.method), "rpc.ebb.peer": ctx.peer } }, parent);
    // This hop's span is the server span: the calls the handler makes name it as their parent. Taken
    // even when it does not record (a sampler's "drop" must reach the next hop as unsampled), but only
    // a span of its own: the no-op tracer hands back the parent's context, or an invalid one.
    const own = span.spanContext();
    if (trace.isSpanContextValid(own) && own.spanId !== hop.parentSpanId) {
      hop.traceId = own.traceId;
      hop.spanId = own.spanId;
      hop.flags = own.traceFlags;
    }
    if (!span.isRecording()) return next(call);
    if (ctx.requestId !== undefined) span.setAttribute("rpc.ebb.request_id", ctx.requestId);
    // The span ends when the caller has its answer: at the handler's end, or when the call is answered
    // without it (its deadline passed, the caller cancelled, a drain gave up), whatever the handler does after.
    let ended = false;
    const end = (error?: unknown) => {
      if (ended) return;
      ended = true;
      endSpan(span, error);
    };
    ctx.signal.addEventListener("abort", () => end(ctx.signal.reason), { once: true });
    return context.with(trace.setSpan(parent, span), async () => {
      try {
        const result = await next(call);
        end();
        return result;
      } catch (error) {
        end(error);
        throw error;
      }
    });
  };

  const client: ClientInterceptor = (next) => (call) => {
    const { options: callOptions } = call;
    // Inside a handler, the call scope set `traceparent` to the handler's span; else the active OpenTelemetry context.
    const sent = parseTraceparent(callOptions.traceparent);
    const parent = sent ? remoteParent(sent.traceId, sent.spanId, sent.flags, callOptions.tracestate) : context.active();
    const span = tracer.startSpan(call.method, { kind: SpanKind.CLIENT, attributes: rpcAttributes(call.method) }, parent);
    if (!span.isRecording()) return next(call);
    const own = span.spanContext();
    const options = {
      ...callOptions,
      traceparent: formatTraceparent(own.traceId, own.spanId, own.traceFlags),
      tracestate: own.traceState?.serialize() || callOptions.tracestate,
      onRetry(reason: string, node: string) {
        span.addEvent("ebb.retry", { "rpc.ebb.reason": reason, "rpc.ebb.node": node });
        callOptions.onRetry?.(reason, node);
      },
    };
    let answer: Promise<unknown>;
    try {
      answer = Promise.resolve(next({ ...call, options }));
    } catch (error) {
      endSpan(span, error);
      throw error;
    }
    return answer.then(
      (result) => {
        endSpan(span);
        return result;
      },
      (error: unknown) => {
        endSpan(span, error);
        throw error;
      },
    );
  };

  return { server, client };
}
