import type { Handler, Implementation, MethodSpec, ServiceContract } from "./contract.ts";

/** A registered method: its contract entry and its handler. */
export interface Route {
  readonly name: string;
  readonly service: string;
  readonly spec: MethodSpec;
  readonly handler: Handler<MethodSpec>;
}

/** Maps `service.method` names to handlers. */
export class Router {
  private readonly routes = new Map<string, Route>();
  private readonly services = new Map<string, ServiceContract>();

  /** Registers every method of `contract` with its handler. A service name may be registered once. */
  register<C extends ServiceContract>(contract: C, implementation: Implementation<C>): this {
    if (this.services.has(contract.name)) throw new Error(`Service "${contract.name}" is already registered`);
    for (const [method, spec] of Object.entries(contract.methods)) {
      const handler = (implementation as Record<string, Handler<MethodSpec> | undefined>)[method];
      if (typeof handler !== "function") throw new TypeError(`No handler for "${contract.name}.${method}"`);
      const name = `${contract.name}.${method}`;
      this.routes.set(name, { name, service: contract.name, spec, handler });
    }
    this.services.set(contract.name, contract);
    return this;
  }

  /** The route for a full method name, if any. */
  route(name: string): Route | undefined {
    return this.routes.get(name);
  }

  /** Names of the registered services. */
  serviceNames(): string[] {
    return [...this.services.keys()];
  }

  /** Every registered method with whether it is idempotent, for `$info`. */
  describe(): Record<string, { name: string; idempotent: boolean }[]> {
    const out: Record<string, { name: string; idempotent: boolean }[]> = {};
    for (const route of this.routes.values()) {
      (out[route.service] ??= []).push({ name: route.name, idempotent: route.spec.idempotent === true });
    }
    return out;
  }
}
