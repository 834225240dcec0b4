import { test } from "node:test";
import assert from "node:assert/strict";
import { configWith, type Config } from "../../src/config/load.ts";
import { StartupError } from "../../src/lifecycle/startup.ts";
import type { LifecycleState } from "../../src/lifecycle/state.ts";
import { createClusterClient } from "../../src/cluster/client.ts";
import { createNode, type EbbNode } from "../../src/node.ts";
import { createClient } from "../../src/rpc/client.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { decode, encode } from "@msgpack/msgpack";
import { MessageDecoder } from "../../src/wire/decoder.ts";
import { connectChannel, connectRaw, LogCapture, rejectsWith, runtime, startTestNode } from "../helpers/net.ts";
import { probe, probeHandlers, probeReached } from "../helpers/services.ts";

function newNode(overrides: Partial<Config> = {}): { node: EbbNode; logs: LogCapture } {
  const logs = new LogCapture();
  const node = createNode({ config: configWith({ nodeId: "n1", rpcPort: 0, httpPort: 0, ...overrides }), log: logs.logger, runtime });
  node.register(probe, probeHandlers);
  return { node, logs };
}

function stateReached(node: EbbNode, state: LifecycleState): Promise<void> {
  if (node.state === state) return Promise.resolve();
  return new Promise((resolve) => {
    const off = node.onStateChange((s) => s === state && (off(), resolve()));
  });
}

test("shutdown() before start() stops the node, and start() then refuses", async () => {
  const { node } = newNode();
  const summary = await node.shutdown();
  assert.equal(summary.exitCode, 0);
  assert.equal(node.state, "stopped");
  await assert.rejects(node.start(), (e: unknown) => e instanceof StartupError && e.aborted);
});

test("shutdown() called twice at once returns one promise and drains once", async () => {
  const { node, logs } = newNode();
  await node.start();
  try {
    const first = node.shutdown();
    const second = node.shutdown("again");
    assert.equal(first, second);
    const summary = await first;
    assert.equal(summary.reason, "shutdown()");
    assert.equal(await node.shutdown(), summary);
    assert.equal(logs.lines.filter((l) => String(l.msg).startsWith("stopped:")).length, 1);
  } finally {
    await node.shutdown();
  }
});

test("a call in flight at shutdown completes; a channel that heard $goaway sends nothing new", async () => {
  const { node } = newNode();
  await node.start();
  try {
    let heardGoaway!: () => void;
    const goaway = new Promise<void>((r) => (heardGoaway = r));
    const channel = await connectChannel(node.rpcAddress.port, { onNotification: (m) => m === "$goaway" && heardGoaway() });
    const client = createClient(probe, channel);
    const slow = client.wait({ ms: 150, tag: "inproc-inflight" });
    await probeReached("inproc-inflight", "started");
    const handledBefore = node.stats.handled;
    const stopping = node.shutdown();
    await goaway;
    const local = await rejectsWith(client.add({ a: 1, b: 1 }), "SHUTTING_DOWN");
    assert.match(local.message, /\$goaway/);
    assert.equal(local.processed, false);
    assert.equal(await slow, "inproc-inflight");
    const summary = await stopping;
    assert.equal(summary.completed, 1);
    assert.equal(summary.cancelled, 0);
    assert.equal(summary.exitCode, 0);
    assert.equal(node.stats.handled, handledBefore);
  } finally {
    await node.shutdown();
  }
});

test("readiness fails at the first moment of draining while liveness stays up and calls are still served during the drain delay", async () => {
  const { node } = newNode({ drainDelayMs: 300 });
  await node.start();
  try {
    const http = `http://127.0.0.1:${node.httpAddress!.port}`;
    assert.equal((await fetch(`${http}/readyz`)).status, 200);
    let readyzAtDraining: Promise<Response> | undefined;
    node.onStateChange((state) => {
      if (state === "draining") readyzAtDraining = fetch(`${http}/readyz`);
    });
    const stopping = node.shutdown();
    await stateReached(node, "draining");
    const ready = await readyzAtDraining!;
    assert.equal(ready.status, 503);
    assert.equal(ready.headers.get("connection"), "close");
    assert.deepEqual(await ready.json(), { ready: false, node: "n1", state: "draining" });
    const health = await fetch(`${http}/healthz`);
    assert.equal(health.status, 200);
    // The drain delay keeps serving normally, for routers that learn late.
    const served = await fetch(`${http}/rpc/probe.add`, { method: "POST", body: JSON.stringify({ a: 1, b: 2 }) });
    assert.deepEqual(await served.json(), { result: 3 });
    const metrics = await (await fetch(`${http}/metrics`)).text();
    assert.match(metrics, /^ebb_lifecycle_state\{state="draining"\} 1$/m);
    const drainSeconds = Number(/^ebb_drain_seconds (\S+)$/m.exec(metrics)?.[1]);
    assert.ok(drainSeconds > 0 && drainSeconds < 0.3, `ebb_drain_seconds ${drainSeconds} counts from the start of draining`);
    await stopping;
  } finally {
    await node.shutdown();
  }
});

