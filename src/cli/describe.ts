import { z } from "zod";
import { createClusterClient } from "../cluster/client.ts";
import { RpcError } from "../rpc/errors.ts";
import { type NodeInfo, parseInfo } from "../rpc/info.ts";
import { errorLines, toJson, withoutDialect } from "./call.ts";
import { defineCommand } from "./command.ts";
import { clientRuntime, clusterOptions, httpPortHint, resolveTarget, TARGET_OPTIONS, targetFlags } from "./target.ts";

/** `ebb describe`: the services a cluster offers, as a node's `$info` describes them. */
export const describeCommand = defineCommand({
  name: "describe",
  summary: "show the services a cluster offers: methods, policies, input and output schemas",
  usage: ["describe [--seeds host:port,... | --addr host:port] [--json]"],
  options: {
    ...TARGET_OPTIONS,
    json: { type: "boolean", description: "print the services as JSON" },
  },
  flags: z.object({ ...targetFlags, json: z.boolean().default(false) }),
  details: `Asks a node of the cluster for $info and prints each method: idempotent or not,
its default timeout and retry policy when its contract sets them, and its input and
output as JSON Schema. Exits 1 when no node answers.`,
  async run(runtime, flags) {
    const env = runtime.env();
    const target = resolveTarget(flags, env);
    const client = clientRuntime(runtime, env);
    const cluster = createClusterClient({ ...clusterOptions(target, env), runtime: client, timeoutMs: 5_000, candidateWaitMs: 2_000 });
    try {
      const info = parseInfo(await cluster.call("$info", undefined));
      if (!info) throw new RpcError("The node's $info answer is not one ebb can read", "INTERNAL");
      runtime.write("stdout", flags.json ? `${toJson(info.services)}\n` : `${describeServices(info)}\n`);
      return 0;
    } catch (thrown) {
      const error = RpcError.from(thrown);
      const hint = error.code === "UNAVAILABLE" ? await httpPortHint(client, target) : undefined;
      runtime.write("stderr", `${[...errorLines(error), ...(hint ? [hint] : [])].join("\n")}\n`);
      return 1;
    } finally {
      cluster.close();
    }
  },
});

/** A node's text for a terminal: control characters (escape sequences) shown as `?`. */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
}

/** Each method on a line of its own (name, then what its contract says), its schemas indented below it. */
export function describeServices(info: NodeInfo): string {
  const lines: string[] = [];
  let methods = 0;
  const services = Object.keys(info.services).sort();
  for (const service of services) {
    for (const m of info.services[service]!) {
      methods++;
      const retry = m.retry as { maxAttempts?: number; retryableCodes?: string[] } | undefined;
      const traits = [
        m.idempotent ? "idempotent" : "",
        m.timeoutMs !== undefined ? `timeout ${m.timeoutMs} ms` : "",
        retry ? `retry ${Number(retry.maxAttempts)}x on ${printable((retry.retryableCodes ?? []).join(","))}` : "",
      ].filter(Boolean);
      lines.push(`${printable(m.name)}${traits.length ? `  (${traits.join(", ")})` : ""}`);
      lines.push(`  input:  ${JSON.stringify(withoutDialect(m.input))}`);
      lines.push(`  output: ${JSON.stringify(withoutDialect(m.output))}`);
    }
  }
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  lines.push("", `${plural(methods, "method")} of ${plural(services.length, "service")}, as described by ${printable(info.node ?? "the node")}`);
  return lines.join("\n");
}
