// The cluster client over the in-memory runtime: baffle retries, connection loss, backoff, goaway, membership wake-ups.
import { test } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { type ClusterClient, type ClusterClientOptions, createClusterClient } from "../../../src/cluster/client.ts";
import { silentLogger } from "../../../src/log.ts";
import type { Member, MemberEvent } from "../../../src/membership/types.ts";
import { type CallContext, defineService, type Implementation } from "../../../src/rpc/contract.ts";
import { Dispatcher } from "../../../src/rpc/dispatch.ts";
import { RpcError } from "../../../src/rpc/errors.ts";
import { Router } from "../../../src/rpc/router.ts";
import { RpcServer } from "../../../src/rpc/server.ts";
import { createMemoryRuntime, type MemoryRuntime } from "../../../src/runtime/memory.ts";
import { ManualClock, settle } from "../../helpers/clock.ts";
import { until } from "../../helpers/net.ts";
import { realClock } from "../../../src/runtime/clock.ts";

const svc = defineService("svc", {
  /** Answers the node's name. */
  who: { input: z.unknown(), output: z.string(), idempotent: true },
  /** The same, not idempotent. */
  whoOnce: { input: z.unknown(), output: z.string() },
});

/** A node on the in-memory runtime whose `svc` methods run `behave` (default: answer its name). */
interface FakeNode {
  name: string;
  addr: string;
  server: RpcServer;
  /** Calls its handlers received. */
  calls: number;
  behave: (name: string, ctx: CallContext) => Promise<string> | string;
}

async function startNode(runtime: MemoryRuntime, name: string): Promise<FakeNode> {
  const node = { name, calls: 0, behave: ((n: string) => n) as FakeNode["behave"] } as FakeNode;
  const run = (_input: unknown, ctx: CallContext) => {
    node.calls++;
    return node.behave(name, ctx);
  };
  const handlers: Implementation<typeof svc> = { who: run, whoOnce: run };
  // `$info` names the node, as a real node's does (pushback is taken from a node that names itself).
  const dispatcher = new Dispatcher({ router: new Router().register(svc, handlers), log: silentLogger, builtins: { $info: () => ({ node: name, services: {} }) } });
  node.server = new RpcServer(runtime, { dispatcher, log: silentLogger, maxMessageBytes: 1024 * 1024 });
  const { port } = await node.server.listen("127.0.0.1", 0);
  node.addr = `127.0.0.1:${port}`;
  return node;
}

async function cluster(count: number, options: Partial<ClusterClientOptions> = {}): Promise<{ runtime: MemoryRuntime; nodes: FakeNode[]; client: ClusterClient } & AsyncDisposable> {
  const runtime = createMemoryRuntime();
  const nodes: FakeNode[] = [];
  for (let i = 0; i < count; i++) nodes.push(await startNode(runtime, `n${i}`));
  const client = createClusterClient({ runtime, addresses: nodes.map((n) => n.addr), warmupMs: 0, ...options });
  return {
    runtime,
    nodes,
    client,
    async [Symbol.asyncDispose]() {
      client.close();
      for (const node of nodes) {
        node.server.closeAll();
        await node.server.stopAccepting();
      }
    },
  };
}

test("client: a node answering SHUTTING_DOWN (processed: false) is retried on another, counted as baffled", async () => {
  await using c = await cluster(2);
  const [baffling, good] = c.nodes as [FakeNode, FakeNode];
  baffling.behave = () => {
    throw new RpcError("draining", "SHUTTING_DOWN");
  };
  const api = c.client.client(svc);
  for (let i = 0; i < 20; i++) assert.equal(await api.whoOnce({}), good.name);
  const metrics = c.client.metrics();
  assert.equal(metrics.retries.baffled ?? 0, baffling.calls);
  assert.equal(metrics.sentByNode[baffling.addr] ?? 0, baffling.calls);
  assert.equal(metrics.sentByNode[good.addr], 20);
  assert.ok(baffling.calls > 0, "the balancer sent some calls to the baffling node");
  assert.deepEqual(metrics.errors, {});
});

