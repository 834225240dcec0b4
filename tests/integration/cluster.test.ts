import { test } from "node:test";
import assert from "node:assert/strict";
import { createClusterClient } from "../../src/cluster/client.ts";
import { configWith } from "../../src/config/load.ts";
import { silentLogger } from "../../src/log.ts";
import { RpcSwimTransport } from "../../src/membership/transport.ts";
import type { MemberEvent, SwimMessage } from "../../src/membership/types.ts";
import { createNode, type EbbNode } from "../../src/node.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { connectChannel, LogCapture, runtime, startTestNode, until } from "../helpers/net.ts";
import { FAST_SWIM_ENV, type NodeProcess, type RunnerName, runCli, sendSignal, startNodeProcess, stopProcess } from "../helpers/process.ts";

// Fast membership timings so detection fits a test; the defaults are memberlist's LAN profile.
const FAST = FAST_SWIM_ENV;

/** Resolves when `proc` logged the membership event `event` about `member`. */
function memberEvent(proc: NodeProcess, member: string, event: string, predicate: (line: Record<string, unknown>) => boolean = () => true) {
  return proc.waitForLine((l) => l.member === member && l.event === event && predicate(l));
}

test("five members on Bun, Deno and the binary join through one seed, detect a kill -9, see a drain then a leave, and take a restart back", async () => {
  const runners: RunnerName[] = ["bun", "deno", "binary", "bun", "deno"];
  const procs: NodeProcess[] = [];
  try {
    const seed = await startNodeProcess(runners[0]!, { ...FAST, EBB_NODE_ID: "c0" });
    procs.push(seed);
    const seeds = `127.0.0.1:${seed.port}`;
    for (let i = 1; i < 5; i++) procs.push(await startNodeProcess(runners[i]!, { ...FAST, EBB_NODE_ID: `c${i}`, EBB_SEEDS: seeds }));

    // Everyone learns everyone: each member logs a join for each of the four others.
    for (const proc of procs) {
      for (let j = 0; j < 5; j++) {
        const id = `c${j}`;
        if (proc.lines[0]!.node !== id) await memberEvent(proc, id, "join");
      }
    }

    // kill -9 c4: every other member marks it dead.
    sendSignal(procs[4]!, "SIGKILL");
    await procs[4]!.exited;
    const killedAt = Date.now();
    for (const proc of procs.slice(0, 4)) await memberEvent(proc, "c4", "dead");
    const detection = Date.now() - killedAt;

    // SIGTERM c3: the others see it draining, then left, within a second.
    const termAt = Date.now();
    sendSignal(procs[3]!, "SIGTERM");
    for (const proc of procs.slice(0, 3)) {
      await memberEvent(proc, "c3", "update", (l) => l.memberState === "draining");
      await memberEvent(proc, "c3", "left");
    }
    const leaveMs = Date.now() - termAt;
    assert.ok(leaveMs < 1_000, `draining then left seen everywhere after ${leaveMs} ms`);
    assert.equal(await procs[3]!.exited, 0);

    // Restart c3 with the same id (on Deno this time): alive again at once, with a higher incarnation.
    const left = procs[0]!.lines.find((l) => l.member === "c3" && l.event === "left")!;
    const before = procs[0]!.lines.length;
    procs[3] = await startNodeProcess("deno", { ...FAST, EBB_NODE_ID: "c3", EBB_SEEDS: seeds });
    for (const proc of procs.slice(0, 3)) {
      const rejoined = await proc.waitForLine((l) => l.member === "c3" && l.event === "join" && proc.lines.indexOf(l) >= (proc === procs[0] ? before : 0) && Number(l.incarnation) > Number(left.incarnation));
      assert.equal(rejoined.status, "alive");
    }
    console.log(`membership on loopback: kill -9 detected by all in ${detection} ms; drain+leave seen by all in ${leaveMs} ms`);
  } finally {
    for (const proc of procs) await stopProcess(proc);
  }
});

