import { test } from "node:test";
import assert from "node:assert/strict";
import { createClusterClient } from "../../src/cluster/client.ts";
import { greeter } from "../fixtures/greeter.ts";
import { rejectsWith, runtime } from "../helpers/net.ts";
import { fixtureCommand, sendSignal, startCommand, stopProcess } from "../helpers/process.ts";

const ENTRY = "tests/fixtures/greeter.ts";

for (const runner of ["bun", "deno", "binary"] as const) {
  test(`a service of your own runs through runNode on ${runner}: warm-up, typed calls, validation, drain on SIGTERM`, async () => {
    const { command, args } = fixtureCommand(ENTRY, runner);
    const proc = await startCommand(runner, command, args, { EBB_NODE_ID: `greeter-${runner}`, EBB_LOG_FORMAT: "json" });
    const cluster = createClusterClient({ runtime, addresses: [`127.0.0.1:${proc.port}`] });
    try {
      await proc.waitForLine((l) => l.msg === 'startup hook "warm-up" done');
      const api = cluster.client(greeter);
      assert.equal(await api.hello({ name: "ebb" }), "Hello, ebb!");
      await rejectsWith(api.hello({ name: "" }), "INVALID_PARAMS");
      sendSignal(proc, "SIGTERM");
      assert.equal(await proc.exited, 0);
      const stopped = proc.lines.find((l) => String(l.msg).startsWith("stopped:"));
      assert.equal(stopped?.exitCode, 0);
    } finally {
      cluster.close();
      await stopProcess(proc);
    }
  });
}
