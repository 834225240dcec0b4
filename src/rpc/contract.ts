import type { z } from "zod";
import { type ErrorCode, isErrorCode } from "../wire/codes.ts";
import type { CallHeaders } from "../wire/messages.ts";
import type { TraceContext } from "./trace.ts";

/**
 * Application-level retries of one method, as gRPC's `retryPolicy`: a call that fails with one of
 * `retryableCodes` is tried again after a backoff, within its deadline. Apart from ebb's transparent
 * retries, which send again at once, and only what no handler ran (`processed: false`).
 */
export interface RetryPolicy {
  /** Tries in all, the first included: 2 to 10. */
  readonly maxAttempts: number;
  /** Codes tried again, e.g. `["UNAVAILABLE"]`, or `["APPLICATION"]` for a handler's own transient failure. */
  readonly retryableCodes: readonly ErrorCode[];
  /** Wait before the first retry. Default 100 ms. Each wait is a random part of it (full jitter). */
  readonly initialBackoffMs?: number;
  /** Largest wait. Default 5 s. */
  readonly maxBackoffMs?: number;
  /** Growth of the wait per retry. Default 2. */
  readonly backoffMultiplier?: number;
}

/** One method of a service: its input and output schemas, whether a repeat is harmless, and its call policy. */
export interface MethodSpec<Input extends z.ZodType = z.ZodType, Output extends z.ZodType = z.ZodType> {
  readonly input: Input;
  readonly output: Output;
  /** True when running the call twice has the effect of running it once: lost calls may be retried elsewhere. */
  readonly idempotent?: boolean;
  /** Deadline of this method's calls that set none (the client's `timeoutMs` otherwise, 30 s by default). */
  readonly timeoutMs?: number;
  /** Application-level retries (see RetryPolicy). */
  readonly retry?: RetryPolicy;
  /** For an idempotent method, the delay before a client with hedging on sends a hedge (its observed latency otherwise). */
  readonly hedgeDelayMs?: number;
}

/** `T`, with any key `Shape` does not have typed `never`: a misspelt key in an object literal is a type error. */
type Exactly<T, Shape> = T & { readonly [K in Exclude<keyof T, keyof Shape>]: never };
/** A method spec checked key by key, its retry policy too. */
type ExactSpec<M> = Exactly<M, MethodSpec> & (M extends { readonly retry?: infer R } ? { readonly retry?: Exactly<NonNullable<R>, RetryPolicy> | undefined } : unknown);

/** A service contract: the one object both the server and its clients are typed from. */
export interface ServiceContract<Name extends string = string, Methods extends Record<string, MethodSpec> = Record<string, MethodSpec>> {
  readonly name: Name;
  readonly methods: Methods;
}

/** What a handler sees besides its input. */
export interface CallContext {
  /** Aborted when the deadline passes, the caller cancels or disconnects, or shutdown gives up waiting. */
  readonly signal: AbortSignal;
  /** Full method name, `service.method`. */
  readonly method: string;
  /** The caller's request id, when it sent one. */
  readonly requestId: string | undefined;
  /** Epoch milliseconds after which the caller stops waiting, when it said so. */
  readonly deadlineAt: number | undefined;
  /** `host:port` of the caller, or `http` for the gateway. */
  readonly peer: string;
  /** The caller's metadata (`meta.headers`; the gateway's `ebb-meta-*` HTTP headers), lower-case names. Empty when it sent none. */
  readonly headers: CallHeaders;
  /**
   * Sets a header of the answer, sent back with it (a plain msgpack-rpc caller, which sent no meta,
   * gets none). Throws a RangeError past the bounds of MAX_HEADERS and MAX_HEADER_CHARS or for a bad name.
   */
  setHeader(name: string, value: string): void;
  /** The W3C trace this call belongs to; made on first read (a new trace when the caller sent no `traceparent`). */
  readonly trace: TraceContext;
}

