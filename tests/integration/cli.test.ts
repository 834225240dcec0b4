import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import type { BenchSummary } from "../../src/cli/bench.ts";
import { CONFIG_VARIABLES } from "../../src/config/variables.ts";
import { DEMO_SWITCHES } from "../../src/demo/switches.ts";
import { createClient } from "../../src/rpc/client.ts";
import { demo } from "../../src/demo/demo.ts";
import { connectChannel } from "../helpers/net.ts";
import { formatCount } from "../../src/cli/table.ts";
import { type CliResult, DENO_TASK, HOST_RUNNER, type NodeProcess, ROOT, RUNNER_NAMES, RUNNERS, type RunnerName, runCli, sendSignal, startCli, startCommand, startNodeProcess, stopProcess } from "../helpers/process.ts";

// Two cluster keys (from "ebb keygen"): the node's, and one it does not hold.
const KEY = "q9Hn2V0d8mXbR4tLcW7yPz1sKfA6uJeG3oNvIhTgBkE=";
const OTHER_KEY = "Zx4Tb8Lq2Wn6Yc0Vh3Jm7Rd1Ks5Pf9Ga2Ue6Io0Ny4M=";

/** A command's result and how long it ran, wall clock. */
async function timed(run: Promise<CliResult>): Promise<CliResult & { ms: number }> {
  const started = performance.now();
  const result = await run;
  return { ...result, ms: Math.round(performance.now() - started) };
}

/** A node's `ebb_calls_total` for `method`, by code, from its /metrics. */
async function callsAnswered(proc: NodeProcess, method: string): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${proc.httpPort}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const [, code, n] of text.matchAll(new RegExp(`^ebb_calls_total\\{method="${method.replace(".", "\\.")}",code="(\\w+)"\\} (\\d+)$`, "gm"))) counts[code!] = Number(n);
  return counts;
}

const FAST = { EBB_SWIM_PROBE_INTERVAL_MS: "200", EBB_SWIM_PROBE_TIMEOUT_MS: "100", EBB_SWIM_GOSSIP_INTERVAL_MS: "50" };

/** Two nodes on `runner`, b joined through a, each seeing the other ready. */
async function startPair(runner: RunnerName): Promise<[NodeProcess, NodeProcess]> {
  const a = await startNodeProcess(runner, { ...FAST, EBB_NODE_ID: "a" });
  const b = await startNodeProcess(runner, { ...FAST, EBB_NODE_ID: "b", EBB_SEEDS: `127.0.0.1:${a.port}` });
  const seesReady = (proc: NodeProcess, id: string) => proc.waitForLine((l) => l.member === id && l.memberState === "ready");
  await Promise.all([seesReady(a, "b"), seesReady(b, "a")]);
  return [a, b];
}

