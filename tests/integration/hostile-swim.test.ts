import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { createClusterClient } from "../../src/cluster/client.ts";
import { demo, demoHandlers } from "../../src/demo/demo.ts";
import { silentLogger } from "../../src/log.ts";
import { MAX_INCARNATION, MAX_INCARNATION_STEP } from "../../src/membership/schema.ts";
import { RpcSwimTransport } from "../../src/membership/transport.ts";
import { Dispatcher } from "../../src/rpc/dispatch.ts";
import { Router } from "../../src/rpc/router.ts";
import { RpcServer } from "../../src/rpc/server.ts";
import type { MemberEvent, Update } from "../../src/membership/types.ts";
import type { EbbNode } from "../../src/node.ts";
import type { Listener, Socket } from "../../src/runtime/types.ts";
import { connectChannel, connectRaw, rejectsWith, runtime, startTestNode } from "../helpers/net.ts";
import { seededRandom } from "../sim/sim.ts";
import { FAST_SWIM_ENV, type NodeProcess, type RunnerName, sendSignal, startNodeProcess, stopProcess } from "../helpers/process.ts";

// Hostile $swim.* messages (issue 10, findings 3-5): each is sent as raw as a peer can to a real node.

const FAST = FAST_SWIM_ENV;
const FAST_SWIM = { probeIntervalMs: 200, probeTimeoutMs: 100, indirectChecks: 3, gossipIntervalMs: 50, gossipNodes: 3, suspicionMult: 3, pushPullIntervalMs: 2_000, maxMembers: 10_000 };

const meta = { state: "ready", services: ["demo"], version: "0.1.0", http: null };

/** Fails with `what` when `promise` does not settle within `ms`: an attack that worked shows as a clear failure, not a hang. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves with the first membership event on `node` that matches. */
function memberEvent(node: EbbNode, match: (event: MemberEvent) => boolean): Promise<MemberEvent> {
  return new Promise((resolve) => {
    const off = node.onMemberEvent((event) => {
      if (match(event)) {
        off();
        resolve(event);
      }
    });
  });
}

/** Sends membership notifications through one ordinary connection, then a $ping so they have all been read. */
async function sendSwim(port: number, messages: [string, unknown][]): Promise<void> {
  const channel = await connectChannel(port);
  try {
    for (const [method, message] of messages) channel.notify(method, [message]);
    await channel.call("$ping", undefined);
  } finally {
    channel.close();
  }
}

const malformed: [string, unknown][] = [
  ["$swim.gossip", { t: "gossip", from: "x", u: [{ id: "evil1", addr: 7001, inc: 1, status: "alive", meta }] }],
  ["$swim.gossip", { t: "gossip", from: "x", u: [{ id: "evil2", inc: 1, status: "alive", meta }] }],
  ["$swim.gossip", { t: "gossip", from: "x", u: [{ id: "evil3", addr: "127.0.0.1:7003", inc: 1, status: "alive", meta: { ...meta, services: 5 } }] }],
  ["$swim.ping", { t: "ping", from: "x", target: "nobody", u: [{ id: "evil4", addr: 7004, inc: 1, status: "alive", meta }] }],
  ["$swim.sync", { t: "sync", from: "x", state: 5, push: true }],
  ["$swim.gossip", 42],
];

for (const runner of ["bun", "deno", "binary"] as RunnerName[]) {
  test(`gossip with a numeric or missing addr leaves a ${runner} node alive, detecting failures and stopping cleanly`, async () => {
    let target: NodeProcess | undefined;
    let helper: NodeProcess | undefined;
    try {
      target = await startNodeProcess(runner, { ...FAST, EBB_NODE_ID: "t" });
      helper = await startNodeProcess("bun", { ...FAST, EBB_NODE_ID: "h", EBB_SEEDS: `127.0.0.1:${target.port}` });
      const t = target;
      await within(t.waitForLine((l) => l.member === "h" && l.event === "join"), 5_000, "t learns h");

      await sendSwim(t.port, malformed);
      const channel = await connectChannel(t.port);
      try {
        await rejectsWith(channel.call("$swim.ping", { t: "ping", from: "x", target: "t", u: [{ id: "evil5", addr: 1, inc: 1, status: "alive", meta }] }), "INVALID_PARAMS");
        const members = (await channel.call("$members", undefined)) as { id: string }[];
        assert.deepEqual(members.map((m) => m.id).sort(), ["h", "t"]);
      } finally {
        channel.close();
      }

      // Its timers still run: a member killed now is still declared dead.
      sendSignal(helper, "SIGKILL");
      await helper.exited;
      await within(t.waitForLine((l) => l.member === "h" && l.event === "dead"), 8_000, "t declares the killed h dead");
      assert.ok(t.lines.some((l) => typeof l.msg === "string" && l.msg.startsWith("membership message from")), "the refusal is logged");

      sendSignal(t, "SIGTERM");
      assert.equal(await within(t.exited, 8_000, "t stops after SIGTERM"), 0, t.stderr());
    } finally {
      await stopProcess(helper);
      await stopProcess(target);
    }
  });
}

