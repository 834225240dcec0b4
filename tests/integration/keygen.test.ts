import { test } from "node:test";
import assert from "node:assert/strict";
import { connectChannel } from "../helpers/net.ts";
import { RUNNER_NAMES, runCli, sendSignal, startNodeProcess, stopProcess } from "../helpers/process.ts";

for (const runner of RUNNER_NAMES) {
  test(`${runner}: a key from ebb keygen starts a keyed node that its holders reach, and "passwordpassword" is refused naming EBB_CLUSTER_KEY`, async () => {
    const [first, second, weak] = await Promise.all([
      runCli(runner, ["keygen"]),
      runCli(runner, ["keygen"]),
      runCli(runner, ["serve"], { EBB_CLUSTER_KEY: "passwordpassword", EBB_RPC_PORT: "0", EBB_HTTP_PORT: "0" }),
    ]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^[A-Za-z0-9+/]{43}=\n$/, "32 random bytes in base64");
    assert.notEqual(first.stdout, second.stdout);
    assert.equal(weak.code, 2, weak.stderr);
    assert.match(weak.stderr, /EBB_CLUSTER_KEY=\(16 characters, not shown\) must encode at least 16 random bytes .*run "ebb keygen" to make one/);
    assert.ok(!weak.stderr.includes("passwordpassword"), "the secret is not echoed");

    const key = first.stdout.trim();
    const node = await startNodeProcess(runner, { EBB_CLUSTER_KEY: key });
    try {
      const channel = await connectChannel(node.port, { clusterKey: key });
      const pong = (await channel.call("$ping", undefined)) as { node: unknown };
      assert.equal(typeof pong.node, "string");
      channel.close();
      sendSignal(node, "SIGTERM");
      assert.equal(await node.exited, 0);
    } finally {
      await stopProcess(node);
    }
  });
}
