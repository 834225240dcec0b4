import { test } from "node:test";
import assert from "node:assert/strict";
import { createClusterClient } from "../../../src/cluster/client.ts";
import { configWith } from "../../../src/config/load.ts";
import { createLogger } from "../../../src/log.ts";
import { DEFAULT_SWIM_CONFIG } from "../../../src/membership/types.ts";
import { createNode, type EbbNode } from "../../../src/node.ts";
import { Channel } from "../../../src/rpc/channel.ts";
import { createMemoryRuntime, type MemoryRuntime } from "../../../src/runtime/memory.ts";
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

test("a seeds-mode client learns a new node and a leaving one through its watch, long before its next poll", async () => {
  const runtime = createMemoryRuntime();
  const a = await startNode(runtime, "a");
  const seeds = [`127.0.0.1:${a.rpcAddress.port}`];
  const b = await startNode(runtime, "b", seeds);
  const lines: string[] = [];
  const log = createLogger({ node: "client", level: "debug", write: (line) => lines.push(line) });
  // A poll every 60 s: whatever the client learns within the test, it learns from the watch.
  const client = createClusterClient({ runtime, seeds, refreshMs: 60_000, watchRefreshMs: 60_000, log });
  let c: EbbNode | undefined;
  try {
    await client.whenAvailable("probe", 2, 5_000);
    const watching = () => lines.some((l) => l.includes("watching membership"));
    while (!watching()) await new Promise((resolve) => setTimeout(resolve, 5));
    c = await startNode(runtime, "c", seeds);
    await client.whenAvailable("probe", 3, 5_000);
    await c.shutdown();
    const started = Date.now();
    while (client.candidates("probe").some((e) => e.id === "c")) {
      assert.ok(Date.now() - started < 5_000, "c left the client's view");
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  } finally {
    client.close();
    await c?.shutdown();
    await b.shutdown();
    await a.shutdown();
  }
});

test("when the watched node goes, the client polls at once and watches another node", async () => {
  const runtime = createMemoryRuntime();
  const a = await startNode(runtime, "a");
  const seeds = [`127.0.0.1:${a.rpcAddress.port}`];
  const b = await startNode(runtime, "b", seeds);
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ node: "client", level: "debug", write: (line) => lines.push(JSON.parse(line)) });
  const client = createClusterClient({ runtime, seeds, refreshMs: 60_000, watchRefreshMs: 60_000, log });
  try {
    await client.whenAvailable("probe", 2, 5_000);
    const watchedOn = async (count: number) => {
      while (lines.filter((l) => l.msg === "watching membership").length < count) await new Promise((resolve) => setTimeout(resolve, 5));
      return lines.filter((l) => l.msg === "watching membership").at(-1)!.on as string;
    };
    const first = await watchedOn(1);
    const [watched, other] = first === `127.0.0.1:${a.rpcAddress.port}` ? [a, b] : [b, a];
    await watched.shutdown();
    // A new watch on the node left, with no poll due for a minute.
    assert.equal(await watchedOn(2), `127.0.0.1:${other.rpcAddress.port}`);
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
  let watchingSince: number | undefined;
  const log = createLogger({ node: "client", level: "debug", write: (line) => void (JSON.parse(line).msg === "watching membership" && (watchingSince ??= Date.now())) });
  const client = createClusterClient({ runtime, seeds: [`127.0.0.1:${port}`], refreshMs: 100, watchRefreshMs: 60_000, watchSettleMs: 200, log });
  try {
    await client.whenAvailable("probe", 1, 5_000);
    // Watching past the settling time and a few of the fast poll's intervals: what is being tested is the poll re-armed at the slow pace meanwhile.
    while (watchingSince === undefined || Date.now() - watchingSince < 500) await new Promise((resolve) => setTimeout(resolve, 20));
    // The whole cluster goes; a node comes back on the seed's address a moment later.
    await a.shutdown();
    a = createNode({ config: configWith({ nodeId: "a2", host: "127.0.0.1", rpcPort: port, httpPort: null, swim: FAST_SWIM }), runtime }).register(probe, probeHandlers);
    await a.start();
    const started = Date.now();
    while (!client.candidates("probe").some((c) => c.id === "a2")) {
      assert.ok(Date.now() - started < 5_000, "the client found the node back on the seed's address");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  } finally {
    client.close();
    await a.shutdown();
  }
});
