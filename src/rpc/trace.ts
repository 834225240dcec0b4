import { checkedTracestate, formatTraceparent, parseTraceparent } from "../wire/messages.ts";

/**
 * A call's place in a W3C trace: the trace it belongs to, the span of this hop (new on every node),
 * and the caller's span. Nested calls send `traceparent` with this trace id and this hop's span id.
 * A tracing integration (src/otel.ts) sets `traceId`, `spanId` and `flags` to its server span's.
 */
export interface TraceContext {
  traceId: string;
  /** This hop's span. */
  spanId: string;
  /** The caller's span, when the call came with a valid `traceparent`. */
  readonly parentSpanId: string | undefined;
  /** W3C trace-flags; bit 0 is "sampled". */
  flags: number;
  /** The caller's `tracestate`, passed on unchanged. */
  readonly tracestate: string | undefined;
}

/**
 * A trace ebb starts itself (no tracer decided anything) is marked not sampled, as OpenTelemetry
 * marks a root it does not record: a sampled flag would make every tracer down the chain that
 * follows its parent (OpenTelemetry's default) record it, whatever its own sampling ratio.
 */
const UNSAMPLED = 0;

function randomHex(bytes: number): string {
  const words = crypto.getRandomValues(new Uint32Array(bytes / 4));
  let text = "";
  for (const word of words) text += word.toString(16).padStart(8, "0");
  // All zeros is invalid in W3C trace context; the odds are 2^-64 at worst, but make it impossible.
  return /^0+$/.test(text) ? `${text.slice(0, -1)}1` : text;
}

/** A new 16-hex-digit span id. */
export const newSpanId = (): string => randomHex(8);
/** A new 32-hex-digit trace id. */
export const newTraceId = (): string => randomHex(16);

/** The trace context of a call that came with `traceparent` (and `tracestate`), or of a new trace when it came without. */
export function traceOf(traceparent: string | undefined, tracestate: string | undefined): TraceContext {
  const parent = parseTraceparent(traceparent);
  if (!parent) return { traceId: newTraceId(), spanId: newSpanId(), parentSpanId: undefined, flags: UNSAMPLED, tracestate: undefined };
  return { traceId: parent.traceId, spanId: newSpanId(), parentSpanId: parent.spanId, flags: parent.flags, tracestate: checkedTracestate(tracestate) };
}

/** The `traceparent` a call made from within `trace`'s span sends. */
export function childTraceparent(trace: TraceContext): string {
  return formatTraceparent(trace.traceId, trace.spanId, trace.flags);
}
