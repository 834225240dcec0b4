import { test } from "node:test";
import { type AddressInfo, createServer } from "node:net";
import assert from "node:assert/strict";
import { demo } from "../../src/demo/demo.ts";
import { createClient } from "../../src/rpc/client.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { connectChannel, rejectsWith, runtime } from "../helpers/net.ts";
import { RUNNER_NAMES, sendSignal, spawnNode, startNodeProcess, stopProcess } from "../helpers/process.ts";

// Each runtime's test run calls a node on each runtime: Bun -> Deno and Deno -> Bun included.
for (const runner of RUNNER_NAMES) {
  test(`a ${runtime.name} client calls the reference node running on ${runner}`, async () => {
    const proc = await startNodeProcess(runner, { EBB_NODE_ID: `ref-${runner}` });
    try {
      const listening = proc.lines.find((l) => typeof l.rpc === "string")!;
      assert.match(String(listening.msg), /^listening on 127\.0\.0\.1:\d+, http 127\.0\.0\.1:\d+$/);
      assert.equal(listening.node, `ref-${runner}`);
      assert.equal(listening.runtime, runner === "deno" ? "deno" : "bun");
      const channel = await connectChannel(proc.port);
      try {
        const client = createClient(demo, channel);
        const payload = { text: "héllo", list: [1, 2.5, null, true], bytes: new Uint8Array([1, 2, 3]), big: "x".repeat(100_000) };
        assert.deepEqual(await client.echo(payload), payload);
        const echoes = await Promise.all(Array.from({ length: 200 }, (_, i) => client.echo(i)));
        assert.deepEqual(echoes, Array.from({ length: 200 }, (_, i) => i));
        const { sleptMs } = await client.sleep({ ms: 20 });
        assert.ok(sleptMs >= 19, `slept ${sleptMs} ms`);
        const info = (await channel.call("$info", undefined)) as { runtime: string; node: string };
        assert.equal(info.runtime, runner === "deno" ? "deno" : "bun");
        await assert.rejects(client.sleep({ ms: -1 }), (e: unknown) => e instanceof RpcError && e.code === "INVALID_PARAMS");
        await assert.rejects(client.sleep({ ms: 5_000 }, { timeoutMs: 50 }), (e: unknown) => e instanceof RpcError && e.code === "DEADLINE_EXCEEDED");
      } finally {
        channel.close();
      }
      sendSignal(proc, "SIGTERM");
      assert.equal(await proc.exited, 0);
    } finally {
      await stopProcess(proc);
    }
  });

  test(`the reference node on ${runner} warns about an unknown variable and writes readable lines when asked`, async () => {
    const proc = spawnNode(runner, { EBB_RPC_PORT: "0", EBB_HTTP_PORT: "0", EBB_LOG_FORMAT: "pretty", EBB_DRAIN_DELAY: "100" });
    try {
      const warning = await proc.waitForLine((l) => String(l.msg).includes("EBB_DRAIN_DELAY"));
      assert.equal(warning.unparsed, true, "pretty lines are not JSON");
      assert.match(String(warning.msg), /WARN .* Unknown variable EBB_DRAIN_DELAY is ignored; did you mean EBB_DRAIN_DELAY_MS\?/);
    } finally {
      await stopProcess(proc);
    }
  });

  test(`the reference node on ${runner} names every bad variable and exits 2`, async () => {
    const proc = spawnNode(runner, { EBB_RPC_PORT: "http", EBB_MAX_MESSAGE_BYTES: "-5", EBB_DEMO_RECORD: "yes", EBB_BENCH_PLAIN_SHUTDOWN: "2" });
    try {
      assert.equal(await proc.exited, 2);
      assert.match(proc.stderr(), /Invalid configuration: EBB_RPC_PORT="http" must be a number; EBB_MAX_MESSAGE_BYTES="-5" must be at least 1024/);
      // The demo's and the bench's switches are named in the same message.
      assert.match(proc.stderr(), /; EBB_DEMO_RECORD="yes" must be 1, 0, true or false; EBB_BENCH_PLAIN_SHUTDOWN="2" must be 0 or 1\n/);
    } finally {
      await stopProcess(proc);
    }
  });

  test(`the reference node on ${runner} makes its warm-up calls in process while callers from outside are told UNAVAILABLE`, async () => {
    const proc = await startNodeProcess(runner, { EBB_NODE_ID: "warm", EBB_DEMO_WARMUP_MS: "30000", EBB_STARTUP_TIMEOUT_MS: "60000" });
    try {
      await proc.waitForLine((l) => l.msg === 'startup hook "demo-warmup" running');
      const channel = await connectChannel(proc.port);
      const refused = await rejectsWith(createClient(demo, channel).echo("too early"), "UNAVAILABLE");
      assert.equal(refused.processed, false);
      channel.close();
      // The hook's own calls were served: 100 in-process echoes, before the node is ready.
      const metrics = await (await fetch(`http://127.0.0.1:${proc.httpPort}/metrics`)).text();
      assert.match(metrics, /^ebb_calls_total\{method="demo.echo",code="OK"\} 100$/m);
      assert.match(metrics, /^ebb_calls_total\{method="demo.echo",code="UNAVAILABLE"\} 1$/m);
      assert.match(metrics, /^ebb_lifecycle_state\{state="starting"\} 1$/m);
      sendSignal(proc, "SIGTERM");
      assert.equal(await proc.exited, 0);
    } finally {
      await stopProcess(proc);
    }
  });

  test(`the reference node on ${runner} names the listener whose port is taken and exits 3`, async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      for (const [variable, other, what] of [["EBB_RPC_PORT", "EBB_HTTP_PORT", "RPC"], ["EBB_HTTP_PORT", "EBB_RPC_PORT", "HTTP"]] as const) {
        const proc = spawnNode(runner, { [variable]: String(port), [other]: "0", EBB_NODE_ID: "clash" });
        try {
          assert.equal(await proc.exited, 3);
          const error = proc.lines.find((l) => l.level === "error");
          assert.match(String(error?.msg), new RegExp(`^Cannot listen for ${what} on 127\\.0\\.0\\.1:${port} \\(${variable}\\): `), JSON.stringify(proc.lines));
          // The stop line reports the code the process exits with.
          const stopped = proc.lines.find((l) => String(l.msg).startsWith("stopped:"));
          assert.equal(stopped?.exitCode, 3, JSON.stringify(stopped));
        } finally {
          await stopProcess(proc);
        }
      }
    } finally {
      taken.close();
    }
  });
}