test("client: a connection lost mid-call is retried on another node only for an idempotent method", async () => {
  await using c = await cluster(2);
  const api = c.client.client(svc);
  let drop = false;
  let dropped: FakeNode | undefined;
  for (const node of c.nodes) {
    node.behave = (name) => {
      if (!drop) return name;
      drop = false;
      dropped = node;
      node.server.closeAll();
      return new Promise(() => {});
    };
  }
  // Idempotent: the lost call runs again on the other node.
  drop = true;
  const answer = await api.who({});
  assert.ok(dropped && answer !== dropped.name, "answered by the node that did not drop the connection");
  assert.deepEqual(c.client.metrics().retries, { "connection lost (idempotent)": 1 });
  // Not idempotent: the caller learns the outcome is unknown.
  drop = true;
  await assert.rejects(api.whoOnce({}), (error: RpcError) => error.code === "UNAVAILABLE" && /outcome unknown/.test(error.message));
  assert.equal(c.client.metrics().errors.UNAVAILABLE, 1);
  assert.equal(c.nodes[0]!.calls + c.nodes[1]!.calls, 3);
});

test("client: idempotentRetries: false leaves a lost idempotent call to the caller", async () => {
  await using c = await cluster(1, { idempotentRetries: false });
  const [node] = c.nodes as [FakeNode];
  const api = c.client.client(svc);
  node.behave = () => {
    node.server.closeAll();
    return new Promise(() => {});
  };
  await assert.rejects(api.who({}), (error: RpcError) => error.code === "UNAVAILABLE");
  assert.deepEqual(c.client.metrics().retries, {});
});

test("client: an unreachable node backs off 100 ms, then 200 ms, on the injected clock", async () => {
  const clock = new ManualClock();
  await using c = await cluster(1, { clock });
  const [node] = c.nodes as [FakeNode];
  await node.server.stopAccepting(); // its port now refuses connections
  const api = c.client.client(svc);
  await assert.rejects(api.who({}), (error: RpcError) => /No node to call: every one of the nodes offering "svc" refused or could not be reached/.test(error.message));
  assert.equal(c.client.metrics().retries.unreachable, 1);
  assert.deepEqual(c.client.candidates(), [], "backing off");
  await clock.advance(99);
  assert.deepEqual(c.client.candidates(), []);
  await clock.advance(1);
  assert.equal(c.client.candidates().length, 1, "eligible again after 100 ms");
  await assert.rejects(api.who({}));
  await clock.advance(199);
  assert.deepEqual(c.client.candidates(), [], "the second failure doubles the backoff");
  await clock.advance(1);
  assert.equal(c.client.candidates().length, 1);
  assert.equal(node.calls, 0);
});

test("client: after $goaway a node gets no new calls; ready again, it gets a fresh connection", async () => {
  const members = new Map<string, Member>();
  const listeners = new Set<(event: MemberEvent) => void>();
  const runtime = createMemoryRuntime();
  const a = await startNode(runtime, "a");
  const b = await startNode(runtime, "b");
  const member = (n: FakeNode, state: string): Member => ({ id: n.name, addr: n.addr, incarnation: 0, status: "alive", meta: { state, services: ["svc"], version: "0", http: null }, since: 0 });
  const publish = (n: FakeNode, state: string) => {
    members.set(n.name, member(n, state));
    for (const listener of listeners) listener({ type: "update", member: members.get(n.name)! });
  };
  publish(a, "ready");
  publish(b, "starting");
  const client = createClusterClient({ runtime, warmupMs: 0, membership: { members: () => [...members.values()], onMemberEvent: (l) => (listeners.add(l), () => listeners.delete(l)) } });
  try {
    const api = client.client(svc);
    assert.equal(await api.who({}), "a");
    a.server.broadcastGoaway({ reason: "draining" });
    await settle(); // the in-memory runtime delivers on microtasks
    assert.deepEqual(client.candidates(), [], "a node that said goaway is no candidate");
    // No node to call now: the call waits for the view to change, and B's readiness wakes it.
    const waiting = api.who({});
    publish(b, "ready");
    assert.equal(await waiting, "b");
    for (let i = 0; i < 10; i++) assert.equal(await api.who({}), "b");
    assert.equal(a.calls, 1, "no call reached the node after its goaway");
    // A drains, then comes back ready on the same address: a new connection, not the one that said goaway.
    publish(a, "draining");
    a.server.goaway = undefined;
    publish(a, "ready");
    const before = a.calls;
    for (let i = 0; i < 40 && a.calls === before; i++) await api.who({});
    assert.ok(a.calls > before, "the node is called again");
  } finally {
    client.close();
    for (const n of [a, b]) {
      n.server.closeAll();
      await n.server.stopAccepting();
    }
  }
});

