import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { proof } from "../../src/rpc/auth.ts";
import { HOST_RUNNER, type NodeProcess, ROOT, type RunnerName, RUNNERS, sendSignal, startNodeProcess, stopProcess } from "../helpers/process.ts";

// A client in another language, written from the README's "Wire protocol" section alone
// (tests/fixtures/plain_client.py, Python's standard library only), against real nodes.

const CLIENT = `${ROOT}tests/fixtures/plain_client.py`;
const PYTHON_MISSING = spawnSync("python3", ["--version"]).status === 0 ? false : "python3 is not on PATH: the plain client is a Python script";
if (PYTHON_MISSING) console.warn(`plain-client tests skipped: ${PYTHON_MISSING}`);

/** What `ebb keygen` makes: 32 random bytes in base64. */
const newKey = () => randomBytes(32).toString("base64");
const KEY = newKey();

/** One JSON line the client printed. */
type ClientEvent = { event: string } & Record<string, unknown>;

/** Runs the plain client to its end; `onEvent` sees each line as it is printed. */
function runClient(args: string[], onEvent: (event: ClientEvent) => void = () => {}): Promise<{ code: number; events: ClientEvent[]; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("python3", [CLIENT, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    const events: ClientEvent[] = [];
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => {
      stdout += text;
      let newline;
      while ((newline = stdout.indexOf("\n")) >= 0) {
        const event = JSON.parse(stdout.slice(0, newline)) as ClientEvent;
        stdout = stdout.slice(newline + 1);
        events.push(event);
        onEvent(event);
      }
    });
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, events, stderr }));
  });
}

/** The event named `name`, which must be there. */
function eventOf(events: ClientEvent[], name: string): ClientEvent {
  const found = events.find((e) => e.event === name);
  assert.ok(found, `no "${name}" event in ${JSON.stringify(events)}`);
  return found;
}

/** The key and both proofs of the test vector in the README's Wire protocol section (nonces 0x00…0x0f and 0x10…0x1f, id "ebb"). */
function readmeVector(): { key: string; client: string; server: string } {
  const readme = readFileSync(`${ROOT}README.md`, "utf8");
  const key = /A test vector: key `([^`]+)`, id `ebb`/.exec(readme)?.[1];
  const client = /^client proof ([0-9a-f]{64})$/m.exec(readme)?.[1];
  const server = /^server proof ([0-9a-f]{64})$/m.exec(readme)?.[1];
  assert.ok(key && client && server, "the README's Wire protocol section gives a key and both proofs");
  return { key, client, server };
}

/** A keyed node on this test's runtime, shared by the call and wrong-key tests. */
let shared: Promise<NodeProcess> | undefined;
const keyedNode = () => (shared ??= startNodeProcess(HOST_RUNNER, { EBB_CLUSTER_KEY: KEY, EBB_NODE_ID: "plain-a" }));
after(async () => {
  if (shared) await stopProcess(await shared);
});

test("the README's $auth test vector is what the node computes", () => {
  const { key, client, server } = readmeVector();
  const c = Uint8Array.from({ length: 16 }, (_, i) => i);
  const s = Uint8Array.from({ length: 16 }, (_, i) => 16 + i);
  const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
  assert.equal(hex(proof(key, "client", c, s, "ebb")), client);
  assert.equal(hex(proof(key, "server", c, s, "ebb")), server);
});

test("the plain client computes the README's $auth test vector", { skip: PYTHON_MISSING }, async () => {
  const { client, server } = readmeVector();
  const run = await runClient(["vector"]);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(eventOf(run.events, "vector"), { event: "vector", client, server });
});

test(
  `${HOST_RUNNER}: a plain Python client proves the cluster key and calls with deadlines, request ids, pipelining and $cancel`,
  { skip: PYTHON_MISSING },
  async () => {
    const node = await keyedNode();
    const run = await runClient(["call", "--port", String(node.port), "--key", KEY]);
    assert.equal(run.code, 0, `${run.stderr}\n${JSON.stringify(run.events)}`);
    const { events } = run;
    assert.equal(eventOf(events, "echo").same, true, "every msgpack type the client encodes came back as sent");
    assert.deepEqual(eventOf(events, "pipelined").results, [2, 1, 0]);
    const info = eventOf(events, "info");
    assert.deepEqual([info.node, info.state, info.methods], ["plain-a", "ready", { "demo.echo": true, "demo.sleep": true, "demo.work": true }]);
    const ping = eventOf(events, "ping");
    assert.deepEqual([ping.node, ping.state], ["plain-a", "ready"]);
    assert.ok(Math.abs(Number(ping.time) - Date.now()) < 60_000, `$ping's time ${ping.time} is milliseconds since 1970 (a uint 64)`);
    assert.equal(eventOf(events, "deadline").code, "DEADLINE_EXCEEDED", "meta.deadline of 200 ms ended a 60 s sleep");
    assert.equal(eventOf(events, "cancel").code, "CANCELLED", "$cancel ended a 60 s sleep");
    const [unknown, invalid] = events.filter((e) => e.event === "error");
    assert.equal(unknown!.code, "METHOD_NOT_FOUND");
    assert.equal(invalid!.code, "INVALID_PARAMS");
    assert.ok(Array.isArray(invalid!.data) && invalid!.data.length > 0, "INVALID_PARAMS carries the zod issues in data");
  },
);