/** One call as a server interceptor sees it: the method, its input (parsed by its schema), and the handler's context. */
export interface ServerCall {
  readonly method: string;
  readonly input: unknown;
  readonly ctx: CallContext;
}

/** What runs a call: the next interceptor, or, at the end of the chain, the handler. Returns the output (or a promise of it). */
export type ServerNext = (call: ServerCall) => unknown;

/**
 * Middleware around every call a node's services answer, connect-es's shape: `(next) => async (call) => …`.
 * It may read the call, pass on another input, short-circuit by throwing an `RpcError` (no handler runs),
 * and see the result or the error. Registered with `node.use()`; the first is the outermost. The baffle,
 * the in-flight counter, input validation and the deadline stay outside: a baffled call reaches none.
 */
export type ServerInterceptor = (next: ServerNext) => ServerNext;

/** The handler of one method: input as parsed by its schema, output as its schema accepts it. */
export type Handler<M extends MethodSpec> = (
  input: z.output<M["input"]>,
  ctx: CallContext,
) => z.input<M["output"]> | Promise<z.input<M["output"]>>;

/** Handlers for every method of a contract. */
export type Implementation<C extends ServiceContract> = { [K in keyof C["methods"]]: Handler<C["methods"][K]> };

/** What a client sends for a method. */
export type InputOf<M extends MethodSpec> = z.input<M["input"]>;
/** What a client gets back from a method. */
export type OutputOf<M extends MethodSpec> = z.output<M["output"]>;

const NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** Defines a service contract; names are checked so that `service.method` is unambiguous. */
export function defineService<const Name extends string, const Methods extends Record<string, MethodSpec>>(
  name: Name,
  methods: Methods & { readonly [K in keyof Methods]: ExactSpec<Methods[K]> },
): ServiceContract<Name, Methods> {
  if (!NAME.test(name)) throw new TypeError(`Service name "${name}" must match ${NAME} (no dots, no leading "$")`);
  for (const [method, spec] of Object.entries(methods as Record<string, MethodSpec>)) {
    if (!NAME.test(method)) throw new TypeError(`Method name "${name}.${method}" must match ${NAME}`);
    const problem = policyProblem(spec);
    if (problem) throw new TypeError(`${name}.${method}: ${problem}`);
  }
  return Object.freeze({ name, methods: Object.freeze({ ...methods }) });
}

/** What is wrong with a method's timeout or retry policy, if anything. */
function policyProblem(spec: MethodSpec): string | undefined {
  const positive = (value: number | undefined) => value === undefined || (Number.isFinite(value) && value > 0);
  if (!positive(spec.timeoutMs)) return `timeoutMs must be a positive number of milliseconds, not ${spec.timeoutMs}`;
  if (!positive(spec.hedgeDelayMs)) return `hedgeDelayMs must be a positive number of milliseconds, not ${spec.hedgeDelayMs}`;
  if (spec.hedgeDelayMs !== undefined && spec.idempotent !== true) return "hedgeDelayMs needs idempotent: true (only idempotent methods are hedged)";
  const retry = spec.retry;
  if (retry === undefined) return undefined;
  if (!Number.isInteger(retry.maxAttempts) || retry.maxAttempts < 2 || retry.maxAttempts > 10) return `retry.maxAttempts must be a whole number from 2 to 10, not ${retry.maxAttempts}`;
  if (!Array.isArray(retry.retryableCodes) || retry.retryableCodes.length === 0) return "retry.retryableCodes must name at least one code";
  const unknown = retry.retryableCodes.find((code) => !isErrorCode(code));
  if (unknown !== undefined) return `retry.retryableCodes: ${JSON.stringify(unknown)} is not an error code`;
  for (const key of ["initialBackoffMs", "maxBackoffMs"] as const) if (!positive(retry[key])) return `retry.${key} must be a positive number of milliseconds`;
  if (retry.backoffMultiplier !== undefined && !(Number.isFinite(retry.backoffMultiplier) && retry.backoffMultiplier >= 1)) return "retry.backoffMultiplier must be at least 1";
  return undefined;
}