test("a join opens a new connection each time, so a seed given as a DNS name is resolved again; other membership traffic is pooled", async () => {
  const seed = await startTestNode(() => {}, { nodeId: "seed" });
  const transport = new RpcSwimTransport(runtime, silentLogger, 1 << 20);
  try {
    const address = `localhost:${seed.port}`;
    const ask = (message: SwimMessage) => new Promise<SwimMessage | undefined>((resolve) => transport.request(address, message, 2_000, resolve));
    const before = seed.node.stats.accepted;
    for (let i = 0; i < 2; i++) {
      const answer = await ask({ t: "sync", from: "joiner", join: true, state: [] });
      assert.equal(answer?.t, "sync");
      assert.ok(answer?.t === "sync" && answer.state?.some((u) => u.id === "seed"), "the seed answers with its state");
    }
    assert.equal(seed.node.stats.accepted, before + 2, "one connection per join");
    for (let i = 0; i < 3; i++) assert.equal((await ask({ t: "ping", from: "joiner", target: "seed" }))?.t, "ack");
    assert.equal(seed.node.stats.accepted, before + 3, "pings share one pooled connection");
  } finally {
    transport.close();
    await seed.close();
  }
});

test("with a cluster key, members on Bun, Deno and the binary form one cluster; a node with another key is kept out, and the CLI needs the key", async () => {
  const KEY = "hR3kV9wQ2mZx7LpB5nTc8YdF1sGj4UaE6oKiW0qXyN8=";
  const procs: NodeProcess[] = [];
  try {
    const a = await startNodeProcess("bun", { ...FAST, EBB_NODE_ID: "k-a", EBB_CLUSTER_KEY: KEY });
    procs.push(a);
    const seeds = `127.0.0.1:${a.port}`;
    const b = await startNodeProcess("deno", { ...FAST, EBB_NODE_ID: "k-b", EBB_CLUSTER_KEY: KEY, EBB_SEEDS: seeds });
    const c = await startNodeProcess("binary", { ...FAST, EBB_NODE_ID: "k-c", EBB_CLUSTER_KEY: KEY, EBB_SEEDS: seeds });
    const x = await startNodeProcess("bun", { ...FAST, EBB_NODE_ID: "k-x", EBB_CLUSTER_KEY: "Pm4tJ8eX1cR6vN0bL3wK7zH2yD9gS5fQaTuV_oIj-Ek", EBB_SEEDS: seeds });
    // The same key, another cluster: kept out too.
    const y = await startNodeProcess("deno", { ...FAST, EBB_NODE_ID: "k-y", EBB_CLUSTER_KEY: KEY, EBB_CLUSTER_ID: "staging", EBB_SEEDS: seeds });
    procs.push(b, c, x, y);
    for (const [proc, others] of [[a, ["k-b", "k-c"]], [b, ["k-a", "k-c"]], [c, ["k-a", "k-b"]]] as const) {
      for (const id of others) await memberEvent(proc, id, "join");
    }
    await x.waitForLine((l) => l.level === "warn" && String(l.msg) === `membership: peer 127.0.0.1:${a.port} does not hold any of our cluster keys`);
    await y.waitForLine((l) => l.level === "warn" && String(l.msg) === `membership: peer 127.0.0.1:${a.port} is not of cluster "staging" (EBB_CLUSTER_ID)`);
    await a.waitForLine((l) => l.level === "warn" && /^peer 127\.0\.0\.1:\d+ proved an unknown key/.test(String(l.msg)));
    const channel = await connectChannel(a.port, { clusterKey: KEY });
    const members = (await channel.call("$members", undefined)) as { id: string }[];
    channel.close();
    assert.deepEqual(members.map((m) => m.id).sort(), ["k-a", "k-b", "k-c"]);
    const [withKey, withoutKey] = await Promise.all([
      runCli("binary", ["call", "demo.echo", '{"via":"key"}', "--seeds", seeds], { EBB_CLUSTER_KEY: KEY }),
      runCli("deno", ["call", "demo.echo", "{}", "--seeds", seeds]),
    ]);
    assert.equal(withKey.code, 0, withKey.stderr);
    assert.deepEqual(JSON.parse(withKey.stdout), { via: "key" });
    assert.equal(withoutKey.code, 1);
    assert.match(withoutKey.stderr, /^UNAUTHENTICATED: /);
    for (const proc of procs) sendSignal(proc, "SIGTERM");
    for (const proc of procs) assert.equal(await proc.exited, 0);
    for (const proc of [a, b, c]) {
      assert.ok(!proc.lines.some((l) => l.member === "k-x" || l.member === "k-y"), "no member heard of the node with the other key or the other cluster id");
    }
  } finally {
    for (const proc of procs) await stopProcess(proc);
  }
});