test("client: with no node at all the call fails with the no-node text, whenAvailable with the fewer-than text", async () => {
  const clock = new ManualClock();
  const runtime = createMemoryRuntime();
  const client = createClusterClient({ runtime, clock, membership: { members: () => [], onMemberEvent: () => () => {} }, candidateWaitMs: 500 });
  try {
    const calling = assert.rejects(client.client(svc).who({}), /No node to call: no node is known/);
    await clock.advance(500);
    await calling;
    const waiting = assert.rejects(client.whenAvailable("svc", 2, 1_000), /Fewer than 2 nodes offering "svc" within 1000 ms/);
    await clock.advance(1_000);
    await waiting;
    assert.equal(clock.pending, 0, "no timer left behind");
  } finally {
    client.close();
  }
});

test("client: with attemptTimeoutMs, an idempotent call with no answer in time goes to another node within its deadline; others wait the whole deadline", async () => {
  await using c = await cluster(2, { attemptTimeoutMs: 300 });
  const [stalled, good] = c.nodes as [FakeNode, FakeNode];
  stalled.behave = () => new Promise(() => {}); // a node that takes calls and never answers (lossy, stalled)
  const api = c.client.client(svc);
  for (let i = 0; i < 10; i++) assert.equal(await api.who({}, { timeoutMs: 5_000 }), good.name);
  const metrics = c.client.metrics();
  assert.equal(metrics.retries["attempt timed out (idempotent)"] ?? 0, stalled.calls);
  assert.ok(stalled.calls > 0, "the balancer sent some calls to the stalled node");
  assert.deepEqual(metrics.errors, {});
  // Not idempotent: the try keeps the whole deadline, and the caller sees it pass.
  good.behave = () => new Promise(() => {});
  const before = stalled.calls + good.calls;
  const started = Date.now();
  await assert.rejects(api.whoOnce({}, { timeoutMs: 300 }), (error: RpcError) => error.code === "DEADLINE_EXCEEDED");
  assert.ok(Date.now() - started >= 290, "one try had the whole deadline");
  assert.equal(stalled.calls + good.calls, before + 1, "one try only");
});

test("client: when every node let an attempt time out, the caller sees DEADLINE_EXCEEDED at once, not a wait for another node", async () => {
  await using c = await cluster(1, { attemptTimeoutMs: 300 });
  const [node] = c.nodes as [FakeNode];
  node.behave = () => new Promise(() => {});
  const started = Date.now();
  await assert.rejects(c.client.client(svc).who({}, { timeoutMs: 5_000 }), (error: RpcError) => error.code === "DEADLINE_EXCEEDED"); // the client's timer or the node's deadline, whichever fires first
  assert.ok(Date.now() - started < 2_500, "failed after the attempt, not after the candidate wait or the 5 s deadline");
  assert.equal(node.calls, 1);
  assert.deepEqual(c.client.metrics().retries, { "attempt timed out (idempotent)": 1 });
});

test("client: with every node OVERLOADED the retry budget holds sends near one per call, and the caller gets OVERLOADED; without it, one per node", async () => {
  for (const [budget, most] of [[{ ratio: 0.1, minPerSecond: 0 }, 1.1], [false, 4]] as const) {
    await using c = await cluster(4, { retryBudget: budget });
    for (const node of c.nodes) {
      node.behave = () => {
        throw new RpcError("shedding", "OVERLOADED", { processed: false });
      };
    }
    const api = c.client.client(svc);
    const calls = 400;
    for (let i = 0; i < calls; i++) {
      await assert.rejects(api.who({}), (error: RpcError) => (budget ? error.code === "OVERLOADED" || error.code === "UNAVAILABLE" : error.code === "UNAVAILABLE"));
    }
    const sent = c.nodes.reduce((sum, n) => sum + n.calls, 0);
    assert.ok(sent <= calls * most && sent >= calls * Math.min(most, 1), `${sent} sends for ${calls} calls`);
    if (budget) {
      assert.ok(c.client.metrics().retriesRefused >= calls * 0.8, `refused ${c.client.metrics().retriesRefused}`);
      assert.ok((c.client.metrics().errors.OVERLOADED ?? 0) >= calls * 0.8);
    }
  }
});