/** Two in-process members, b joined through a. */
async function pair(overrides: Record<string, unknown> = {}) {
  const a = await startTestNode(() => {}, { nodeId: "a", swim: FAST_SWIM, ...overrides });
  // b ready in a's view, not just joined: its `ready` update (a new incarnation) would otherwise land
  // between a test's before and after readings of b.
  const bReady = memberEvent(a.node, (e) => e.member.id === "b" && e.member.status === "alive" && e.member.meta.state === "ready");
  const b = await startTestNode(() => {}, { nodeId: "b", swim: FAST_SWIM, seeds: [`127.0.0.1:${a.port}`], ...overrides });
  await within(bReady, 5_000, "a sees b ready");
  return { a, b, close: async () => void (await Promise.all([b.close(), a.close()])) };
}

test("gossip claiming b is dead at incarnation 1e300, or alive at 1e300 at another address, is rejected", async () => {
  const { a, b, close } = await pair();
  try {
    const before = a.node.members().find((m) => m.id === "b")!;
    await sendSwim(a.port, [
      ["$swim.gossip", { t: "gossip", from: "x", u: [{ id: "b", addr: before.addr, inc: 1e300, status: "dead" }] }],
      ["$swim.gossip", { t: "gossip", from: "x", u: [{ id: "b", addr: "127.0.0.1:7790", inc: 1e300, status: "alive", meta }] }],
      ["$swim.gossip", { t: "gossip", from: "x", u: [{ id: "b", addr: before.addr, inc: Number.NaN, status: "dead" }] }],
      ["$swim.gossip", { t: "gossip", from: "x", u: [{ id: "fake", addr: "127.0.0.1:7791", inc: 1e300, status: "alive", meta }] }],
    ]);
    const after = a.node.members().find((m) => m.id === "b")!;
    assert.equal(after.status, "alive");
    assert.equal(after.addr, before.addr);
    assert.equal(after.incarnation, before.incarnation);
    assert.deepEqual(a.node.members().map((m) => m.id).sort(), ["a", "b"]);
  } finally {
    await close();
  }
});

test("gossip moving live b to another address is ignored, b dead at the top incarnation is ignored, and b refutes the largest accusation one update may make", async () => {
  const { a, b, close } = await pair();
  try {
    const before = a.node.members().find((m) => m.id === "b")!;
    await sendSwim(a.port, [["$swim.gossip", { t: "gossip", from: "x", u: [{ id: "b", addr: "127.0.0.1:7790", inc: 2 ** 40, status: "alive", meta }] }]]);
    assert.equal(a.node.members().find((m) => m.id === "b")!.addr, before.addr);

    // An accusation at the top of the range is a jump no honest update makes: ignored, b untouched.
    await sendSwim(a.port, [["$swim.gossip", { t: "gossip", from: "x", u: [{ id: "b", addr: before.addr, inc: MAX_INCARNATION, status: "dead" }] }]]);
    assert.equal(a.node.members().find((m) => m.id === "b")!.status, "alive");
    // The largest accusation one update may make: b hears it and refutes one above it.
    const accused = before.incarnation + MAX_INCARNATION_STEP;
    const refuted = memberEvent(a.node, (e) => e.member.id === "b" && e.member.status === "alive" && e.member.incarnation === accused + 1);
    await sendSwim(a.port, [["$swim.gossip", { t: "gossip", from: "x", u: [{ id: "b", addr: before.addr, inc: accused, status: "dead" }] }]]);
    await within(refuted, 5_000, "b refutes the accusation");
    assert.equal(b.node.members().find((m) => m.id === "b")!.incarnation, accused + 1);
  } finally {
    await close();
  }
});