const CALL_TIMEOUT_MS = 500;

test("a node frozen by SIGSTOP is suspected and routed around at once, and takes traffic again after SIGCONT refutes it", async () => {
  const procs: NodeProcess[] = [];
  let viewer: EbbNode | undefined;
  let load: ReturnType<typeof setInterval> | undefined;
  let cluster: ReturnType<typeof createClusterClient> | undefined;
  try {
    const first = await startNodeProcess("bun", { ...FAST, EBB_NODE_ID: "s0" });
    procs.push(first);
    const seeds = `127.0.0.1:${first.port}`;
    procs.push(await startNodeProcess("deno", { ...FAST, EBB_NODE_ID: "s1", EBB_SEEDS: seeds }));
    const frozen = await startNodeProcess("binary", { ...FAST, EBB_NODE_ID: "s2", EBB_SEEDS: seeds });
    procs.push(frozen);

    // The viewer is a member of the cluster (offering nothing); the client follows its membership.
    const swim = { ...configWith().swim, probeIntervalMs: 200, probeTimeoutMs: 100, gossipIntervalMs: 50, suspicionMult: 3, pushPullIntervalMs: 2_000 };
    viewer = createNode({ config: configWith({ nodeId: "viewer", rpcPort: 0, httpPort: null, seeds: [seeds], swim }), log: new LogCapture().logger, runtime });
    const events: MemberEvent[] = [];
    let waiter: { from: number; match: (e: MemberEvent) => boolean; resolve: () => void } | undefined;
    viewer.onMemberEvent((event) => {
      events.push(event);
      if (waiter && waiter.match(event)) waiter.resolve();
    });
    /** Resolves at the first member event from index `from` on that matches. */
    const seen = (from: number, match: (e: MemberEvent) => boolean) =>
      events.slice(from).some(match) ? Promise.resolve() : new Promise<void>((resolve) => (waiter = { from, match, resolve }));
    await viewer.start();
    cluster = createClusterClient({ membership: viewer, runtime, timeoutMs: CALL_TIMEOUT_MS, warmupMs: 0 });
    await cluster.whenAvailable("demo", 3);

    // 100 calls a second, each recorded with when it was sent and how it ended.
    const calls: { at: number; code: string }[] = [];
    let target: { n: number; resolve: () => void } | undefined;
    const afterCalls = (n: number) => new Promise<void>((resolve) => (target = { n: calls.length + n, resolve }));
    const client = cluster;
    load = setInterval(() => {
      const at = Date.now();
      client
        .call("demo.echo", { at })
        .then(
          () => calls.push({ at, code: "OK" }),
          (error: unknown) => calls.push({ at, code: error instanceof RpcError ? error.code : String(error) }),
        )
        .finally(() => target && calls.length >= target.n && target.resolve());
    }, 10);
    await afterCalls(50);
    assert.ok((cluster.metrics().sentByNode.s2 ?? 0) > 0, "s2 takes traffic before the freeze");

    process.kill(frozen.child.pid!, "SIGSTOP");
    const frozenAt = Date.now();
    await seen(events.length, (e) => e.member.id === "s2" && e.member.status !== "alive");
    const suspectedAt = Date.now();
    const suspicionIndex = events.length;
    const sentBefore = cluster.metrics().sentByNode.s2 ?? 0;
    // Stay frozen for longer than a call's deadline, so calls stuck there fail and show up below.
    await afterCalls(80);
    assert.equal(cluster.metrics().sentByNode.s2 ?? 0, sentBefore, "nothing is sent to a suspected node");
    const late = calls.filter((c) => c.at >= suspectedAt);
    assert.deepEqual([...new Set(late.map((c) => c.code))], ["OK"], "every call sent after the suspicion succeeded");
    const failed = calls.filter((c) => c.code !== "OK");
    assert.ok(failed.every((c) => c.code === "DEADLINE_EXCEEDED" && c.at > frozenAt - CALL_TIMEOUT_MS && c.at < suspectedAt), JSON.stringify(failed));

    process.kill(frozen.child.pid!, "SIGCONT");
    await seen(suspicionIndex, (e) => e.member.id === "s2" && e.member.status === "alive");
    await afterCalls(100);
    assert.ok((cluster.metrics().sentByNode.s2 ?? 0) > sentBefore, "s2 takes traffic again once it refuted");
    console.log(`SIGSTOP: s2 suspected after ${suspectedAt - frozenAt} ms; ${failed.length} of ${calls.length} calls failed, all sent to s2 before that (DEADLINE_EXCEEDED)`);
  } finally {
    if (load !== undefined) clearInterval(load);
    cluster?.close();
    await viewer?.shutdown();
    for (const proc of procs) {
      if (proc.child.exitCode === null && proc.child.signalCode === null) process.kill(proc.child.pid!, "SIGCONT");
      await stopProcess(proc);
    }
  }
});

