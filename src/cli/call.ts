import { z } from "zod";
import { type ClusterClient, createClusterClient } from "../cluster/client.ts";
import { RpcError } from "../rpc/errors.ts";
import { checkInput, describedMethod, type MethodDescription, parseInfo } from "../rpc/info.ts";
import { defineCommand, jsonText, UsageError, wholeNumber } from "./command.ts";
import { clientRuntime, clusterOptions, httpPortHint, resolveTarget, TARGET_OPTIONS, targetFlags } from "./target.ts";

/** How long `ebb call` waits for `$info`, to check the input or to show a schema. */
const INFO_TIMEOUT_MS = 1_000;

/** `ebb call <method> [json]`: one call through the cluster client, the result as JSON. */
export const callCommand = defineCommand({
  name: "call",
  summary: "call one method and print its result as JSON",
  usage: ["call <method> [json] [--addr host:port | --seeds host:port,...] [--no-check]"],
  options: {
    ...TARGET_OPTIONS,
    timeout: { type: "string", value: "ms", description: "deadline of the call (default 10000)" },
    "no-check": { type: "boolean", description: "send the input without checking it against the method's schema first" },
  },
  flags: z.object({ ...targetFlags, timeout: wholeNumber(1).default(10_000), "no-check": z.boolean().default(false) }),
  // Checked in run, which can say to quote the JSON.
  maxPositionals: Number.POSITIVE_INFINITY,
  details: `The input is one JSON value (omit it for methods without input). The result is printed
as JSON on standard output. A failed call prints its code and message on standard error
and exits 1; a usage mistake exits 2.

Before sending, the input is checked against the method's input schema from a node's $info
(when the node has one that is safe to use: no $ref, not too big or deep). An input that does
not match is not sent: ebb call prints INVALID_PARAMS with each problem and the schema, and
exits 1. The node stays the judge: a schema cannot show everything it accepts (a coercion, say),
and --no-check sends the input unchecked. Examples:
  ebb call demo.echo '{"hello":"world"}' --addr 127.0.0.1:7400
  ebb call demo.sleep '{"ms":100}' --seeds 10.0.0.5:7400
  ebb call '$info' --addr 127.0.0.1:7400`,
  async run(runtime, flags, positionals) {
    const [method, input, ...extra] = positionals;
    if (!method) throw new UsageError("Name the method to call, e.g. ebb call demo.echo '{\"x\":1}'");
    if (extra.length > 0) throw new UsageError(`One JSON input at most; also got ${extra.map((e) => JSON.stringify(e)).join(" ")} (quote the JSON)`);
    let params: unknown;
    if (input !== undefined) {
      const parsed = jsonText.safeParse(input);
      if (!parsed.success) throw new UsageError(`The input ${parsed.error.issues[0]!.message}`);
      params = parsed.data;
    }
    const env = runtime.env();
    const target = resolveTarget(flags, env);
    const client = clientRuntime(runtime, env);
    const cluster = createClusterClient({ ...clusterOptions(target, env), runtime: client, timeoutMs: flags.timeout, candidateWaitMs: 2_000 });
    const infoMs = Math.min(INFO_TIMEOUT_MS, flags.timeout);
    let described: MethodDescription | undefined;
    try {
      // The method as a node describes it, unless --no-check (ebb's own `$` methods have no schema in $info).
      if (!flags["no-check"] && !method.startsWith("$")) described = await describedBy(cluster, method, infoMs);
      // A check that finds problems refuses before sending; one that cannot use the schema lets the node judge.
      const check = described && checkInput(described.input, params);
      if (described && check?.checked && check.problems.length > 0) {
        const refused = new RpcError(`Invalid input for "${method}": ${check.problems.join("; ")}`, "INVALID_PARAMS");
        runtime.write("stderr", `${[...errorLines(refused), NOT_SENT, schemaLine(described)].join("\n")}\n`);
        return 1;
      }
      const result = await cluster.call(method, params);
      runtime.write("stdout", `${toJson(result ?? null)}\n`);
      return 0;
    } catch (thrown) {
      const error = RpcError.from(thrown);
      const hint = error.code === "UNAVAILABLE" ? await httpPortHint(client, target) : undefined;
      // The node is the judge of its input (its schema may coerce, or carry what JSON Schema cannot say);
      // on INVALID_PARAMS the method's input schema, from $info, is shown beside the node's issues.
      const found = error.code === "INVALID_PARAMS" ? (described ?? (await describedBy(cluster, method, infoMs))) : undefined;
      const schema = found && schemaLine(found);
      runtime.write("stderr", `${[...errorLines(error), ...(schema ? [schema] : []), ...(hint ? [hint] : [])].join("\n")}\n`);
      return 1;
    } finally {
      cluster.close();
    }
  },
});

/** What `ebb call` adds when its own check refused the input. */
const NOT_SENT = "(not sent: the input does not match the method's input schema from $info; --no-check sends it anyway)";

/** A failed call as `ebb call` prints it: `CODE: message`, whether a handler ran, and the error's data. */
export function errorLines(error: RpcError): string[] {
  const lines = [`${error.code}: ${error.rawMessage}`];
  if (error.processed === false) lines.push("(not processed: no handler ran)");
  if (error.data !== undefined) lines.push(`data: ${toJson(error.data)}`);
  return lines;
}

/** JSON for what msgpack may carry: bigints as strings, bytes as arrays of numbers. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v instanceof Uint8Array ? Array.from(v) : v), 2);
}

/** `method` as a node's `$info` describes it; undefined when no node says (within `timeoutMs`). */
async function describedBy(cluster: ClusterClient, method: string, timeoutMs: number): Promise<MethodDescription | undefined> {
  try {
    return describedMethod(parseInfo(await cluster.call("$info", undefined, { timeoutMs })), method);
  } catch {
    return undefined;
  }
}

/** `input schema: {…}`, compact, without the `$schema` line. */
export function schemaLine(method: MethodDescription): string {
  return `input schema: ${JSON.stringify(withoutDialect(method.input))}`;
}

/** A JSON Schema without its `$schema` key, for printing. */
export function withoutDialect(schema: unknown): unknown {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) return schema;
  const { $schema: _dialect, ...rest } = schema as Record<string, unknown>;
  return rest;
}
