import type { z } from "zod";

/** One method of a service: its input and output schemas, and whether a repeat is harmless. */
export interface MethodSpec<Input extends z.ZodType = z.ZodType, Output extends z.ZodType = z.ZodType> {
  readonly input: Input;
  readonly output: Output;
  /** True when running the call twice has the effect of running it once: lost calls may be retried elsewhere. */
  readonly idempotent?: boolean;
}

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
}

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
  methods: Methods,
): ServiceContract<Name, Methods> {
  if (!NAME.test(name)) throw new TypeError(`Service name "${name}" must match ${NAME} (no dots, no leading "$")`);
  for (const method of Object.keys(methods)) {
    if (!NAME.test(method)) throw new TypeError(`Method name "${name}.${method}" must match ${NAME}`);
  }
  return Object.freeze({ name, methods: Object.freeze({ ...methods }) });
}