test("3,000 ping-req naming other addresses make the node open no connection to them", async () => {
  const { a, b, close } = await pair();
  const listeners: Listener[] = [];
  const accepted: Socket[] = [];
  try {
    // 300 listening ports stand for third parties; the attacker names each in 10 ping-req.
    for (let i = 0; i < 300; i++) {
      listeners.push(await runtime.listen({ host: "127.0.0.1", port: 0, accept: (socket) => (accepted.push(socket), { data() {}, close() {} }) }));
    }
    const channel = await connectChannel(a.port);
    try {
      const answers = await Promise.all(
        Array.from({ length: 3_000 }, (_, i) => {
          const addr = `127.0.0.1:${listeners[i % 300]!.port}`;
          // Unknown targets, and the known member b at a foreign address.
          const target = i % 2 === 0 ? `ghost-${i}` : "b";
          return channel.call("$swim.ping-req", { t: "ping-req", from: "x", target, addr }, { timeoutMs: 5_000 }).then((r) => (r as { t: string }).t);
        }),
      );
      assert.ok(answers.every((t) => t === "ack" || t === "nack"));
      assert.equal(answers.filter((t) => t === "nack").length >= 1_500, true, "unknown targets are nacked");
    } finally {
      channel.close();
    }
    assert.equal(accepted.length, 0, `${accepted.length} connections opened to the named addresses`);
  } finally {
    for (const socket of accepted) socket.close();
    for (const listener of listeners) await listener.stop();
    await close();
  }
});

test("huge sync pushes leave the member table at its cap, and /metrics counts what was dropped", async () => {
  const a = await startTestNode(() => {}, { nodeId: "a", httpPort: 0, swim: { ...FAST_SWIM, maxMembers: 300 } });
  try {
    const fakes = (from: number, n: number): Update[] =>
      Array.from({ length: n }, (_, i) => ({ id: `fake-${from + i}`, addr: `10.255.${(from + i) >> 8 & 255}.${(from + i) & 255}:7000`, inc: 1, status: "alive", meta }));
    // One push of 20,000 updates: over EBB_MAX_MESSAGE_ELEMENTS, its connection is closed unread.
    const flood = await connectRaw(a.port);
    flood.socket.write(encode([2, "$swim.sync", [{ t: "sync", from: "x", state: fakes(0, 20_000), push: true }]]));
    await flood.closed;
    flood.socket.close();
    await a.logs.next((l) => /exceeds the limit of 100000 elements/.test(String(l.msg)));
    // Then pages of 256 updates (each under the limits), far past the member cap.
    const pushes: [string, unknown][] = [];
    for (let p = 0; p < 8; p++) pushes.push(["$swim.sync", { t: "sync", from: "x", state: fakes(20_000 + p * 256, 256), push: true }]);
    await sendSwim(a.port, pushes);
    const count = a.node.members().length;
    assert.ok(count <= 300, `${count} members`);
    assert.equal(count, 300);
    await sendSwim(a.port, [["$swim.gossip", 42]]);
    const metrics = await (await fetch(`http://127.0.0.1:${a.node.httpAddress!.port}/metrics`)).text();
    const dropped = Number(/^ebb_rejected_total\{reason="swim_member_cap"\} (\d+)$/m.exec(metrics)?.[1]);
    // The 20,000-update push was closed unread; of the 2,048 paged fakes, 299 joined the node itself.
    assert.equal(dropped, 8 * 256 - 299);
    assert.match(metrics, /^ebb_rejected_total\{reason="swim"\} 1$/m);
  } finally {
    await a.close();
  }
});

test("a node joining a seed that knows 1,000 members learns them all, in pages under the message limit", async () => {
  // 64 KiB messages: the whole table of 1,000 members is about twice that.
  const limits = { maxMessageBytes: 64 * 1024 };
  const { a, b, close } = await pair(limits);
  let c: Awaited<ReturnType<typeof startTestNode>> | undefined;
  try {
    const pushes: [string, unknown][] = [];
    for (let p = 0; p < 4; p++) {
      const state: Update[] = Array.from({ length: 250 }, (_, i) => ({ id: `far-${p * 250 + i}`, addr: `10.254.${p}.${i}:7000`, inc: 1, status: "alive", meta }));
      pushes.push(["$swim.sync", { t: "sync", from: "x", state, push: true }]);
    }
    await sendSwim(a.port, pushes);
    assert.equal(a.node.members().length, 1_002);
    let learned!: () => void;
    const learnedAll = new Promise<void>((resolve) => (learned = resolve));
    c = await startTestNode(
      (node) =>
        node.onMemberEvent(() => {
          const members = node.members();
          if (members.length >= 1_003 && members.some((m) => m.id === "b")) learned();
        }),
      { nodeId: "c", swim: FAST_SWIM, seeds: [`127.0.0.1:${a.port}`], ...limits },
    );
    const joined = c;
    await within(learnedAll, 5_000, "c learns a, b and the 1,000 others").catch((error: Error) => {
      throw new Error(`${error.message}: c knows ${joined.node.members().length}`);
    });
  } finally {
    await c?.close();
    await close();
  }
});