test(`${HOST_RUNNER}: a plain client with a key the node does not hold or of another cluster id is answered UNAUTHENTICATED (wrong-key, wrong-cluster), then the node closes the connection`, {
  skip: PYTHON_MISSING,
}, async () => {
  const node = await keyedNode();
  const run = await runClient(["wrong-key", "--port", String(node.port), "--key", newKey()]);
  assert.equal(run.code, 0, `${run.stderr}\n${JSON.stringify(run.events)}`);
  assert.deepEqual(
    run.events.map((e) => e.event),
    ["refused", "eof"],
  );
  assert.deepEqual(eventOf(run.events, "refused"), { event: "refused", code: "UNAUTHENTICATED", processed: null, data: { reason: "wrong-key" } });
  await node.waitForLine((line) => /proved an unknown key/.test(String(line.msg)));
  const otherCluster = await runClient(["wrong-key", "--port", String(node.port), "--key", KEY, "--cluster", "staging"]);
  assert.equal(otherCluster.code, 0, otherCluster.stderr);
  assert.deepEqual(eventOf(otherCluster.events, "refused").data, { reason: "wrong-cluster" }, "the right key with another cluster id");
});

/** The drain on this test's runtime, and on the binary when it is built (`npm test` builds it). */
const DRAIN_RUNNERS: RunnerName[] = existsSync(RUNNERS.binary.command) ? [HOST_RUNNER, "binary"] : [HOST_RUNNER];

for (const runner of DRAIN_RUNNERS) {
  test(
    `${runner}: through a drain, a plain client's call in flight completes, it hears $goaway, a late request gets SHUTTING_DOWN (processed false) and runs on another node`,
    { skip: PYTHON_MISSING },
    async () => {
      const env = { EBB_CLUSTER_KEY: KEY, EBB_DEMO_RECORD: "1" };
      const [a, b] = await Promise.all([
        startNodeProcess(runner, { ...env, EBB_NODE_ID: "plain-drain-a" }),
        startNodeProcess(runner, { ...env, EBB_NODE_ID: "plain-drain-b" }),
      ]);
      try {
        await Promise.all([a, b].map((node) => node.waitForLine((line) => line.state === "ready")));
        // The client prints "in-flight" once the node has read the call; a terminal's kill -TERM then starts the drain.
        const run = await runClient(["drain", "--port", String(a.port), "--other-port", String(b.port), "--key", KEY, "--sleep-ms", "2000"], (event) => {
          if (event.event === "in-flight") sendSignal(a, "SIGTERM");
        });
        assert.equal(run.code, 0, `${run.stderr}\n${JSON.stringify(run.events)}`);
        const { events } = run;
        assert.deepEqual(
          events.map((e) => e.event),
          ["in-flight", "goaway", "late", "elsewhere", "in-flight-answered", "final-goaway", "eof"],
        );
        assert.deepEqual(eventOf(events, "goaway"), { event: "goaway", payload: { node: "plain-drain-a", reason: "draining" }, answered: false });
        assert.deepEqual(eventOf(events, "late"), { event: "late", code: "SHUTTING_DOWN", processed: false, data: { state: "draining" } });
        assert.deepEqual(eventOf(events, "elsewhere").result, "late");
        assert.ok(Number((eventOf(events, "in-flight-answered").result as { sleptMs: number }).sleptMs) >= 1_500, "the sleep ran to its end");
        assert.deepEqual(eventOf(events, "final-goaway").payload, { reason: "closing", final: true });
        assert.equal(eventOf(events, "eof").after, null, "nothing after the final $goaway but the end of the stream");

        // processed: false told the truth: the late request ran once, on b; the drained node ran only the call in flight.
        assert.equal(await a.exited, 0, a.stderr());
        const stopped = await a.waitForLine((line) => typeof line.drainMs === "number");
        assert.deepEqual([stopped.completed, stopped.baffled, stopped.cancelled], [1, 1, 0]);
        assert.deepEqual((await a.waitForLine((line) => line.msg === "demo executed")).ids, ["plain-inflight"]);
        sendSignal(b, "SIGTERM");
        assert.equal(await b.exited, 0, b.stderr());
        assert.deepEqual((await b.waitForLine((line) => line.msg === "demo executed")).ids, ["plain-late"]);
      } finally {
        await Promise.all([stopProcess(a), stopProcess(b)]);
      }
    },
  );
}