test("a handler that outlives the shutdown timeout sees its signal abort and its caller gets CANCELLED", async () => {
  const { node } = newNode({ shutdownTimeoutMs: 200 });
  await node.start();
  try {
    const channel = await connectChannel(node.rpcAddress.port);
    const started = Date.now();
    const stuck = createClient(probe, channel).wait({ ms: 60_000, tag: "inproc-timeout" });
    await probeReached("inproc-timeout", "started");
    const stopping = node.shutdown();
    await rejectsWith(stuck, "CANCELLED");
    await probeReached("inproc-timeout", "aborted");
    const summary = await stopping;
    assert.equal(summary.timedOut, true);
    assert.equal(summary.cancelled, 1);
    assert.equal(summary.exitCode, 1);
    assert.ok(Date.now() - started < 200 + 1_000, `drain took ${Date.now() - started} ms`);
  } finally {
    await node.shutdown();
  }
});

test("a startup hook that fails keeps the node from ever being ready, and names the hook", async () => {
  const { node } = newNode();
  try {
    const states: LifecycleState[] = [];
    node.onStateChange((s) => states.push(s));
    node.onStartup("load-config", () => {
      throw new Error("config service unreachable");
    });
    await assert.rejects(node.start(), (e: unknown) => e instanceof StartupError && e.hook === "load-config" && /config service unreachable/.test(e.message));
    assert.equal(node.state, "starting");
    const channel = await connectChannel(node.rpcAddress.port);
    const refused = await rejectsWith(channel.call("probe.add", { a: 1, b: 2 }), "UNAVAILABLE");
    assert.equal(refused.processed, false);
    await node.shutdown("startup failed");
    assert.ok(!states.includes("ready"));
  } finally {
    await node.shutdown("startup failed");
  }
});

test("shutdown during the startup hooks aborts them; the node never becomes ready", async () => {
  const { node } = newNode();
  try {
    let hookSawAbort = false;
    let hookStarted!: () => void;
    const started = new Promise<void>((r) => (hookStarted = r));
    node.onStartup("warm", (signal) => {
      hookStarted();
      return new Promise<void>((_, reject) => signal.addEventListener("abort", () => ((hookSawAbort = true), reject(signal.reason))));
    });
    const starting = node.start();
    await started;
    const http = `http://127.0.0.1:${node.httpAddress!.port}`;
    assert.equal((await fetch(`${http}/readyz`)).status, 503);
    assert.equal((await fetch(`${http}/healthz`)).status, 200);
    const stopping = node.shutdown("SIGTERM");
    await assert.rejects(starting, (e: unknown) => e instanceof StartupError && e.aborted);
    assert.equal(hookSawAbort, true);
    const summary = await stopping;
    assert.equal(summary.exitCode, 0);
    assert.equal(node.state, "stopped");
  } finally {
    await node.shutdown();
  }
});

test("an HTTP gateway call in flight is waited for, and HTTP calls after draining are baffled", async () => {
  const { node } = newNode();
  await node.start();
  try {
    const http = `http://127.0.0.1:${node.httpAddress!.port}`;
    const add = await fetch(`${http}/rpc/probe.add`, { method: "POST", body: JSON.stringify({ a: 2, b: 3 }) });
    assert.deepEqual(await add.json(), { result: 5 });
    const bad = await fetch(`${http}/rpc/probe.add`, { method: "POST", body: JSON.stringify({ a: "x" }) });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, "INVALID_PARAMS");
    const slow = fetch(`${http}/rpc/probe.wait`, { method: "POST", body: JSON.stringify({ ms: 200, tag: "inproc-http" }) });
    await probeReached("inproc-http", "started");
    assert.equal(node.stats.inflight, 1);
    const stopping = node.shutdown();
    const response = await slow;
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { result: "inproc-http" });
    assert.equal(response.headers.get("connection"), "close");
    const summary = await stopping;
    assert.equal(summary.completed, 1);
    assert.equal(summary.exitCode, 0);
  } finally {
    await node.shutdown();
  }
});