test("client: baffled calls are retried whatever the budget (a drain stays free)", async () => {
  await using c = await cluster(2, { retryBudget: { ratio: 0, minPerSecond: 0 } });
  const [baffling, good] = c.nodes as [FakeNode, FakeNode];
  baffling.behave = () => {
    throw new RpcError("draining", "SHUTTING_DOWN");
  };
  const api = c.client.client(svc);
  for (let i = 0; i < 50; i++) assert.equal(await api.whoOnce({}), good.name);
  assert.equal(c.client.metrics().retriesRefused, 0);
  assert.ok(baffling.calls > 0);
});

test("client: a node failing every call with INTERNAL is ejected after 5 in a row and comes back at the floor of the warm-up when its time is up", async () => {
  let offset = 0;
  const clock = { now: () => Date.now() + offset, setTimer: (ms: number, fn: () => void) => realClock.setTimer(ms, fn) };
  const failedWith = async (ejection: false | undefined) => {
    await using c = await cluster(4, { outlierEjection: ejection, clock, warmupMs: 10_000 });
    const bad = c.nodes[0]!;
    bad.behave = () => {
      throw new Error("broken dependency");
    };
    const api = c.client.client(svc);
    let failed = 0;
    for (let i = 0; i < 400; i++) await api.whoOnce({}).catch(() => failed++);
    if (ejection === false) return failed;
    assert.equal(c.client.metrics().ejections, 1);
    assert.equal(bad.calls, 5);
    assert.ok(!c.client.candidates().some((e) => e.addr === bad.addr), "the bad node is out");
    // Its 10 s are up: it is back, at the floor of the warm-up ramp.
    offset += 10_001;
    const back = c.client.candidates().find((e) => e.addr === bad.addr);
    assert.ok(back, "the bad node is back");
    assert.ok(back.weight < 0.2, `weight ${back.weight}`);
    return failed;
  };
  const withEjection = await failedWith(undefined);
  const without = await failedWith(false);
  assert.equal(withEjection, 5);
  assert.ok(without >= 60, `without ejection ${without} of 400 failed`);
});

/** A behaviour that holds each call until its signal aborts, recording the abort's code. */
function stalls(aborted: string[]): FakeNode["behave"] {
  return (_name, ctx) =>
    new Promise((_, reject) =>
      ctx.signal.addEventListener("abort", () => {
        aborted.push((ctx.signal.reason as RpcError).code);
        reject(ctx.signal.reason);
      }),
    );
}

test("hedging: an idempotent call unanswered within the hedge delay goes to another node too; the first answer wins and the stalled try is cancelled", async () => {
  await using c = await cluster(2, { hedging: { delayMs: 30 } });
  const aborted: string[] = [];
  c.nodes[0]!.behave = stalls(aborted);
  const api = c.client.client(svc);
  // Every call answered by the healthy node, those that went to the stalled one through a hedge.
  for (let i = 0; i < 10; i++) assert.equal(await api.who({}), "n1");
  const { hedges, hedgesWon, errors } = c.client.metrics();
  assert.ok(hedges >= 1, `hedges ${hedges}`);
  assert.equal(hedgesWon, hedges);
  assert.deepEqual(errors, {});
  // Each stalled try was told to stop ($cancel) once its hedge answered.
  await until(() => aborted.length === c.nodes[0]!.calls, "every stalled try was cancelled");
  assert.deepEqual(new Set(aborted), new Set(["CANCELLED"]));
});

test("hedging: never for a method that is not idempotent; an answer about the request ends a hedged call at once", async () => {
  await using c = await cluster(2, { hedging: { delayMs: 10 } });
  const aborted: string[] = [];
  for (const node of c.nodes) node.behave = stalls(aborted);
  const api = c.client.client(svc);
  await assert.rejects(api.whoOnce({}, { timeoutMs: 200 }), (error: RpcError) => error.code === "DEADLINE_EXCEEDED");
  assert.equal(c.client.metrics().hedges, 0);
  for (const node of c.nodes) {
    node.behave = () => {
      throw new RpcError("no such thing", "APPLICATION");
    };
  }
  const started = Date.now();
  await assert.rejects(api.who({}), (error: RpcError) => error.code === "APPLICATION");
  assert.ok(Date.now() - started < 200);
});

test("hedging: hedges come out of the retry budget; refused, the first try goes on alone", async () => {
  await using c = await cluster(2, { hedging: { delayMs: 10 }, retryBudget: { ratio: 0, minPerSecond: 0 } });
  let release!: () => void;
  const held = new Promise<string>((resolve) => (release = () => resolve("held")));
  for (const node of c.nodes) node.behave = () => held;
  const call = c.client.client(svc).who({});
  await until(() => c.client.metrics().retriesRefused === 1, "the hedge was refused");
  release();
  assert.equal(await call, "held");
  assert.equal(c.client.metrics().hedges, 0);
});