for (const runner of RUNNER_NAMES) {
  test(`${runner}: ebb --help, <command> --help and --version; usage mistakes exit 2 with the reason`, async () => {
    const [help, callHelp, membersHelp, benchHelp, serveHelp, version, unknown, noMethod, badFlag, badRate, both, misspelt, negative, stray, strayKeygen, badDuration, versoin, servePort] = await Promise.all([
      runCli(runner, ["--help"]),
      runCli(runner, ["call", "--help"]),
      runCli(runner, ["members", "--help"]),
      runCli(runner, ["bench", "--help"]),
      runCli(runner, ["serve", "--help"]),
      runCli(runner, ["--version"]),
      runCli(runner, ["frobnicate"]),
      runCli(runner, ["call"]),
      runCli(runner, ["call", "demo.echo", "--adr", "127.0.0.1:1"]),
      runCli(runner, ["bench", "--rate", "fast"]),
      runCli(runner, ["bench", "--rate", "5", "--concurrency", "2"]),
      runCli(runner, ["memebrs"]),
      runCli(runner, ["bench", "--rate", "-5"]),
      runCli(runner, ["members", "extra", "--addr", "127.0.0.1:1"]),
      runCli(runner, ["keygen", "extra"]),
      runCli(runner, ["bench", "--duration", "2d"]),
      runCli(runner, ["--verison"]),
      runCli(runner, ["serve", "--port", "7500"]),
    ]);
    assert.equal(help.code, 0);
    for (const name of ["serve", "call", "members", "bench", "keygen"]) assert.match(help.stdout, new RegExp(`^  ${name} `, "m"));
    for (const { name: variable } of [...CONFIG_VARIABLES, ...Object.values(DEMO_SWITCHES)]) assert.match(help.stdout, new RegExp(`^  ${variable} `, "m"), `${variable} in --help`);
    assert.match(callHelp.stdout, /^Usage: ebb call <method> \[json\]/m);
    assert.match(callHelp.stdout, /--addr <host:port,...>/);
    assert.match(callHelp.stdout, /^ {2}--no-check {16}send the input without checking it against the method's schema first$/m);
    assert.match(membersHelp.stdout, /^Usage: ebb members/m);
    for (const option of ["--rate", "--concurrency", "--duration", "--json", "--method", "--input"]) assert.match(benchHelp.stdout, new RegExp(option));
    assert.match(serveHelp.stdout, /EBB_SHUTDOWN_TIMEOUT_MS/);
    assert.equal(version.code, 0);
    assert.match(version.stdout, new RegExp(`^ebb \\d+\\.\\d+\\.\\d+ \\((bun|deno) `));
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"; the commands are serve, call, describe, members, bench, keygen, token\n/);
    assert.equal(misspelt.code, 2);
    assert.match(misspelt.stderr, /^ebb: unknown command "memebrs" \(did you mean members\?\); the commands are /);
    assert.equal(noMethod.code, 2);
    assert.match(noMethod.stderr, /^ebb call: Name the method to call/);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /^ebb call: Unknown option "--adr"; did you mean --addr\?\nRun "ebb call --help" for usage\.\n$/);
    assert.equal(badRate.code, 2);
    assert.match(badRate.stderr, /^ebb bench: --rate must be a positive whole number \(got "fast"\)$/m);
    assert.equal(negative.code, 2);
    assert.match(negative.stderr, /^ebb bench: --rate must be a positive whole number \(got "-5"\)$/m);
    assert.equal(stray.code, 2, "a stray argument is not ignored");
    assert.match(stray.stderr, /^ebb members: Unexpected argument "extra": ebb members takes no arguments, only options$/m);
    assert.equal(strayKeygen.code, 2);
    assert.equal(strayKeygen.stdout, "", "no key printed");
    assert.match(strayKeygen.stderr, /^ebb keygen: Unexpected argument "extra"/);
    assert.equal(versoin.code, 2);
    assert.match(versoin.stderr, /^ebb: unknown option "--verison" \(did you mean --version\?\)$/m);
    assert.equal(servePort.code, 2, "no node started on 7400");
    assert.match(servePort.stderr, /^ebb serve: Unknown option "--port": ebb serve takes no options$/m);
    assert.equal(badDuration.code, 2);
    assert.match(badDuration.stderr, /--duration must be a duration such as 500ms, 10s, 2m or 1h/);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /Give --rate or --concurrency, not both/);
  });

  test(`${runner}: ebb call prints results as JSON, and errors as code and message with exit 1 (with the input schema on INVALID_PARAMS); ebb describe prints the services`, async () => {
    const [a, b] = await startPair(runner);
    try {
      const addr = `127.0.0.1:${a.port}`;
      const [echo, viaSeeds, info, missing, invalid, badJson, unreachable, described, describedJson] = await Promise.all([
        runCli(runner, ["call", "demo.echo", '{"hello":["wörld",1,null]}', "--addr", addr]),
        runCli(runner, ["call", "demo.sleep", '{"ms":5}', "--seeds", `127.0.0.1:${b.port}`]),
        runCli(runner, ["call", "$info", "--addr", addr]),
        runCli(runner, ["call", "demo.nope", "{}", "--addr", addr]),
        runCli(runner, ["call", "demo.sleep", '{"ms":"soon"}', "--addr", addr, "--no-check"]),
        runCli(runner, ["call", "demo.echo", "{oops", "--addr", addr]),
        // A port nothing listens on: the one just freed by nobody is not knowable, so use port 1.
        runCli(runner, ["call", "demo.echo", "{}", "--addr", "127.0.0.1:1"]),
        runCli(runner, ["describe", "--seeds", `127.0.0.1:${b.port}`]),
        runCli(runner, ["describe", "--addr", addr, "--json"]),
      ]);
      assert.equal(echo.code, 0, echo.stderr);
      assert.deepEqual(JSON.parse(echo.stdout), { hello: ["wörld", 1, null] });
      assert.equal(viaSeeds.code, 0, viaSeeds.stderr);
      assert.ok((JSON.parse(viaSeeds.stdout) as { sleptMs: number }).sleptMs >= 4);
      assert.equal(info.code, 0, info.stderr);
      assert.equal((JSON.parse(info.stdout) as { node: string }).node, "a");
      assert.equal(missing.code, 1);
      assert.equal(missing.stdout, "");
      assert.match(missing.stderr, /^METHOD_NOT_FOUND: /);
      assert.equal(invalid.code, 1);
      assert.match(invalid.stderr, /^INVALID_PARAMS: .*ms/);
      assert.match(invalid.stderr, /^data: \[/m);
      // The node's issues, and the method's input schema from $info beside them.
      assert.match(invalid.stderr, /^input schema: \{"type":"object","properties":\{"ms":\{"type":"integer","minimum":0,"maximum":3600000\}\},"required":\["ms"\]\}$/m);
      assert.equal(described.code, 0, described.stderr);
      assert.match(described.stdout, /^demo\.sleep {2}\(idempotent\)\n {2}input: {2}\{"type":"object".*\n {2}output: \{"type":"object"/m);
      assert.match(described.stdout, /^3 methods of 1 service, as described by [ab]$/m);
      assert.equal(describedJson.code, 0, describedJson.stderr);
      assert.deepEqual((JSON.parse(describedJson.stdout) as Record<string, { name: string; idempotent: boolean }[]>).demo!.map((m) => `${m.name} ${m.idempotent}`), ["demo.echo true", "demo.sleep true", "demo.work true"]);
      assert.equal(badJson.code, 2);
      assert.match(badJson.stderr, /The input is not valid JSON/);
      assert.equal(unreachable.code, 1);
      assert.match(unreachable.stderr, /^UNAVAILABLE: No node to call/);
      assert.match(unreachable.stderr, /not processed: no handler ran/);
    } finally {
      await Promise.all([stopProcess(a), stopProcess(b)]);
    }
  });

  test(`${runner}: ebb call checks the input against the method's schema from $info and does not send a bad one; --no-check sends it and the node answers INVALID_PARAMS`, async () => {
    const node = await startNodeProcess(runner, { EBB_NODE_ID: "checked" });
    try {
      const addr = `127.0.0.1:${node.port}`;
      const schema = 'input schema: {"type":"object","properties":{"ms":{"type":"integer","minimum":0,"maximum":3600000}},"required":["ms"]}';
      const refused = await runCli(runner, ["call", "demo.sleep", '{"ms":"soon"}', "--addr", addr]);
      assert.equal(refused.code, 1, refused.stderr);
      assert.equal(refused.stdout, "");
      assert.equal(
        refused.stderr,
        [
          'INVALID_PARAMS: Invalid input for "demo.sleep": ms: Invalid input: expected number, received string',
          "(not sent: the input does not match the method's input schema from $info; --no-check sends it anyway)",
          schema,
          "",
        ].join("\n"),
      );
      const wrongShape = await runCli(runner, ["call", "demo.sleep", "[1]", "--addr", addr]);
      assert.equal(wrongShape.code, 1, wrongShape.stderr);
      assert.match(wrongShape.stderr, /^INVALID_PARAMS: Invalid input for "demo\.sleep": Invalid input: expected object, received array\n\(not sent: /);
      // Nothing reached the node: its own count of demo.sleep calls, by code, is still empty.
      assert.deepEqual(await callsAnswered(node, "demo.sleep"), {});

      // --no-check sends it: the node refuses it, with its issues, and the schema is shown beside them.
      const sent = await runCli(runner, ["call", "demo.sleep", '{"ms":"soon"}', "--addr", addr, "--no-check"]);
      assert.equal(sent.code, 1, sent.stderr);
      assert.match(sent.stderr, /^INVALID_PARAMS: Invalid input for "demo\.sleep": ms: Invalid input: expected number, received string\ndata: \[/);
      assert.ok(sent.stderr.endsWith(`\n${schema}\n`), sent.stderr);
      assert.doesNotMatch(sent.stderr, /not sent/);
      assert.deepEqual(await callsAnswered(node, "demo.sleep"), { INVALID_PARAMS: 1 });

      // A good input passes the check and is answered.
      const good = await runCli(runner, ["call", "demo.sleep", '{"ms":1}', "--addr", addr]);
      assert.equal(good.code, 0, good.stderr);
      assert.ok((JSON.parse(good.stdout) as { sleptMs: number }).sleptMs >= 0);
      assert.deepEqual(await callsAnswered(node, "demo.sleep"), { INVALID_PARAMS: 1, OK: 1 });
    } finally {
      await stopProcess(node);
    }
  });

  test(`${runner}: ebb members shows the cluster as a table or JSON, skipping a seed that does not answer`, async () => {
    const [a, b] = await startPair(runner);
    try {
      const seeds = `127.0.0.1:1,127.0.0.1:${b.port}`;
      const [table, json, none] = await Promise.all([
        runCli(runner, ["members", "--seeds", seeds]),
        runCli(runner, ["members", "--addr", `127.0.0.1:${a.port}`, "--json"]),
        runCli(runner, ["members", "--seeds", "127.0.0.1:1"]),
      ]);
      assert.equal(table.code, 0, table.stderr);
      const lines = table.stdout.trimEnd().split("\n");
      assert.match(lines[0]!, /^ID\s+ADDRESS\s+STATUS\s+LIFECYCLE\s+SERVICES\s+INCARNATION\s+AGE$/);
      assert.match(lines[1]!, new RegExp(`^a\\s+127\\.0\\.0\\.1:${a.port}\\s+alive\\s+ready\\s+demo\\s+\\d+\\s+\\d+(ms|s)$`));
      assert.match(lines[2]!, new RegExp(`^b\\s+127\\.0\\.0\\.1:${b.port}\\s+alive\\s+ready\\s+demo\\s+\\d+\\s+\\d+(ms|s)$`));
      assert.equal(lines.at(-1), `2 members as seen by b (127.0.0.1:${b.port})`);
      assert.equal(json.code, 0, json.stderr);
      const view = JSON.parse(json.stdout) as { node: string; members: { id: string; status: string }[] };
      assert.equal(view.node, "a");
      assert.deepEqual(view.members.map((m) => `${m.id}:${m.status}`).sort(), ["a:alive", "b:alive"]);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /^UNAVAILABLE: no node answered\n {2}127\.0\.0\.1:1: /);
    } finally {
      await Promise.all([stopProcess(a), stopProcess(b)]);
    }
  });

  test(`${runner}: ebb bench runs at a fixed concurrency or rate across the cluster, with plain progress lines off a terminal`, async () => {
    const [a, b] = await startPair(runner);
    try {
      const seeds = `127.0.0.1:${a.port}`;
      const [closed, open] = await Promise.all([
        runCli(runner, ["bench", "--seeds", seeds, "--concurrency", "4", "--duration", "1500ms"]),
        runCli(runner, ["bench", "--seeds", seeds, "--method", "demo.sleep", "--input", '{"ms":2}', "--rate", "200", "--duration", "1s", "--json"]),
      ]);
      assert.equal(closed.code, 0, closed.stderr);
      const out = closed.stdout.split("\n");
      assert.match(out[0]!, /^ebb bench: demo\.echo, concurrency 4, 1\.\d s, seeds /);
      assert.match(out[2]!, /^calls\s+ok\s+errors\s+calls\/s\s+p50\s+p90\s+p99\s+max$/);
      const [calls, ok, errors] = out[3]!.split(/\s+/);
      assert.ok(Number(calls!.replaceAll(",", "")) > 100, out[3]);
      assert.equal(calls, ok);
      assert.equal(errors, "0");
      assert.match(closed.stdout, /^errors\s+none$/m);
      assert.match(closed.stdout, /^nodes\s+a [\d,]+ \([\d.]+%\), b [\d,]+ \([\d.]+%\)$/m);
      // Not a terminal: whole lines, never rewritten in place.
      const stderr = closed.stderr;
      assert.ok(!stderr.includes("\r"), "no carriage returns off a terminal");
      assert.match(stderr, /^\s+1\.\ds\s+[\d,]+ calls\/s {2}0 errors {2}p99 [\d.]+ ms {2}\d+ in flight$/m);

      assert.equal(open.code, 0, open.stderr);
      const summary = JSON.parse(open.stdout) as BenchSummary;
      assert.equal(summary.mode, "rate");
      assert.equal(summary.rate, 200);
      assert.equal(summary.calls, 200, "an open model starts exactly rate x duration calls");
      assert.equal(summary.ok, 200);
      assert.deepEqual(summary.errors, {});
      assert.ok(summary.latencyMs.p50 >= 2, `p50 ${summary.latencyMs.p50} ms for 2 ms sleeps`);
      assert.deepEqual(Object.keys(summary.nodes).sort(), ["a", "b"]);
    } finally {
      await Promise.all([stopProcess(a), stopProcess(b)]);
    }
  });

  test(`${runner}: ebb bench stops within a second, exit 1 and the error, when no retry can fix the calls (METHOD_NOT_FOUND, INVALID_PARAMS, UNAUTHENTICATED); unreachable seeds end within --duration`, async () => {
    const node = await startNodeProcess(runner, { EBB_NODE_ID: "hopeless", EBB_CLUSTER_KEY: KEY });
    try {
      const addr = `127.0.0.1:${node.port}`;
      const keyed = { EBB_CLUSTER_KEY: KEY };
      // An hour-long run ("1h" is a duration too) that must end at the first hopeless answer.
      const bench = (args: string[], env: Record<string, string>) => timed(runCli(runner, ["bench", "--duration", "1h", "--json", ...args], env));
      const [missing, invalid, wrongKey, noService, unreachable] = await Promise.all([
        bench(["--addr", addr, "--method", "kv.nope"], keyed),
        bench(["--addr", addr, "--method", "demo.sleep", "--input", '{"ms":"soon"}', "--rate", "1000"], keyed),
        bench(["--addr", addr], { EBB_CLUSTER_KEY: OTHER_KEY }),
        // Through seeds, a cluster that answers but offers no "kv" is told so within a second.
        bench(["--seeds", addr, "--method", "kv.nope"], keyed),
        timed(runCli(runner, ["bench", "--seeds", "127.0.0.1:1", "--duration", "2s"])),
      ]);
      for (const [run, code, message] of [
        [missing, "METHOD_NOT_FOUND", /^METHOD_NOT_FOUND: Unknown method "kv\.nope"$/m],
        [invalid, "INVALID_PARAMS", /^INVALID_PARAMS: Invalid input for "demo\.sleep": ms: .*\ndata: \[/m],
        [wrongKey, "UNAUTHENTICATED", /^UNAUTHENTICATED: 127\.0\.0\.1:\d+ does not hold any of our cluster keys$/m],
      ] as const) {
        assert.equal(run.code, 1, `${code}: ${run.stderr}`);
        assert.match(run.stderr, message);
        assert.match(run.stderr, new RegExp(`^stopped at the first ${code}: every further call would fail the same way$`, "m"));
        const summary = JSON.parse(run.stdout) as BenchSummary;
        assert.equal(summary.stoppedBy, code);
        assert.equal(summary.ok, 0);
        // Within a second (measured 0.1-0.3 s), with room for a loaded 2-core machine running both suites.
        assert.ok(summary.durationMs < 2_000, `${code}: stopped after ${summary.durationMs} ms`);
        // Less than a second's worth at --rate 1000: what was sent before the first answer came back.
        assert.ok(summary.calls < 1_000, `${code}: ${summary.calls} failing calls sent`);
        assert.ok(run.ms < 10_000, `${code}: ran ${run.ms} ms of a 1 h bench`);
      }
      assert.equal(noService.code, 1, noService.stderr);
      assert.match(noService.stderr, /^UNAVAILABLE: No node offers the service "kv"; 1 node found \(seeds 127\.0\.0\.1:\d+\)$/m);
      assert.ok(noService.ms < 10_000, `ran ${noService.ms} ms`);
      assert.equal(unreachable.code, 1, unreachable.stderr);
      assert.match(unreachable.stderr, /^UNAVAILABLE: No node answered within 2 s \(seeds 127\.0\.0\.1:1\)$/m);
      // 2 s of waiting, plus the process's own start (Deno's included).
      assert.ok(unreachable.ms < 2_000 + 5_000, `gave up after ${unreachable.ms} ms`);
    } finally {
      await stopProcess(node);
    }
  });

  test(`${runner}: ebb call, members and bench pointed at a node's HTTP port say so`, async () => {
    const node = await startNodeProcess(runner, { EBB_NODE_ID: "http-port" });
    try {
      const http = `127.0.0.1:${node.httpPort}`;
      const [call, members, bench] = await Promise.all([
        runCli(runner, ["call", "demo.echo", "{}", "--addr", http]),
        runCli(runner, ["members", "--addr", http]),
        timed(runCli(runner, ["bench", "--addr", http, "--duration", "1h"])),
      ]);
      const hint = new RegExp(`^hint: ${http.replaceAll(".", "\\.")} answers in HTTP: that is a node's EBB_HTTP_PORT; ebb's client commands speak msgpack-rpc to its EBB_RPC_PORT \\(7400 by default\\)$`, "m");
      for (const [name, run] of [["call", call], ["members", members], ["bench", bench]] as const) {
        assert.equal(run.code, 1, `${name}: ${run.stderr}`);
        assert.match(run.stderr, hint, name);
      }
      assert.ok(bench.ms < 10_000, `bench stopped after ${bench.ms} ms of 1 h`);
      // The node's own RPC port gets no hint.
      const right = await runCli(runner, ["call", "demo.echo", "{}", "--addr", `127.0.0.1:${node.port}`]);
      assert.equal(right.code, 0, right.stderr);
    } finally {
      await stopProcess(node);
    }
  });

  test(`${runner}: SIGINT ends ebb bench early with a summary; a second SIGINT quits while calls still hang`, async () => {
    const node = await startNodeProcess(runner, { EBB_NODE_ID: "sigint" });
    try {
      const addr = `127.0.0.1:${node.port}`;
      // Calls of 50 ms: the first SIGINT stops sending, the ones in flight finish, the summary follows.
      const early = startCli(runner, ["bench", "--addr", addr, "--method", "demo.sleep", "--input", '{"ms":50}', "--concurrency", "4", "--duration", "60s"]);
      await early.stderrMatches(/calls\/s/);
      process.kill(early.child.pid!, "SIGINT");
      const ended = await early.done;
      assert.equal(ended.code, 0, ended.stderr);
      assert.match(ended.stdout, /^ebb bench: demo\.sleep, concurrency 4, \d+\.\d s \(interrupted\), addr /);
      assert.match(ended.stdout, /^errors\s+none$/m);
      // Calls that would take a minute: the second SIGINT does not wait for them.
      const stuck = startCli(runner, ["bench", "--addr", addr, "--method", "demo.sleep", "--input", '{"ms":60000}', "--timeout", "120000", "--concurrency", "2", "--duration", "60s"]);
      await stuck.stderrMatches(/2 in flight/);
      process.kill(stuck.child.pid!, "SIGINT");
      await stuck.stderrMatches(/SIGINT: no new calls; waiting for 2 in flight \(SIGINT again to quit now\)/);
      process.kill(stuck.child.pid!, "SIGINT");
      assert.equal((await stuck.done).code, 130);
    } finally {
      await stopProcess(node);
    }
  });
}

/** The README's code blocks in order: each one's info string and text. */
function readmeBlocks(): { info: string; text: string }[] {
  const readme = readFileSync(`${ROOT}README.md`, "utf8");
  return [...readme.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ info: m[1]!, text: m[2]! }));
}

/** The README block that runs `command`, and the block after it (what it prints). */
function readmeSample(command: string): { run: string; output: string } {
  const blocks = readmeBlocks();
  const at = blocks.findIndex((b) => b.info === "sh" && b.text.trimEnd() === command);
  assert.ok(at >= 0, `the README runs ${command} in a block of its own`);
  return { run: blocks[at]!.text.trimEnd(), output: blocks[at + 1]!.text };
}

/** `--name value` from a command line with shell quotes. */
function flagOf(command: string, name: string): string {
  const match = new RegExp(`--${name} ('[^']*'|\\S+)`).exec(command);
  assert.ok(match, `${command} has --${name}`);
  return match[1]!.replace(/^'(.*)'$/, "$1");
}

test("the README's command-line samples are what the commands print: members, call, bench and usage mistakes", async () => {
  const runner = HOST_RUNNER;
  const [a, b] = await startPair(runner);
  try {
    const members = readmeSample("npm run -s ebb -- members --seeds 127.0.0.1:7400");
    const call = readmeSample(`npm run -s ebb -- call demo.echo '{"hello":"cli"}' --seeds 127.0.0.1:7400`);
    const benchCommand = readmeBlocks().find((block) => block.info === "sh" && block.text.startsWith("npm run -s ebb -- bench "))!.text.trimEnd();
    const benchSample = readmeBlocks().find((block) => block.text.startsWith("ebb bench: "))!.text;
    const seeds = `127.0.0.1:${a.port}`;
    const method = flagOf(benchCommand, "method");
    const rate = Number(flagOf(benchCommand, "rate"));
    const [realMembers, realCall, realBench] = await Promise.all([
      runCli(runner, ["members", "--seeds", seeds]),
      runCli(runner, ["call", "demo.echo", '{"hello":"cli"}', "--seeds", seeds]),
      // The README's bench, shorter: the same method, input and rate.
      runCli(runner, ["bench", "--seeds", seeds, "--method", method, "--input", flagOf(benchCommand, "input"), "--rate", String(rate), "--duration", "1s"]),
    ]);
    // members: the same header, rows of the same columns, the same closing line.
    assert.equal(realMembers.code, 0, realMembers.stderr);
    const [shown, real] = [members.output, realMembers.stdout].map((text) => text.trimEnd().split("\n"));
    const words = (line: string) => line.trim().split(/\s+/).join(" ");
    assert.equal(words(shown![0]!), words(real![0]!), "header");
    for (const row of shown!.slice(1, -2)) assert.match(row, /^\w+ +127\.0\.0\.1:\d+ +alive +ready +demo +\d+ +\d+(ms|s|m\d\ds)$/);
    assert.equal(shown![shown!.length - 2], "");
    assert.match(shown!.at(-1)!, /^\d members as seen by a \(127\.0\.0\.1:7400\)$/);
    assert.match(real!.at(-1)!, /^\d members as seen by a \(127\.0\.0\.1:\d+\)$/);
    // call: exactly what it prints.
    assert.equal(realCall.code, 0, realCall.stderr);
    assert.equal(call.output, realCall.stdout);
    // bench: the header names the command's method, rate, duration and seeds; the rest has the real layout.
    assert.equal(realBench.code, 0, realBench.stderr);
    const durationS = Number.parseFloat(flagOf(benchCommand, "duration"));
    const sampleLines = benchSample.trimEnd().split("\n");
    assert.equal(sampleLines[0], `ebb bench: ${method}, rate ${formatCount(rate)}/s, ${durationS.toFixed(1)} s, seeds ${flagOf(benchCommand, "seeds")}`);
    const realLines = realBench.stdout.trimEnd().split("\n");
    assert.match(realLines[0]!, new RegExp(`^ebb bench: ${method.replace(".", "\\.")}, rate ${formatCount(rate)}/s, 1\\.\\d s, seeds ${seeds}$`));
    const columns = (line: string) => line.trim().split(/\s{2,}/).length;
    assert.equal(words(sampleLines[2]!), words(realLines[2]!), "the totals header");
    assert.equal(columns(sampleLines[3]!), columns(realLines[3]!), "the totals row");
    assert.deepEqual(sampleLines.slice(5).map((l) => l.split(/\s+/)[0]), realLines.slice(5).map((l) => l.split(/\s+/)[0]), "errors, retries, nodes");
    assert.equal(Number(sampleLines[3]!.split(/\s+/)[0]!.replaceAll(",", "")), rate * durationS, "an open model starts rate x duration calls");
  } finally {
    await Promise.all([stopProcess(a), stopProcess(b)]);
  }
  // The usage mistakes the Command line section shows, exactly.
  const readme = readFileSync(`${ROOT}README.md`, "utf8");
  const transcript = /^\$ ebb bench --concurency 8\n[\s\S]*?(?=^```)/m.exec(readme)?.[0];
  assert.ok(transcript, "the README shows usage mistakes");
  for (const [, args, printed] of transcript.matchAll(/^\$ ebb (.*)\n((?:[^$].*\n)*)/gm)) {
    const result = await runCli(runner, args!.split(" "));
    assert.equal(result.code, 2);
    assert.equal(result.stderr, printed, `ebb ${args}`);
  }
});

test("deno task serve runs the node with only --allow-net and --allow-env, serves, and drains on SIGTERM", async () => {
  const task = (JSON.parse(readFileSync(`${ROOT}deno.json`, "utf8")) as { tasks: Record<string, string> }).tasks.serve!;
  const flags = task.split(/\s+/).filter((word) => word.startsWith("-"));
  assert.deepEqual(flags, ["--allow-net", "--allow-env"], `least permissions in "${task}"`);
  const proc = await startCommand("deno task", DENO_TASK.command, DENO_TASK.args, { EBB_NODE_ID: "task-node" });
  try {
    const channel = await connectChannel(proc.port);
    assert.deepEqual(await createClient(demo, channel).echo({ via: "deno task" }), { via: "deno task" });
    channel.close();
    const ready = await fetch(`http://127.0.0.1:${proc.httpPort}/readyz`);
    assert.equal(ready.status, 200);
    await ready.body?.cancel();
    sendSignal(proc, "SIGTERM");
    assert.equal(await proc.exited, 0);
    assert.ok(proc.lines.some((l) => String(l.msg).startsWith("stopped: drained")), "the node itself drained");
  } finally {
    await stopProcess(proc);
  }
});

/** Runs `ebb <args>` with its output on a real terminal: script(1) gives it a pty. */
async function onTerminal(runner: RunnerName, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; output: string }> {
  const { command, args: base } = RUNNERS[runner];
  const words = ["env", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), command, ...base, ...args];
  const child = spawn("script", ["-qec", words.map((word) => `'${word}'`).join(" "), "/dev/null"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (text: string) => (output += text));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  return { code, output };
}

test("on a terminal (a real pty from script(1)), ebb bench rewrites one progress line in place and logs are readable lines, on Bun, Deno and the binary", async () => {
  const node = await startNodeProcess("bun", { EBB_NODE_ID: "pty" });
  try {
    for (const runner of RUNNER_NAMES) {
      const bench = await onTerminal(runner, ["bench", "--addr", `127.0.0.1:${node.port}`, "--duration", "700ms", "--concurrency", "2"]);
      assert.equal(bench.code, 0, `${runner}: ${bench.output}`);
      assert.match(bench.output, /\r\x1b\[2K\s+0\.\ds\s+[\d,]+ calls\/s {2}0 errors/, `${runner}: progress rewritten in place`);
      assert.match(bench.output, /\r\x1b\[2Kebb bench: demo\.echo, concurrency 2/, `${runner}: the line is cleared before the summary`);
      // EBB_LOG_FORMAT=auto: pretty on a terminal. A startup hook that times out makes the node exit 3 by itself.
      const serve = await onTerminal(runner, ["serve"], { NO_COLOR: "1", EBB_NODE_ID: "tty", EBB_RPC_PORT: "0", EBB_HTTP_PORT: "0", EBB_DEMO_WARMUP_MS: "5000", EBB_STARTUP_TIMEOUT_MS: "1" });
      assert.equal(serve.code, 3, `${runner}: ${serve.output}`);
      assert.match(serve.output, /^\S+Z INFO +tty listening on 127\.0\.0\.1:\d+/m, `${runner}: ${serve.output}`);
      assert.match(serve.output, /^\S+Z ERROR +tty Startup hook "demo-warmup" timed out/m);
      assert.doesNotMatch(serve.output, /^\{/m, "no JSON lines on a terminal");
    }
  } finally {
    await stopProcess(node);
  }
});
