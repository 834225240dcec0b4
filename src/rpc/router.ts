import { z } from "zod";
import { RpcError } from "./errors.ts";
import type { CallContext, Handler, Implementation, MethodSpec, RetryPolicy, ServerInterceptor, ServerNext, ServiceContract } from "./contract.ts";

/** One method as `$info` describes it: what generic clients and `ebb describe` read. */
export interface MethodInfo {
  /** Full name, `service.method`. */
  name: string;
  idempotent: boolean;
  /** The method's default deadline, when its contract sets one. */
  timeoutMs?: number;
  retry?: RetryPolicy;
  /** JSON Schema (draft 2020-12) of the input as sent, and of the output as received; `{}` where zod has no JSON form. */
  input: unknown;
  output: unknown;
}

/** A zod schema as JSON Schema; what JSON Schema cannot say (bytes, bigints, transforms) becomes "anything". */
function jsonSchemaOf(schema: z.ZodType, io: "input" | "output"): unknown {
  try {
    return z.toJSONSchema(schema, { io, unrepresentable: "any" });
  } catch {
    return {};
  }
}

/** A registered method: its contract entry and its handler. */
export interface Route {
  readonly name: string;
  readonly service: string;
  readonly spec: MethodSpec;
  /** The handler behind the interceptors (the service's own when there are none). */
  handler: Handler<MethodSpec>;
  /** The service's own handler. */
  readonly own: Handler<MethodSpec>;
  /** False when the input schema accepts any value unchanged (`z.unknown()`): parsing is then skipped, as it could only say yes. */
  readonly checksInput: boolean;
  /** The same for the output schema. */
  readonly checksOutput: boolean;
}

/**
 * True for a schema that accepts every value and returns it unchanged: `z.unknown()` or `z.any()`
 * with no refinement (a refinement lives in the schema's checks; a transform, default or
 * optional wraps it in another schema type).
 */
export function acceptsAnything(schema: z.ZodType): boolean {
  return (schema instanceof z.ZodUnknown || schema instanceof z.ZodAny) && !schema._zod.def.checks?.length;
}

/** Maps `service.method` names to handlers. */
export class Router {
  private readonly routes = new Map<string, Route>();
  /** The route `route` found last. */
  private lastRoute: Route | undefined;
  private readonly services = new Map<string, ServiceContract>();
  private readonly described: Record<string, MethodInfo[]> = {};
  private readonly interceptors: ServerInterceptor[] = [];
  private chain: ServerNext | undefined;

  /** Registers every method of `contract` with its handler. A service name may be registered once. */
  register<C extends ServiceContract>(contract: C, implementation: Implementation<C>): this {
    if (this.services.has(contract.name)) throw new Error(`Service "${contract.name}" is already registered`);
    for (const [method, spec] of Object.entries(contract.methods)) {
      const handler = (implementation as Record<string, Handler<MethodSpec> | undefined>)[method];
      if (typeof handler !== "function") throw new TypeError(`No handler for "${contract.name}.${method}"`);
      const name = `${contract.name}.${method}`;
      this.routes.set(name, {
        name,
        service: contract.name,
        spec,
        own: handler,
        handler: this.intercepted(name, handler),
        checksInput: !acceptsAnything(spec.input),
        checksOutput: !acceptsAnything(spec.output),
      });
      const info: MethodInfo = { name, idempotent: spec.idempotent === true, input: jsonSchemaOf(spec.input, "input"), output: jsonSchemaOf(spec.output, "output") };
      if (spec.timeoutMs !== undefined) info.timeoutMs = spec.timeoutMs;
      if (spec.retry !== undefined) info.retry = spec.retry;
      (this.described[contract.name] ??= []).push(info);
    }
    this.services.set(contract.name, contract);
    return this;
  }

  /**
   * Adds a server interceptor around every method, registered or to come; the first added is the
   * outermost. One chain serves every method, built at the first call: each interceptor's factory
   * runs once, so what it keeps (a rate limiter, a cache) is shared by all methods.
   */
  use(interceptor: ServerInterceptor): this {
    this.interceptors.push(interceptor);
    this.chain = undefined;
    for (const route of this.routes.values()) route.handler = this.intercepted(route.name, route.own);
    return this;
  }

  /** `handler` behind the interceptors; itself when there are none, so calls without any pay nothing. */
  private intercepted(method: string, handler: Handler<MethodSpec>): Handler<MethodSpec> {
    if (this.interceptors.length === 0) return handler;
    return (input: unknown, ctx: CallContext) => (this.chain ??= this.compose())({ method, input, ctx }) as ReturnType<Handler<MethodSpec>>;
  }

  private compose(): ServerNext {
    let next: ServerNext = (call) => {
      const route = this.routes.get(call.method);
      if (!route) throw new RpcError(`An interceptor passed on an unknown method "${call.method}"`, "INTERNAL");
      return route.own(call.input, call.ctx);
    };
    for (let i = this.interceptors.length - 1; i >= 0; i--) next = this.interceptors[i]!(next);
    return next;
  }

  /** The route for a full method name, if any. */
  route(name: string): Route | undefined {
    // A name fresh off the wire has no hash yet, and V8 computes one in a call into the runtime:
    // the route found last is checked first by comparing characters, which needs none.
    const last = this.lastRoute;
    if (last !== undefined && last.name === name) return last;
    const route = this.routes.get(name);
    if (route) this.lastRoute = route;
    return route;
  }

  /** Names of the registered services. */
  serviceNames(): string[] {
    return [...this.services.keys()];
  }

  /** Every registered method, by service, as `$info` describes it (computed once, at registration). */
  describe(): Record<string, MethodInfo[]> {
    return this.described;
  }
}
