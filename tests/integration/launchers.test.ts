// One Ctrl-C drains whatever started the node (issue 14, items 1 and 2): a real terminal
// (script(1) gives a pty) turns ^C into SIGINT for the whole foreground process group, so a
// launcher (npm, deno task) and the node both get it, and the launcher may forward it again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { demo } from "../../src/demo/demo.ts";
import { createClient } from "../../src/rpc/client.ts";
import { connectChannel } from "../helpers/net.ts";
import { type NodeProcess, ROOT, spawnCommand, stopProcess } from "../helpers/process.ts";

// npm and npx draw no progress spinner into the first log line.
const ENV = { EBB_RPC_PORT: "0", EBB_HTTP_PORT: "auto", EBB_LOG_FORMAT: "json", EBB_LOG_LEVEL: "debug", npm_config_progress: "false", npm_config_loglevel: "error" };

/** Every way a person starts a node from a shell, as the README tells them. */
const LAUNCHERS: { name: string; command: string; demo: boolean }[] = [
  { name: "npm start", command: "npm start --silent", demo: true },
  { name: "npx deno task serve", command: "npx --no-install deno task --quiet serve", demo: true },
  { name: "the binary", command: `${ROOT}dist/ebb serve`, demo: true },
  { name: "a runNode service", command: `${ROOT}node_modules/.bin/bun tests/fixtures/greeter.ts`, demo: false },
];

/** Runs `command` on a fresh pseudo-terminal; writing to its standard input is typing on that terminal. */
async function onTerminal(command: string): Promise<NodeProcess> {
  // No echo of the ^C typed, which would run into the next log line.
  const proc = spawnCommand(command, "script", ["-qfec", `stty -echo; exec ${command}`, "/dev/null"], ENV, "pipe");
  const listening = await proc.waitForLine((line) => typeof line.rpc === "string");
  proc.port = Number(String(listening.rpc).split(":").pop());
  await proc.waitForLine((line) => line.state === "ready");
  return proc;
}

for (const launcher of LAUNCHERS) {
  test(`one Ctrl-C on a terminal drains a node started by ${launcher.name}: the call in flight completes, exit 0`, async () => {
    const proc = await onTerminal(launcher.command);
    try {
      const channel = await connectChannel(proc.port);
      const api = createClient(demo, channel);
      const inflight = launcher.demo ? api.sleep({ ms: 1_000 }) : undefined;
      // Answered in order on one connection: once echo is back, the node has the sleep in hand.
      if (inflight) await api.echo("after the sleep");
      proc.child.stdin!.write("\x03"); // Ctrl-C: the terminal signals the foreground process group
      const stopped = await proc.waitForLine((line) => String(line.msg).startsWith("stopped")).catch((error: Error) => assert.fail(`${error.message}\n${proc.lines.map((l) => JSON.stringify(l)).join("\n")}`));
      if (inflight) assert.ok((await inflight).sleptMs >= 1_000);
      assert.equal(stopped.exitCode, 0, JSON.stringify(stopped));
      const drains = proc.lines.filter((line) => typeof line.msg === "string" && /^SIG(INT|TERM) received: draining$/.test(line.msg));
      assert.equal(drains.length, 1, `one drain:\n${proc.lines.map((l) => JSON.stringify(l)).join("\n")}`);
      assert.equal(proc.lines.filter((line) => String(line.msg).includes("received again: exiting now")).length, 0, "no forced exit");
      channel.close();
      await proc.exited;
    } finally {
      await stopProcess(proc);
    }
  });
}

for (const [name, command, args] of [
  ["npm start", "npm", ["start", "--silent"]],
  ["deno task serve", `${ROOT}node_modules/.bin/deno`, ["task", "--quiet", "serve"]],
] as const) {
  test(`kill -TERM of the process \`${name}\` started (the launcher itself) drains the node: the launcher passes the signal on`, async () => {
    const proc = spawnCommand(name, command, [...args], ENV);
    try {
      const listening = await proc.waitForLine((line) => typeof line.rpc === "string");
      const port = Number(String(listening.rpc).split(":").pop());
      await proc.waitForLine((line) => line.state === "ready");
      const channel = await connectChannel(port);
      const inflight = createClient(demo, channel).sleep({ ms: 500 });
      await createClient(demo, channel).echo("after the sleep");
      process.kill(proc.child.pid!, "SIGTERM"); // the launcher's pid: what a supervisor started
      const stopped = await proc.waitForLine((line) => String(line.msg).startsWith("stopped"));
      assert.equal(stopped.exitCode, 0, JSON.stringify(stopped));
      assert.ok((await inflight).sleptMs >= 500);
      await proc.exited;
      // Nothing is left serving on the port.
      await assert.rejects(connectChannel(port), /Cannot connect/);
    } finally {
      await stopProcess(proc);
    }
  });
}
