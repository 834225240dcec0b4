import { test } from "node:test";
import { spawn, spawnSync } from "node:child_process";
import { type AddressInfo, createServer } from "node:net";
import assert from "node:assert/strict";
import { demo } from "../../src/demo/demo.ts";
import { createClient } from "../../src/rpc/client.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { connectChannel, rejectsWith, runtime } from "../helpers/net.ts";
import { CONFIG_VARIABLES } from "../../src/config/variables.ts";
import { VERSION } from "../../src/node.ts";
import { type NodeProcess, ROOT, RUNNER_NAMES, RUNNERS, type RunnerName, sendSignal, spawnNode, startNodeProcess, stopProcess } from "../helpers/process.ts";

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
          // The same words on every runtime (Bun and Deno word it differently themselves).
          assert.equal(error?.msg, `Cannot listen for ${what} on 127.0.0.1:${port} (${variable}): address already in use: another process listens on port ${port}`, JSON.stringify(proc.lines));
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

  test(`the reference node on ${runner} blames EBB_HOST for a host it cannot bind (exit 3) or read (exit 2), and refuses to advertise 0.0.0.0 (exit 2)`, async () => {
    const start = (env: Record<string, string>) => spawnNode(runner, { EBB_RPC_PORT: "0", EBB_HTTP_PORT: "0", EBB_NODE_ID: "host", EBB_INSECURE: "1", ...env });
    const procs = [
      // A name that does not resolve, and an address (TEST-NET-1) that is not this machine's.
      start({ EBB_HOST: "nope.invalid" }),
      start({ EBB_HOST: "192.0.2.1" }),
      start({ EBB_HOST: "256.1.1.1" }),
      start({ EBB_ADVERTISE: "0.0.0.0:7400" }),
      start({ EBB_HOST: "0.0.0.0", EBB_ADVERTISE: "[::]:7400" }),
    ];
    try {
      const [unresolved, foreign, unreadable, everywhere, everywhere6] = procs;
      const bindError = (proc: NodeProcess) => String(proc.lines.find((l) => l.level === "error")?.msg);
      assert.equal(await unresolved!.exited, 3);
      assert.equal(bindError(unresolved!), 'Cannot listen for RPC on nope.invalid:0 (EBB_HOST): "nope.invalid" does not resolve to an address of this machine');
      assert.equal(await foreign!.exited, 3);
      assert.match(bindError(foreign!), /^Cannot listen for RPC on 192\.0\.2\.1:0 \(EBB_HOST\): "192\.0\.2\.1" is not an address of this machine \(/);
      assert.equal(await unreadable!.exited, 2);
      assert.match(unreadable!.stderr(), /^Invalid configuration: EBB_HOST="256\.1\.1\.1" must be an IP address \(such as 127\.0\.0\.1, 0\.0\.0\.0 or ::\) or a host name of this machine\n$/);
      for (const [proc, advertise] of [[everywhere!, "0.0.0.0:7400"], [everywhere6!, "[::]:7400"]] as const) {
        assert.equal(await proc.exited, 2);
        assert.equal(proc.stderr(), `Invalid configuration: EBB_ADVERTISE=${JSON.stringify(advertise)} is not an address others can reach: 0.0.0.0 and :: mean every interface of this machine; give the one others call (e.g. the pod's IP)\n`);
      }
    } finally {
      await Promise.all(procs.map(stopProcess));
    }
  });
}

/** The "Your own service" fixture as a script on each runtime, and compiled (into its own file: other tests compile it too). */
function greeterCommand(runner: RunnerName): { command: string; args: string[] } {
  const entry = "tests/fixtures/greeter.ts";
  if (runner === "bun") return { command: RUNNERS.bun.command, args: [entry] };
  if (runner === "deno") return { command: RUNNERS.deno.command, args: ["run", "--allow-net", "--allow-env", entry] };
  const built = spawnSync(RUNNERS.bun.command, ["build", "--compile", "--bytecode", "--format=esm", entry, "--outfile", "dist/greeter-args"], { cwd: ROOT, encoding: "utf8" });
  assert.equal(built.status, 0, built.stderr);
  return { command: `${ROOT}dist/greeter-args`, args: [] };
}

/** Runs a command to its end with no EBB_* variables of its own. */
function runToEnd(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1", EBB_RPC_PORT: "0", EBB_HTTP_PORT: "0" }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

for (const runner of RUNNER_NAMES) {
  test(`a runNode service on ${runner} answers --help (its EBB_* variables) and --version, and exits 2 on an argument it does not know instead of starting`, async () => {
    const { command, args } = greeterCommand(runner);
    const [help, version, unknown, misspelt] = await Promise.all([
      runToEnd(command, [...args, "--help"]),
      runToEnd(command, [...args, "--version"]),
      runToEnd(command, [...args, "--port", "7500"]),
      runToEnd(command, [...args, "--verison"]),
    ]);
    const runtimeName = runner === "deno" ? "deno" : "bun";
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, new RegExp(`^An ebb node \\(ebb ${VERSION.replaceAll(".", "\\.")}, ${runtimeName} [^)]+\\)\n`));
    for (const { name } of CONFIG_VARIABLES) assert.match(help.stdout, new RegExp(`^  ${name} `, "m"), `${name} in --help`);
    assert.match(help.stdout, /^Exit codes: 0 drained cleanly/m);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, new RegExp(`^ebb ${VERSION.replaceAll(".", "\\.")} \\(${runtimeName} \\S+\\)\n$`));
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stdout, "", "no node started: no log lines");
    assert.equal(unknown.stderr, 'ebb node: unknown argument "--port"; a node takes its settings from EBB_* variables, listed by --help\n');
    assert.equal(misspelt.code, 2);
    assert.match(misspelt.stderr, /^ebb node: unknown argument "--verison" \(did you mean --version\?\)/);
  });
}