test("a raw msgpack-rpc client that sends after draining began is answered SHUTTING_DOWN, processed false, by the baffle", async () => {
  const server = await startTestNode((node) => node.register(probe, probeHandlers));
  try {
    const channel = await connectChannel(server.port);
    const hold = createClient(probe, channel).wait({ ms: 200, tag: "inproc-raw" });
    await probeReached("inproc-raw", "started");
    const raw = await connectRaw(server.port);
    const stopping = server.close();
    // The raw client knows nothing of $goaway; it just receives it, then sends anyway.
    const decoder = new MessageDecoder(1 << 20);
    assert.deepEqual(decoder.push(await raw.waitForBytes(1)), [[2, "$goaway", [{ node: "test-node", reason: "draining" }]]]);
    const handled = server.node.stats.handled;
    const before = raw.received().byteLength;
    raw.socket.write(encode([0, 9, "probe.add", [{ a: 1, b: 1 }]]));
    const [reply] = decoder.push((await raw.waitForBytes(before + 1)).subarray(before)) as [number, number, { code: string; processed: boolean }, unknown][];
    assert.equal(reply![1], 9);
    assert.equal(reply![2].code, "SHUTTING_DOWN");
    assert.equal(reply![2].processed, false);
    assert.equal(server.node.stats.handled, handled, "no handler ran");
    await hold;
    const summary = await stopping;
    assert.equal(summary.baffled, 1);
    raw.socket.close();
  } finally {
    await server.close();
  }
});

