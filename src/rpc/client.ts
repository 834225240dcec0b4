import type { InputOf, OutputOf, ServiceContract } from "./contract.ts";
import type { CallOptions, Transport } from "./channel.ts";

/** A typed client of one service: one function per method of its contract. */
export type ServiceClient<C extends ServiceContract> = {
  readonly [K in keyof C["methods"] & string]: (input: InputOf<C["methods"][K]>, options?: CallOptions) => Promise<OutputOf<C["methods"][K]>>;
};

/**
 * Creates a client typed from the same contract the server registers:
 * a wrong method name or input is a compile error, with no code generation.
 */
export function createClient<C extends ServiceContract>(contract: C, transport: Transport): ServiceClient<C> {
  const client: Record<string, (input: unknown, options?: CallOptions) => Promise<unknown>> = {};
  for (const method of Object.keys(contract.methods)) {
    const name = `${contract.name}.${method}`;
    client[method] = (input, options) => transport.call(name, input, options);
  }
  return Object.freeze(client) as ServiceClient<C>;
}
