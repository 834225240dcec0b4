import { test } from "node:test";
import assert from "node:assert/strict";
import { type ClusterClientOptions, createClusterClient } from "../../../src/cluster/client.ts";
import { configWith } from "../../../src/config/load.ts";
import { DEFAULT_SWIM_CONFIG } from "../../../src/membership/types.ts";
import { createNode, type EbbNode } from "../../../src/node.ts";
import { Channel } from "../../../src/rpc/channel.ts";
import { createMemoryRuntime, type MemoryRuntime } from "../../../src/runtime/memory.ts";
import { LogCapture, until } from "../../helpers/net.ts";
import { probe, probeHandlers } from "../../helpers/services.ts";

// Watched discovery (issue 16, item 5): `$watch` on whole nodes over the in-memory runtime.

const FAST_SWIM = { ...DEFAULT_SWIM_CONFIG, probeIntervalMs: 100, probeTimeoutMs: 50, gossipIntervalMs: 20, pushPullIntervalMs: 1_000 };

async function startNode(runtime: MemoryRuntime, nodeId: string, seeds: string[] = []): Promise<EbbNode> {
  const node = createNode({ config: configWith({ nodeId, host: "127.0.0.1", rpcPort: 0, httpPort: null, swim: FAST_SWIM, seeds }), runtime }).register(probe, probeHandlers);
  await node.start();
  return node;
}

test("$watch answers the member list, then notifies each membership change on that connection until it closes", async () => {
  const runtime = createMemoryRuntime();
  const a = await startNode(runtime, "a");
  const notes: { type: string; member: { id: string } }[] = [];
  let heard: (() => void) | undefined;
  const channel = await Channel.connect(runtime, {
    host: "127.0.0.1",
    port: a.rpcAddress.port,
    onNotification: (method, params) => {
      if (method !== "$watch") return;
      notes.push(params[0] as (typeof notes)[number]);
      heard?.();
    },
  });
  let b: EbbNode | undefined;
  try {
    const { members } = (await channel.call("$watch", undefined)) as { members: { id: string }[] };
    assert.deepEqual(members.map((m) => m.id), ["a"]);
    const joined = new Promise<void>((resolve) => (heard = () => notes.some((n) => n.member.id === "b" && n.type === "join") && resolve()));
    b = await startNode(runtime, "b", [`127.0.0.1:${a.rpcAddress.port}`]);
    await joined;
    // Asked again on the same connection: the list, and still one subscription (no doubled notes).
    await channel.call("$watch", undefined);
    const before = notes.length;
    const left = new Promise<void>((resolve) => (heard = () => notes.some((n) => n.member.id === "b" && n.type === "left") && resolve()));
    await b.shutdown();
    await left;
    const afterLeave = notes.slice(before).filter((n) => n.member.id === "b" && n.type === "left");
    assert.equal(afterLeave.length, 1, JSON.stringify(notes.slice(before)));
  } finally {
    channel.close();
    await b?.shutdown();
    await a.shutdown();
  }
});

/** Nodes a and b (b joined through a), and a seeds-mode client of them whose debug log is captured, polling every `refreshMs`. */
async function watchedCluster(runtime: MemoryRuntime, options: Partial<ClusterClientOptions> = {}) {
  const a = await startNode(runtime, "a");
  const seeds = [`127.0.0.1:${a.rpcAddress.port}`];
  const b = await startNode(runtime, "b", seeds);
  const logs = new LogCapture();
  // A poll every 60 s: whatever the client learns within a test, it learns from the watch.
  const client = createClusterClient({ runtime, seeds, refreshMs: 60_000, watchRefreshMs: 60_000, log: logs.logger, ...options });
  await client.whenAvailable("probe", 2, 5_000);
  return { a, b, seeds, logs, client };
}

const watchingOn = (logs: LogCapture, unlike?: string) => logs.next((l) => l.msg === "watching membership" && l.on !== unlike).then((l) => l.on as string);

test("a seeds-mode client learns a new node and a leaving one through its watch, long before its next poll", async () => {
  const runtime = createMemoryRuntime();
  const { a, b, seeds, logs, client } = await watchedCluster(runtime);
  let c: EbbNode | undefined;
  try {
    await watchingOn(logs);
    c = await startNode(runtime, "c", seeds);
    await client.whenAvailable("probe", 3, 5_000);
    await c.shutdown();
    await until(() => !client.candidates("probe").some((e) => e.id === "c"), "c left the client's view", 5_000);
  } finally {
    client.close();
    await c?.shutdown();
    await b.shutdown();
    await a.shutdown();
  }
});

test("when the watched node goes, the client polls at once and watches another node", async () => {
  const runtime = createMemoryRuntime();
  const { a, b, logs, client } = await watchedCluster(runtime);
  try {
    const first = await watchingOn(logs);
    const [watched, other] = first === `127.0.0.1:${a.rpcAddress.port}` ? [a, b] : [b, a];
    await watched.shutdown();
    // A new watch on the node left, with no poll due for a minute.
    assert.equal(await watchingOn(logs, first), `127.0.0.1:${other.rpcAddress.port}`);
  } finally {
    client.close();
    await a.shutdown();
    await b.shutdown();
  }
});

test("when the watch ends and no node answers, the client polls at its fast pace again (not the watch's 60 s), and finds the cluster back", async () => {
  const runtime = createMemoryRuntime();
  let a = await startNode(runtime, "a");
  const port = a.rpcAddress.port;
  const logs = new LogCapture();
  const client = createClusterClient({ runtime, seeds: [`127.0.0.1:${port}`], refreshMs: 100, watchRefreshMs: 60_000, watchSettleMs: 200, log: logs.logger });
  try {
    await client.whenAvailable("probe", 1, 5_000);
    await watchingOn(logs);
    // Time passing is what is tested: past the settling time and a few of the fast poll's intervals, the poll is re-armed at the slow pace.
    await new Promise((resolve) => setTimeout(resolve, 500));
    // The whole cluster goes; a node comes back on the seed's address a moment later.
    await a.shutdown();
    a = createNode({ config: configWith({ nodeId: "a2", host: "127.0.0.1", rpcPort: port, httpPort: null, swim: FAST_SWIM }), runtime }).register(probe, probeHandlers);
    await a.start();
    await until(() => client.candidates("probe").some((c) => c.id === "a2"), "the client found the node back on the seed's address", 5_000);
  } finally {
    client.close();
    await a.shutdown();
  }
});
