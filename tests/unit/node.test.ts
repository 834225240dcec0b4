import { test } from "node:test";
import assert from "node:assert/strict";
import { configWith } from "../../src/config/load.ts";
import { DEFAULT_SWIM_CONFIG, type MemberEvent } from "../../src/membership/types.ts";
import { createNode, type EbbNode } from "../../src/node.ts";
import { Channel } from "../../src/rpc/channel.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { createMemoryRuntime, type MemoryRuntime } from "../../src/runtime/memory.ts";
import { probe, probeHandlers, probeReached } from "../helpers/services.ts";

// Whole nodes on the in-memory runtime: the wiring of node.ts, without loopback TCP.

const FAST_SWIM = { ...DEFAULT_SWIM_CONFIG, probeIntervalMs: 100, probeTimeoutMs: 50, gossipIntervalMs: 20, pushPullIntervalMs: 1_000 };

function memoryNode(runtime: MemoryRuntime, nodeId: string, overrides: Parameters<typeof configWith>[0] = {}): EbbNode {
  const node = createNode({ config: configWith({ nodeId, host: "127.0.0.1", rpcPort: 0, httpPort: 0, swim: FAST_SWIM, ...overrides }), runtime });
  return node.register(probe, probeHandlers);
}

test("a node on the in-memory runtime serves calls and HTTP, then drains: $goaway, the call in flight completes, later calls are baffled", async () => {
  const runtime = createMemoryRuntime();
  const node = memoryNode(runtime, "m1");
  let channel: Channel | undefined;
  try {
    await node.start();
    const { port } = node.rpcAddress;
    channel = await Channel.connect(runtime, { host: "127.0.0.1", port });
    assert.equal(await channel.call("probe.add", { a: 2, b: 3 }), 5);
    const http = `http://127.0.0.1:${node.httpAddress!.port}`;
    assert.equal((await runtime.fetch(`${http}/readyz`)).status, 200);
    assert.match(await (await runtime.fetch(`${http}/metrics`)).text(), /^ebb_calls_total\{method="probe.add",code="OK"\} 1$/m);

    const inFlight = channel.call("probe.wait", { ms: 50, tag: "memory-drain" });
    await probeReached("memory-drain", "started");
    const draining = new Promise<void>((resolve) => node.onStateChange((state) => state === "draining" && resolve()));
    const stopping = node.shutdown("test");
    await draining;
    assert.equal((await runtime.fetch(`${http}/readyz`)).status, 503);
    // Refused unprocessed: by the channel itself once it heard $goaway, or by the baffle.
    await assert.rejects(channel.call("probe.add", { a: 1, b: 1 }), (error: RpcError) => error.code === "SHUTTING_DOWN" && error.processed === false);
    assert.equal(await inFlight, "memory-drain");
    assert.ok(channel.goaway !== undefined, "the client heard $goaway");
    const summary = await stopping;
    assert.deepEqual({ completed: summary.completed, cancelled: summary.cancelled, exitCode: summary.exitCode }, { completed: 2, cancelled: 0, exitCode: 0 }, "the call in flight and the /readyz probe");
    assert.equal(node.state, "stopped");
    await assert.rejects(Channel.connect(runtime, { host: "127.0.0.1", port }), "the RPC listener stopped");
  } finally {
    channel?.close();
    await node.shutdown();
  }
  assert.equal(runtime.openConnections, 0, "every connection closed");
});

test("two nodes on the in-memory runtime find each other by gossip, and one calls the other's service through its cluster client", async () => {
  const runtime = createMemoryRuntime();
  const a = createNode({ config: configWith({ nodeId: "a", host: "127.0.0.1", rpcPort: 0, httpPort: null, swim: FAST_SWIM }), runtime });
  let b: EbbNode | undefined;
  try {
    await a.start();
    const bReady = new Promise<MemberEvent>((resolve) => a.onMemberEvent((event) => event.member.id === "b" && event.member.meta.state === "ready" && resolve(event)));
    b = memoryNode(runtime, "b", { httpPort: null, seeds: [`127.0.0.1:${a.rpcAddress.port}`] });
    await b.start();
    await bReady;
    assert.deepEqual(a.members().map((m) => m.id).sort(), ["a", "b"]);
    const client = a.client(probe, { warmupMs: 0, candidateWaitMs: 0 });
    assert.equal(await client.add({ a: 20, b: 22 }), 42);
    // b drains: a's client hears it leave, and finds no other node offering probe.
    const bLeft = new Promise<MemberEvent>((resolve) => a.onMemberEvent((event) => event.member.id === "b" && event.type === "left" && resolve(event)));
    await b.shutdown();
    await bLeft;
    await assert.rejects(client.add({ a: 1, b: 1 }), (error: RpcError) => error.code === "UNAVAILABLE" && error.processed === false);
  } finally {
    await b?.shutdown();
    await a.shutdown();
  }
  assert.equal(runtime.openConnections, 0, "every connection closed");
});
