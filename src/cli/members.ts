import { z } from "zod";
import { splitAddress } from "../runtime/address.ts";
import type { Member } from "../membership/types.ts";
import { Channel } from "../rpc/channel.ts";
import { RpcError } from "../rpc/errors.ts";
import { defineCommand } from "./command.ts";
import { formatAge, renderTable } from "./table.ts";
import { clientRuntime, clusterKeyFrom, httpPortHint, resolveTarget, TARGET_OPTIONS, targetFlags } from "./target.ts";
import { toJson } from "./call.ts";
import { errorText } from "../error-text.ts";

const ASK_TIMEOUT_MS = 3_000;

/** `ebb members`: the cluster as the first reachable node sees it. */
export const membersCommand = defineCommand({
  name: "members",
  summary: "show the cluster as a node sees it",
  usage: ["members [--seeds host:port,... | --addr host:port] [--json]"],
  options: {
    ...TARGET_OPTIONS,
    json: { type: "boolean", description: "print the member list as JSON" },
  },
  flags: z.object({ ...targetFlags, json: z.boolean().default(false) }),
  details: `Asks the given nodes in order and prints the view of the first that answers:
id, RPC address, status (alive, suspect, dead, left), lifecycle (starting, ready,
draining, stopped), services, incarnation, and age (time since the member's last
status change, by the answering node's clock). Exits 1 when no node answers.`,
  async run(runtime, flags) {
    const env = runtime.env();
    const target = resolveTarget(flags, env);
    const failures: string[] = [];
    for (const addr of target.addresses) {
      let channel: Channel | undefined;
      try {
        const [host, port] = splitAddress(addr);
        channel = await Channel.connect(clientRuntime(runtime, env), { host, port, clusterKey: clusterKeyFrom(env) });
        const [ping, members] = (await Promise.all([
          channel.call("$ping", undefined, { timeoutMs: ASK_TIMEOUT_MS }),
          channel.call("$members", undefined, { timeoutMs: ASK_TIMEOUT_MS }),
        ])) as [{ node: string; time: number }, Member[]];
        if (flags.json) {
          runtime.write("stdout", `${toJson({ node: ping.node, addr, members })}\n`);
        } else {
          runtime.write("stdout", `${membersTable(members, ping.time)}\n\n${members.length} member${members.length === 1 ? "" : "s"} as seen by ${ping.node} (${addr})\n`);
        }
        return 0;
      } catch (error) {
        const reason = error instanceof RpcError ? `${error.code}: ${error.rawMessage}` : errorText(error);
        failures.push(`${addr}: ${reason}`);
      } finally {
        channel?.close();
      }
    }
    const hint = await httpPortHint(clientRuntime(runtime, env), target);
    runtime.write("stderr", `UNAVAILABLE: no node answered\n${failures.map((f) => `  ${f}`).join("\n")}\n${hint ? `${hint}\n` : ""}`);
    return 1;
  },
});

/** The member table; `now` is the answering node's clock, so ages need no clock sync. */
export function membersTable(members: Member[], now: number): string {
  const rows = [...members]
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((m) => [m.id, m.addr, m.status, m.meta.state, m.meta.services.join(",") || "-", String(m.incarnation), formatAge(now - m.since)]);
  return renderTable(["ID", "ADDRESS", "STATUS", "LIFECYCLE", "SERVICES", "INCARNATION", "AGE"], rows);
}