test("hedging: without a fixed delay, a method is hedged once 32 calls were answered, after their 95th percentile", async () => {
  await using c = await cluster(2, { hedging: {} });
  const api = c.client.client(svc);
  for (let i = 0; i < 31; i++) await api.who({});
  const aborted: string[] = [];
  c.nodes[0]!.behave = stalls(aborted);
  c.nodes[1]!.behave = stalls(aborted);
  // Not known yet: no hedge (both nodes stall; the call runs out of its time).
  await assert.rejects(api.who({}, { timeoutMs: 100 }), (error: RpcError) => error.code === "DEADLINE_EXCEEDED");
  assert.equal(c.client.metrics().hedges, 0);
  for (const node of c.nodes) node.behave = (name) => name;
  for (let i = 0; i < 40; i++) await api.who({});
  // Now a call that goes to a stalled n0 first is hedged after a few ms (the floor, 5 ms: in-memory calls take less).
  c.nodes[0]!.behave = stalls(aborted);
  const before = { tries: c.nodes[0]!.calls, hedges: c.client.metrics().hedges };
  for (let i = 0; i < 20; i++) assert.equal(await api.who({}, { timeoutMs: 1_000 }), "n1");
  const stalledTries = c.nodes[0]!.calls - before.tries;
  assert.ok(stalledTries >= 1, "some call went to n0 first (p2c: 1 in 2 each)");
  assert.equal(c.client.metrics().hedges - before.hedges, stalledTries);
});

test("pushback: a node refusing OVERLOADED with retryAfterMs gets no call from this client for that long", async () => {
  await using c = await cluster(2);
  const [pushing, other] = c.nodes as [FakeNode, FakeNode];
  pushing.behave = () => {
    throw new RpcError("adaptive limit", "OVERLOADED", { processed: false, data: { retryAfterMs: 10_000, node: pushing.name } });
  };
  const api = c.client.client(svc);
  for (let i = 0; i < 30; i++) assert.equal(await api.who({}), other.name);
  assert.equal(pushing.calls, 1, "called once (p2c picks it within 30 calls), then left out");
});

test("pushback: a refusal a node passes on from another (naming that one) leaves the node that relayed it in", async () => {
  await using c = await cluster(2);
  const [relaying, other] = c.nodes as [FakeNode, FakeNode];
  relaying.behave = () => {
    throw new RpcError("a node behind me is over its limit", "OVERLOADED", { processed: false, data: { retryAfterMs: 10_000, node: "behind" } });
  };
  const api = c.client.client(svc);
  for (let i = 0; i < 30; i++) assert.equal(await api.who({}), other.name);
  assert.ok(relaying.calls > 1, `the relaying node was called ${relaying.calls} times`);
});

test("hedging: a call whose only try fails ends at once, and a hedge the budget refuses is asked for once, not again and again", async () => {
  await using c = await cluster(2, { hedging: { delayMs: 5 }, retryBudget: { ratio: 0, minPerSecond: 0 } });
  for (const node of c.nodes) {
    node.behave = () => {
      throw new Error("boom");
    };
  }
  const started = Date.now();
  await assert.rejects(c.client.client(svc).who({}, { timeoutMs: 5_000 }), (error: RpcError) => error.code === "INTERNAL");
  assert.ok(Date.now() - started < 1_000);
  const aborted: string[] = [];
  for (const node of c.nodes) node.behave = stalls(aborted);
  await assert.rejects(c.client.client(svc).who({}, { timeoutMs: 300 }), (error: RpcError) => error.code === "DEADLINE_EXCEEDED");
  assert.equal(c.client.metrics().retriesRefused, 1);
});

test("one call makes at most 10 tries, whatever the budget has left: 20 addresses that refuse connections", async () => {
  const runtime = createMemoryRuntime();
  const addresses = Array.from({ length: 20 }, (_, i) => `127.0.0.1:${40_000 + i}`);
  const client = createClusterClient({ runtime, addresses, warmupMs: 0, retryBudget: false });
  try {
    await assert.rejects(client.call("svc.who", {}), (error: RpcError) => error.code === "UNAVAILABLE");
    assert.ok((client.metrics().retries.unreachable ?? 0) <= 9, JSON.stringify(client.metrics().retries));
  } finally {
    client.close();
  }
});