test("meta.services: 5 in gossip never reaches the cluster client", async () => {
  const { a, b, close } = await pair();
  try {
    const before = a.node.members().find((m) => m.id === "b")!;
    await sendSwim(a.port, [["$swim.gossip", { t: "gossip", from: "x", u: [{ id: "b", addr: before.addr, inc: before.incarnation + 1, status: "alive", meta: { ...meta, services: 5 } }] }]]);
    const after = a.node.members().find((m) => m.id === "b")!;
    assert.ok(Array.isArray(after.meta.services));
    assert.deepEqual(after, before);
  } finally {
    await close();
  }
});

test("a seed answering $members with meta.services: 5 does not break cluster calls", async () => {
  const real = await startTestNode((node) => node.register(demo, demoHandlers), { nodeId: "real" });
  const forged = [{ id: "real", addr: `127.0.0.1:${real.port}`, incarnation: 1, status: "alive", since: 0, meta: { ...meta, services: 5 } }];
  const hostile = new RpcServer(runtime, { dispatcher: new Dispatcher({ router: new Router(), log: silentLogger, builtins: { $members: () => forged } }), log: silentLogger, maxMessageBytes: 1 << 20 });
  const listener = await hostile.listen("127.0.0.1", 0);
  const cluster = createClusterClient({ seeds: [`127.0.0.1:${listener.port}`, `127.0.0.1:${real.port}`], runtime, warmupMs: 0, timeoutMs: 5_000 });
  try {
    assert.deepEqual(await cluster.client(demo).echo({ hello: 1 }), { hello: 1 });
  } finally {
    cluster.close();
    hostile.closeAll();
    await listener.stop();
    await real.close();
  }
});

test("throwing state and member listeners stall neither the membership nor the stop sequence", async () => {
  const a = await startTestNode((node) => {
    node.onStateChange(() => {
      throw new Error("state listener failed");
    });
    node.onMemberEvent(() => {
      throw new Error("member listener failed");
    });
  }, { nodeId: "a", swim: FAST_SWIM });
  const bJoined = memberEvent(a.node, (e) => e.type === "join" && e.member.id === "b");
  const b = await startTestNode(() => {}, { nodeId: "b", swim: FAST_SWIM, seeds: [`127.0.0.1:${a.port}`] });
  await within(bJoined, 5_000, "a learns b");
  const bLeft = memberEvent(a.node, (e) => e.type === "left" && e.member.id === "b");
  await b.close();
  await within(bLeft, 5_000, "a hears b leave");
  const summary = await within(a.close(), 5_000, "a stops");
  assert.equal(summary.exitCode, 0);
  assert.equal(a.node.state, "stopped");
  assert.ok(a.logs.lines.some((l) => l.msg === "a member event listener failed"));
});

