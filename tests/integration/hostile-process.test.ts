// Hostile peers against real processes (issue 10, finding 6): Bun, Deno and the compiled binary.
import { test } from "node:test";
import assert from "node:assert/strict";
import { RpcError } from "../../src/rpc/errors.ts";
import { connectChannel, connectRaw, type RawConnection } from "../helpers/net.ts";
import { RUNNER_NAMES, RUNNERS, sendSignal, startCommand, stopProcess } from "../helpers/process.ts";

const DESCRIPTORS = 128;

for (const runner of RUNNER_NAMES) {
  test(`${runner}: a flood of connections past the descriptor limit is survived, and the node serves again after it`, async () => {
    const { command, args } = RUNNERS[runner];
    // The node gets few descriptors and a connection cap above them, so accepting itself fails (EMFILE).
    const proc = await startCommand(runner, "bash", ["-c", `ulimit -n ${DESCRIPTORS} && exec "$0" "$@"`, command, ...args], {
      EBB_MAX_CONNECTIONS: "100000",
    });
    const flood: RawConnection[] = [];
    try {
      // A node out of descriptors may also refuse outright (Deno, while it renews its listener): fine for a flood.
      for (let i = 0; i < DESCRIPTORS * 2; i++) await connectRaw(proc.port).then((raw) => flood.push(raw), () => undefined);
      assert.ok(flood.length > DESCRIPTORS, `${flood.length} of the flood connected`);
      // Deno reports the failed accepts to the core, which logs them in aggregate; Bun retries inside the runtime.
      if (runner === "deno") await proc.waitForLine((l) => /cannot accept connections: .*Too many open files/.test(String(l.msg)));
      for (const raw of flood) raw.socket.close();
      // On Deno, callers that queued behind the failed accepts are reset when the listener is
      // renewed: a client that tries again (as ebb's cluster client does) is served.
      const recovery = performance.now();
      assert.deepEqual(await callUntilServed(proc.port, { after: "flood" }), { after: "flood" });
      // Served again within the core's accept back-off (at most 1 s), a renewal and a few client back-offs.
      const recoveredMs = performance.now() - recovery;
      assert.ok(recoveredMs < 5_000, `served again after ${Math.round(recoveredMs)} ms`);
      assert.equal(proc.child.exitCode, null, "the node is still running");
      sendSignal(proc, "SIGTERM");
      assert.equal(await proc.exited, 0);
      assert.doesNotMatch(proc.stderr(), /Uncaught/);
    } finally {
      for (const raw of flood) raw.socket.close();
      await stopProcess(proc);
    }
  });
}

/**
 * Calls demo.echo on a new connection each time until one is answered, backing
 * off like ebb's cluster client (25 ms doubling to 1 s) for at most 20 s: while
 * a Deno node renews its listener, and until it has descriptors to open it, the
 * port refuses connections.
 */
async function callUntilServed(port: number, input: unknown): Promise<unknown> {
  const deadline = Date.now() + 20_000;
  for (let backoffMs = 25; ; backoffMs = Math.min(1_000, backoffMs * 2)) {
    try {
      const channel = await connectChannel(port);
      try {
        return await channel.call("demo.echo", input, { timeoutMs: 5_000 });
      } finally {
        channel.close();
      }
    } catch (error) {
      if (!(error instanceof RpcError) || error.code !== "UNAVAILABLE" || Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, backoffMs));
  }
}