test("a client without the contract (as `ebb call` and `ebb bench` are) learns from $info which methods are idempotent: calls in flight on a node killed with -9 are retried on another, on Bun, Deno and the binary", async () => {
  const procs: NodeProcess[] = [];
  const cluster = { close() {} } as { close(): void };
  try {
    const first = await startNodeProcess("bun", { ...FAST, EBB_NODE_ID: "g0" });
    procs.push(first);
    const seeds = [`127.0.0.1:${first.port}`];
    procs.push(await startNodeProcess("deno", { ...FAST, EBB_NODE_ID: "g1", EBB_SEEDS: seeds[0]! }));
    procs.push(await startNodeProcess("binary", { ...FAST, EBB_NODE_ID: "g2", EBB_SEEDS: seeds[0]! }));
    const client = createClusterClient({ seeds, runtime, warmupMs: 0, timeoutMs: 20_000, refreshMs: 200 });
    cluster.close = () => client.close();
    await client.whenAvailable("demo", 3);
    // No client(demo) anywhere: `demo.sleep` is only a name here. 60 calls of 1.5 s, then g1 is killed.
    const calls = Array.from({ length: 60 }, (_, i) => client.call("demo.sleep", { ms: 1_500 }).then(() => "OK", (error: unknown) => `${i}: ${error instanceof Error ? error.message : String(error)}`));
    const victim = procs[1]!;
    await until(() => (client.metrics().inflight.g1 ?? 0) > 0, "calls in flight on g1");
    const inflightOnVictim = client.metrics().inflight.g1!;
    sendSignal(victim, "SIGKILL");
    const results = await Promise.all(calls);
    assert.deepEqual(results.filter((r) => r !== "OK"), [], "every call answered");
    const retried = client.metrics().retries["connection lost (idempotent)"] ?? 0;
    assert.ok(retried >= inflightOnVictim, `${retried} retried after the kill, ${inflightOnVictim} were in flight on g1`);
    console.log(`generic client: ${inflightOnVictim} calls in flight on a node killed -9, ${retried} retried elsewhere, 60 of 60 answered`);
  } finally {
    cluster.close();
    for (const proc of procs) await stopProcess(proc);
  }
});