test("/metrics reports calls by method and code, in-flight and members; /cluster lists the members", async () => {
  const { node } = newNode({ nodeId: "metrics-node" });
  await node.start();
  try {
    const channel = await connectChannel(node.rpcAddress.port);
    const client = createClient(probe, channel);
    await client.add({ a: 1, b: 2 });
    await client.add({ a: 3, b: 4 });
    await rejectsWith(client.raise({ code: "APPLICATION" }), "APPLICATION");
    await rejectsWith(channel.call("probe.nope", {}), "METHOD_NOT_FOUND");
    channel.close();
    const http = `http://127.0.0.1:${node.httpAddress!.port}`;
    const response = await fetch(`${http}/metrics`);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0.0.4/);
    const text = await response.text();
    assert.match(text, /^# TYPE ebb_calls_total counter$/m);
    assert.match(text, /^ebb_calls_total\{method="probe.add",code="OK"\} 2$/m);
    assert.match(text, /^ebb_calls_total\{method="probe.raise",code="APPLICATION"\} 1$/m);
    assert.match(text, /^ebb_calls_total\{method="unknown",code="METHOD_NOT_FOUND"\} 1$/m);
    assert.match(text, /^# TYPE ebb_call_duration_seconds histogram$/m);
    assert.match(text, /^ebb_call_duration_seconds_bucket\{method="probe.add",le="\+Inf"\} 2$/m);
    assert.match(text, /^ebb_call_duration_seconds_count\{method="probe.add"\} 2$/m);
    assert.match(text, /^ebb_call_duration_seconds_count\{method="probe.raise"\} 1$/m);
    const buckets = [...text.matchAll(/^ebb_call_duration_seconds_bucket\{method="probe.add",le="([^"]+)"\} (\d+)$/gm)].map((m) => Number(m[2]));
    assert.equal(buckets.length, 15, "14 bounds and +Inf");
    assert.ok(buckets.every((n, i) => i === 0 || n >= buckets[i - 1]!), `cumulative: ${buckets}`);
    assert.match(text, /^ebb_inflight 1$/m, "the scrape itself is in flight");
    assert.match(text, /^ebb_members\{status="alive"\} 1$/m);
    assert.match(text, /^ebb_lifecycle_state\{state="ready"\} 1$/m);
    const cluster = (await (await fetch(`${http}/cluster`)).json()) as { node: string; members: { id: string; status: string; meta: { state: string } }[] };
    assert.equal(cluster.node, "metrics-node");
    assert.deepEqual(cluster.members.map((m) => [m.id, m.status, m.meta.state]), [["metrics-node", "alive", "ready"]]);
  } finally {
    await node.shutdown();
  }
});

test("the gateway takes and answers msgpack bodies, refuses bad and oversized bodies with a precise error, and keeps serving", async () => {
  const { node } = newNode({ maxMessageBytes: 4096 });
  await node.start();
  try {
    const url = (method: string) => `http://127.0.0.1:${node.httpAddress!.port}/rpc/${method}`;
    const msgpack = { "content-type": "application/msgpack" };
    const asMsgpack = async (response: Response) => {
      assert.equal(response.headers.get("content-type"), "application/msgpack");
      return decode(new Uint8Array(await response.arrayBuffer())) as { result?: unknown; error?: { code: string; message: string } };
    };
    const added = await fetch(url("probe.add"), { method: "POST", headers: msgpack, body: encode({ a: 20, b: 22 }) });
    assert.equal(added.status, 200);
    assert.deepEqual(await asMsgpack(added), { result: 42 });
    // JSON in, msgpack out when Accept asks for it.
    const accepted = await fetch(url("probe.add"), { method: "POST", headers: { accept: "application/msgpack" }, body: JSON.stringify({ a: 1, b: 1 }) });
    assert.deepEqual(await asMsgpack(accepted), { result: 2 });
    const invalid = await fetch(url("probe.add"), { method: "POST", headers: msgpack, body: encode({ a: "x", b: 1 }) });
    assert.equal(invalid.status, 400);
    assert.equal((await asMsgpack(invalid)).error?.code, "INVALID_PARAMS");
    const garbage = await fetch(url("probe.add"), { method: "POST", headers: msgpack, body: new Uint8Array([0xc1]) });
    assert.equal(garbage.status, 400);
    const garbageError = (await asMsgpack(garbage)).error!;
    assert.equal(garbageError.code, "INVALID_REQUEST");
    assert.match(garbageError.message, /^Body is not valid msgpack/);
    const badJson = await fetch(url("probe.add"), { method: "POST", body: "{nope" });
    assert.equal(badJson.status, 400);
    assert.match(((await badJson.json()) as { error: { message: string } }).error.message, /^Body is not valid JSON/);
    const missing = await fetch(url("probe.nope"), { method: "POST", headers: msgpack, body: encode({}) });
    assert.equal(missing.status, 404);
    assert.equal((await asMsgpack(missing)).error?.code, "METHOD_NOT_FOUND");
    // Larger than EBB_MAX_MESSAGE_BYTES: 413, with a declared length and streamed without one.
    const big = JSON.stringify({ a: 1, b: 2, pad: "x".repeat(8192) });
    const tooLarge = await fetch(url("probe.add"), { method: "POST", body: big });
    assert.equal(tooLarge.status, 413);
    const tooLargeError = ((await tooLarge.json()) as { error: { code: string; message: string } }).error;
    assert.equal(tooLargeError.code, "INVALID_REQUEST");
    assert.match(tooLargeError.message, /larger than the limit of 4096 bytes/);
    const chunks = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 4; i++) controller.enqueue(new TextEncoder().encode("x".repeat(2048)));
        controller.close();
      },
    });
    const streamed = await fetch(url("probe.add"), { method: "POST", headers: msgpack, body: chunks, duplex: "half" } as RequestInit);
    assert.equal(streamed.status, 413);
    assert.equal((await asMsgpack(streamed)).error?.code, "INVALID_REQUEST");
    // Nothing of that hurt the node: the next call is served.
    const after = await fetch(url("probe.add"), { method: "POST", body: JSON.stringify({ a: 2, b: 2 }) });
    assert.deepEqual(await after.json(), { result: 4 });
  } finally {
    await node.shutdown();
  }
});

