import { test } from "node:test";
import assert from "node:assert/strict";
import { createMemoryRuntime, MemoryExit } from "../../src/runtime/memory.ts";
import { runNode } from "../../src/run.ts";
import { VERSION } from "../../src/node.ts";

/** Runs `runNode` with `args` on the in-memory runtime: what it printed and the code it exited with. */
async function withArgs(args: string[], options: { name?: string; version?: string; env?: Record<string, string> } = {}): Promise<{ code: number; stdout: string; stderr: string; setupRan: boolean }> {
  const { env, ...naming } = options;
  const runtime = createMemoryRuntime({ args, env });
  let setupRan = false;
  const error = await runNode(() => void (setupRan = true), { runtime, ...naming }).then(
    () => assert.fail("runNode started a node"),
    (thrown: unknown) => thrown,
  );
  assert.ok(error instanceof MemoryExit, String(error));
  return { code: error.code, stdout: runtime.output("stdout"), stderr: runtime.output("stderr"), setupRan };
}

test("runNode answers --version with the service's name and version when given, ebb's otherwise", async () => {
  const named = await withArgs(["--version"], { name: "greeter", version: "1.2.0" });
  assert.equal(named.code, 0);
  assert.equal(named.stdout, `greeter 1.2.0 (ebb ${VERSION}, memory ${createMemoryRuntime().version})\n`);
  assert.equal(named.setupRan, false);
  assert.equal((await withArgs(["-v"])).stdout, `ebb ${VERSION} (memory ${createMemoryRuntime().version})\n`);
});

test("runNode answers --help with every EBB_* variable and the exit codes, before reading any", async () => {
  // A bad variable does not stand between an operator and the help that describes it.
  const help = await withArgs(["--help"], { name: "greeter", version: "1.2.0", env: { EBB_RPC_PORT: "seventy" } });
  assert.equal(help.code, 0);
  assert.match(help.stdout, new RegExp(`^greeter 1\\.2\\.0: an ebb node \\(ebb ${VERSION.replaceAll(".", "\\.")}, memory `));
  assert.match(help.stdout, /^  EBB_RPC_PORT {2,}msgpack-rpc TCP port/m);
  assert.match(help.stdout, /^Exit codes: 0 drained cleanly/m);
});

test("runNode exits 2 on an argument it does not know, naming it, and never starts the node", async () => {
  const unknown = await withArgs(["--port", "7500"], { name: "greeter" });
  assert.equal(unknown.code, 2);
  assert.equal(unknown.stdout, "");
  assert.equal(unknown.stderr, 'greeter: unknown argument "--port"; a node takes its settings from EBB_* variables, listed by --help\n');
  assert.equal(unknown.setupRan, false);
  assert.match((await withArgs(["--hlep"])).stderr, /^ebb node: unknown argument "--hlep" \(did you mean --help\?\)/);
});