test("the membership transport keeps at most its cap of pooled connections, and drops one when its member is reaped", async () => {
  const listeners: Listener[] = [];
  const open = new Set<Socket>();
  let opened = 0;
  let waiting: { n: number; resolve: () => void } | undefined;
  const transport = new RpcSwimTransport(runtime, silentLogger, 1 << 20, undefined, undefined, { maxChannels: 3, idleMs: 60_000 });
  try {
    // Ten ebb nodes would do; plain listeners that answer nothing are enough to hold connections.
    for (let i = 0; i < 10; i++) {
      listeners.push(
        await runtime.listen({
          host: "127.0.0.1",
          port: 0,
          accept: (socket) => {
            open.add(socket);
            opened++;
            const check = () => waiting && opened === listeners.length && open.size <= waiting.n && waiting.resolve();
            const close = () => {
              open.delete(socket);
              check();
            };
            queueMicrotask(check);
            return { data() {}, end: () => socket.close(), close };
          },
        }),
      );
    }
    // Resolves once all ten connections were accepted and at most n are still open.
    const closedDown = (n: number) => new Promise<void>((resolve) => (waiting = { n, resolve }));
    const settled = closedDown(3);
    for (const listener of listeners) transport.send(`127.0.0.1:${listener.port}`, { t: "gossip", from: "x", u: [] });
    assert.ok(transport.pooled <= 3, `${transport.pooled} pooled`);
    await within(settled, 5_000, "at most 3 connections stay open").catch((error: Error) => {
      throw new Error(`${error.message}: ${open.size} open, ${opened} opened`);
    });
    transport.forget(`127.0.0.1:${listeners[9]!.port}`);
    assert.ok(transport.pooled <= 2);
  } finally {
    transport.close();
    for (const socket of open) socket.close();
    for (const listener of listeners) await listener.stop();
  }
});

test("2,000 seeded random mutations of valid $swim messages leave the node serving, b at its address and shutdown clean", async () => {
  const { a, b, close } = await pair();
  const random = seededRandom(10);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const bAddr = a.node.members().find((m) => m.id === "b")!.addr;
  const oddValues = [null, true, 0, -1, 1e300, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, "", "x".repeat(2_000), "127.0.0.1:7790", "b", [], [1, 2], {}, { t: "ping" }, "alive", "dead", 5, 1.5];
  const valid = (): Record<string, unknown> =>
    pick([
      { t: "ping", from: "x", target: "a", u: [{ id: "b", addr: bAddr, inc: 1, status: "alive", meta }] },
      { t: "ping-req", from: "x", target: "b", addr: bAddr },
      { t: "gossip", from: "x", u: [{ id: "b", addr: bAddr, inc: 5, status: "suspect", by: "x" }] },
      { t: "gossip", from: "x", u: [{ id: "b", addr: "127.0.0.1:7790", inc: 2 ** 40, status: "alive", meta }] },
      { t: "sync", from: "x", digest: 1, state: [{ id: "a", addr: "127.0.0.1:1", inc: 1, status: "alive", meta }] },
      { t: "ack", from: "x" },
    ]);
  /** Replaces one field, at the top or inside the first update, with an odd value. */
  const mutate = (message: Record<string, unknown>): Record<string, unknown> => {
    const target = Array.isArray(message.u) && random() < 0.6 ? (message.u[0] as Record<string, unknown>) : Array.isArray(message.state) && random() < 0.6 ? (message.state[0] as Record<string, unknown>) : message;
    const keys = Object.keys(target);
    const key = random() < 0.1 ? "meta" : pick(keys);
    if (random() < 0.15) delete target[key];
    else target[key] = key === "meta" ? { ...meta, [pick(Object.keys(meta))]: pick(oddValues) } : pick(oddValues);
    return message;
  };
  const channel = await connectChannel(a.port);
  try {
    for (let batch = 0; batch < 4; batch++) {
      const calls: Promise<unknown>[] = [];
      for (let i = 0; i < 500; i++) {
        const message = mutate(valid());
        const method = `$swim.${typeof message.t === "string" && message.t.length < 20 ? message.t : "gossip"}`;
        if (random() < 0.5) channel.notify(method, [message]);
        else calls.push(channel.call(method, message, { timeoutMs: 5_000 }).catch((error: unknown) => error));
      }
      await Promise.all(calls);
      // After each batch: an honest call is served, b is where it was, every member is well formed.
      assert.equal(((await channel.call("$ping", undefined)) as { node: string }).node, "a");
      const members = a.node.members();
      const seenB = members.find((m) => m.id === "b")!;
      assert.equal(seenB.addr, bAddr);
      assert.notEqual(seenB.status, "dead");
      for (const m of members) {
        assert.equal(typeof m.addr, "string");
        assert.ok(Array.isArray(m.meta.services), JSON.stringify(m));
        assert.ok(Number.isSafeInteger(m.incarnation) && m.incarnation <= MAX_INCARNATION + 1, JSON.stringify(m));
      }
    }
  } finally {
    channel.close();
  }
  assert.equal(a.node.stats.inflight, 0);
  const summary = await within(a.close(), 5_000, "a stops");
  assert.equal(summary.exitCode, 0);
  await b.close();
  await close();
});
