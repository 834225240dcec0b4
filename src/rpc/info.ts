import { z } from "zod";

/**
 * A `$info` answer as clients read it (see `nodeBuiltins` and `Router.describe`), bounded: it comes
 * from a node, and a node's word is checked like any other input.
 */
const InfoSchema = z.object({
  node: z.string().max(128).optional(),
  services: z.record(
    z.string().max(128),
    z.array(z.object({ name: z.string().max(300), idempotent: z.boolean(), timeoutMs: z.number().optional(), input: z.unknown(), output: z.unknown() }).loose()).max(1_000),
  ),
}).loose();

/** A node's description of itself, as `$info` answers it. */
export type NodeInfo = z.output<typeof InfoSchema>;
/** One method in it. */
export type MethodDescription = NodeInfo["services"][string][number];

/** Reads a `$info` answer; undefined when it is not one. */
export function parseInfo(value: unknown): NodeInfo | undefined {
  const parsed = InfoSchema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

/** The description of `method` (`service.method`) in a `$info` answer, if it has one. */
export function describedMethod(info: NodeInfo | undefined, method: string): MethodDescription | undefined {
  const service = method.slice(0, method.indexOf("."));
  return info?.services[service]?.find((m) => m.name === method);
}