test("past EBB_MAX_INFLIGHT a request is answered OVERLOADED, processed false, and cluster clients take it to another node", async () => {
  const { node: full } = newNode({ nodeId: "full", maxInflight: 2 });
  const { node: spare } = newNode({ nodeId: "spare" });
  await Promise.all([full.start(), spare.start()]);
  const cluster = createClusterClient({ runtime, addresses: [`127.0.0.1:${full.rpcAddress.port}`, `127.0.0.1:${spare.rpcAddress.port}`] });
  const alone = createClusterClient({ runtime, addresses: [`127.0.0.1:${full.rpcAddress.port}`] });
  try {
    const channel = await connectChannel(full.rpcAddress.port);
    const api = createClient(probe, channel);
    // Two calls hold the node at its limit until this test cancels them.
    const release = new AbortController();
    const held = ["full-1", "full-2"].map((tag) => api.wait({ ms: 60_000, tag }, { signal: release.signal }).catch((e: unknown) => RpcError.from(e).code));
    await Promise.all([probeReached("full-1", "started"), probeReached("full-2", "started")]);
    const refused = await rejectsWith(api.add({ a: 1, b: 1 }), "OVERLOADED");
    assert.equal(refused.processed, false);
    assert.deepEqual(refused.data, { inflight: 2, limit: 2 });
    const http = await fetch(`http://127.0.0.1:${full.httpAddress!.port}/rpc/probe.add`, { method: "POST", body: JSON.stringify({ a: 1, b: 1 }) });
    assert.equal(http.status, 503);
    assert.equal(((await http.json()) as { error: { code: string } }).error.code, "OVERLOADED");
    // A client that knows only the full node: tried once, retried nowhere, told why.
    await rejectsWith(alone.call("probe.add", { a: 1, b: 1 }), "UNAVAILABLE");
    assert.deepEqual(alone.metrics().retries, { overloaded: 1 });
    // With a spare node every call succeeds; each one sent to the full node went on to the spare.
    for (let i = 0; i < 20; i++) assert.equal(await cluster.call("probe.add", { a: i, b: 1 }), i + 1);
    const metrics = cluster.metrics();
    assert.equal(metrics.retries.overloaded ?? 0, metrics.sentByNode[`127.0.0.1:${full.rpcAddress.port}`] ?? 0);
    assert.equal(metrics.sentByNode[`127.0.0.1:${spare.rpcAddress.port}`], 20);
    release.abort();
    assert.deepEqual(await Promise.all(held), ["CANCELLED", "CANCELLED"]);
    await Promise.all([probeReached("full-1", "aborted"), probeReached("full-2", "aborted")]);
    // Below the limit again: served.
    assert.equal(await api.add({ a: 2, b: 2 }), 4);
    const text = await (await fetch(`http://127.0.0.1:${full.httpAddress!.port}/metrics`)).text();
    const overloaded = Number(/^ebb_overloaded_total (\d+)$/m.exec(text)?.[1]);
    assert.equal(overloaded, 3 + (metrics.retries.overloaded ?? 0), "direct, HTTP, the lone client and every cluster retry");
    channel.close();
  } finally {
    cluster.close();
    alone.close();
    await Promise.all([full.shutdown(), spare.shutdown()]);
  }
});

test("EBB_WARMUP_MS sets the ramp of the node's own cluster clients, reported as ebb_client_weight", async () => {
  const { node: slow } = newNode({ nodeId: "slow-ramp", warmupMs: 600_000 });
  const { node: none } = newNode({ nodeId: "no-ramp", warmupMs: 0 });
  await Promise.all([slow.start(), none.start()]);
  try {
    for (const node of [slow, none]) assert.equal(await node.client(probe).add({ a: 1, b: 2 }), 3);
    const weight = async (node: EbbNode) => {
      const text = await (await fetch(`http://127.0.0.1:${node.httpAddress!.port}/metrics`)).text();
      return Number(new RegExp(`^ebb_client_weight\\{node="${node.id}"\\} (\\S+)$`, "m").exec(text)?.[1]);
    };
    const ramping = await weight(slow);
    assert.ok(ramping >= 0.1 && ramping < 0.11, `weight ${ramping} at the start of a 10-minute ramp`);
    assert.equal(await weight(none), 1);
  } finally {
    await Promise.all([slow.shutdown(), none.shutdown()]);
  }
});

test("a startup hook's warm-up calls run in process while the node is starting, validated like any call", async () => {
  const { node } = newNode({ nodeId: "warming" });
  const seen: unknown[] = [];
  node.onStartup("warm", async (_signal, { call }) => {
    seen.push(node.state, await call("probe.add", { a: 1, b: 2 }));
    seen.push((await rejectsWith(call("probe.add", { a: "x" }), "INVALID_PARAMS")).code);
    seen.push((await rejectsWith(call("probe.nope"), "METHOD_NOT_FOUND")).code);
  });
  await node.start();
  try {
    assert.deepEqual(seen, ["starting", 3, "INVALID_PARAMS", "METHOD_NOT_FOUND"]);
    assert.equal(node.stats.handled, 1, "one handler ran; the refused calls never reached one");
  } finally {
    await node.shutdown();
  }
});
