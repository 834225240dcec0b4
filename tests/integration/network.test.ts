// Beyond loopback (issue 13): nodes in their own network namespaces on a
// bridge, under the cluster client's open-model load, through real faults:
// bursty loss, a partition and its heal, a rolling restart across 100 ms of
// delay, and a half-open link. Each scenario prints its figures on one line.
//
// Time: in `npm test` each runner takes half the scenarios, on mixed clusters (see SHARE
// below), about 45 s each; EBB_NET_FULL=1 runs all of them on Bun, Deno and mixed clusters.
//
// Nodes bind their namespace's address (off loopback), so they run with a
// random EBB_CLUSTER_KEY, which the client proves too: the secure default, not
// EBB_INSECURE. Membership timings are the defaults (probe 1 s, probe timeout
// 500 ms): what production runs, and the only ones 200 ms round trips allow.
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ClusterClient, createClusterClient } from "../../src/cluster/client.ts";
import { demo } from "../../src/demo/demo.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { runtime } from "../helpers/net.ts";
import { connectionsOf, createNetwork, type DelayProxy, NETNS_SKIP, type Network, randomClusterKey, socketsOf, startDelayProxy } from "../helpers/netns.ts";
import { HOST_RUNNER, loadFor, type NodeProcess, type RunnerName, sendSignal } from "../helpers/process.ts";

const RPC_PORT = 7400;
const RATE_PER_SECOND = 150;
const CALL_TIMEOUT_MS = 5_000;
/**
 * EBB_KEEPALIVE_MS of the nodes and the client's keepaliveMs in the half-open test: a tenth of the
 * default, so the link is found within the test. The other scenarios keep the default (10 s), as
 * production does: a 1 s keep-alive gives up on a lossy link whose retransmissions back off past it.
 */
const KEEPALIVE_MS = 1_000;
/**
 * How long a half-open connection may be held: the bound the README documents, 3 keep-alive
 * intervals on the side that pings, 4 on the side that hears nothing more (KEEPALIVE_GRACE),
 * plus the server's 1 s timeout sweep, one late check forgiven, and slack for a loaded machine.
 */
const HALF_OPEN_BOUND_MS = Number(process.env.EBB_NET_HALF_OPEN_BOUND_MS ?? 4 * KEEPALIVE_MS + 4_000);
/** The client's per-attempt timeout for idempotent calls: above the 500 ms calls and a 200 ms round trip, well inside the 5 s deadline. */
const ATTEMPT_TIMEOUT_MS = 1_500;

if (NETNS_SKIP) console.log(`network namespace tests skipped: ${NETNS_SKIP}`);

/** A member event a node logged: who saw what about whom, and when. */
interface Sighting {
  observer: string;
  member: string;
  event: string;
  status: string;
  at: number;
}

/** A call that failed, with the code the caller saw. */
interface Failure {
  requestId: string;
  at: number;
  code: string;
  message: string;
}

interface Member {
  id: string;
  runner: RunnerName;
  /** What peers and the client dial: the node's own address, or its proxy's. */
  address: string;
  /** Its current process. */
  readonly proc: NodeProcess;
  /** Every process this member has had (restarts), for its log lines. */
  procs: NodeProcess[];
  proxy?: DelayProxy;
}

interface Cluster {
  net: Network;
  members: Member[];
  client: ClusterClient;
  /** Starts member `i` (again) with the others as seeds, and waits until it is ready. */
  start(i: number): Promise<NodeProcess>;
  /** Every suspect, dead, join and update line of every process so far, in time order. */
  sightings(): Sighting[];
  close(): Promise<void>;
}

const IDS = ["a", "b", "c", "d", "e"];

/** Starts a cluster of `runners` in a fresh network; with `delayMs`, every member is reached through a delay proxy. */
async function startCluster(runners: RunnerName[], options: { delayMs?: number; idempotentRetries?: boolean; keepaliveMs?: number } = {}): Promise<Cluster> {
  const net = await createNetwork(runners.length);
  const key = randomClusterKey();
  const members: Member[] = [];
  let client: ClusterClient | undefined;
  const close = async () => {
    client?.close();
    for (const member of members) await member.proxy?.close();
    await net.close();
  };
  try {
    for (const [i, runner] of runners.entries()) {
      const host = net.hosts[i]!;
      const proxy = options.delayMs === undefined ? undefined : await startDelayProxy({ listenHost: net.gateway, target: { host: host.address, port: RPC_PORT }, delayMs: options.delayMs });
      members.push({
        id: IDS[i]!,
        runner,
        address: proxy?.address ?? `${host.address}:${RPC_PORT}`,
        procs: [],
        get proc() {
          return this.procs.at(-1)!;
        },
        proxy,
      });
    }
    // The first member is the seed; the rest join it together.
    await startMember(net, members, 0, key, options.keepaliveMs);
    await Promise.all(members.slice(1).map((_, i) => startMember(net, members, i + 1, key, options.keepaliveMs)));
    // Everyone sees everyone ready before the load starts.
    for (const member of members) {
      for (const other of members) {
        if (other !== member) await member.proc.waitForLine((l) => l.member === other.id && l.status === "alive" && l.memberState === "ready");
      }
    }
    client = createClusterClient({
      seeds: members.map((m) => m.address),
      runtime,
      clusterKey: key,
      warmupMs: 2_000,
      refreshMs: 200,
      idempotentRetries: options.idempotentRetries ?? true,
      attemptTimeoutMs: ATTEMPT_TIMEOUT_MS,
      keepaliveMs: options.keepaliveMs,
    });
    await client.whenAvailable("demo", members.length, 20_000);
  } catch (error) {
    await close();
    throw error;
  }
  return {
    net,
    members,
    client,
    start: (i) => startMember(net, members, i, key, options.keepaliveMs),
    sightings() {
      const all: Sighting[] = [];
      for (const member of members) {
        for (const proc of member.procs) {
          for (const l of proc.lines) {
            if (typeof l.member !== "string" || typeof l.event !== "string") continue;
            all.push({ observer: member.id, member: l.member, event: l.event, status: String(l.status), at: Date.parse(String(l.time)) });
          }
        }
      }
      return all.sort((x, y) => x.at - y.at);
    },
    close,
  };
}

/** Starts member `i` (again), seeded with the members started before it, and waits until it is ready. */
async function startMember(net: Network, members: Member[], i: number, key: string, keepaliveMs: number | undefined): Promise<NodeProcess> {
  const member = members[i]!;
  const seeds = members.filter((m) => m !== member && m.procs.length > 0).map((m) => m.address);
  const proc = await net.startNode(i, member.runner, {
    EBB_NODE_ID: member.id,
    EBB_RPC_PORT: String(RPC_PORT),
    EBB_HTTP_PORT: "0",
    EBB_CLUSTER_KEY: key,
    EBB_DEMO_RECORD: "1",
    ...(keepaliveMs === undefined ? {} : { EBB_KEEPALIVE_MS: String(keepaliveMs) }),
    EBB_ADVERTISE: member.address,
    ...(seeds.length > 0 ? { EBB_SEEDS: seeds.join(",") } : {}),
  });
  member.procs.push(proc);
  await proc.waitForLine((l) => l.state === "ready");
  return proc;
}

/** Open-model load: calls go out on schedule whatever the replies do, so a stall cannot hide a failure. */
interface Load {
  sent(): number;
  failures: Failure[];
  latenciesMs: number[];
  /** Stops sending and resolves once every call has settled. */
  stop(): Promise<void>;
}

function startLoad(client: ClusterClient, tag: string): Load {
  const api = client.client(demo);
  const failures: Failure[] = [];
  const latenciesMs: number[] = [];
  let sent = 0;
  let settled = 0;
  let stopped = false;
  let allSettled: (() => void) | undefined;
  const timer = setInterval(() => {
    for (let k = 0; k < RATE_PER_SECOND / 50; k++) {
      const roll = (sent * 7919) % 100;
      const ms = roll < 70 ? 1 : roll < 95 ? 50 : 500;
      const requestId = `${tag}-${sent++}`;
      const started = performance.now();
      api.sleep({ ms }, { requestId, timeoutMs: CALL_TIMEOUT_MS }).then(
        () => latenciesMs.push(performance.now() - started),
        (error: unknown) =>
          failures.push({
            requestId,
            at: Date.now(),
            code: error instanceof RpcError ? error.code : "THROWN",
            message: error instanceof Error ? error.message : String(error),
          }),
      ).finally(() => {
        settled++;
        if (stopped && settled === sent) allSettled?.();
      });
    }
  }, 20);
  return {
    sent: () => sent,
    failures,
    latenciesMs,
    async stop() {
      clearInterval(timer);
      stopped = true;
      if (settled < sent) await new Promise<void>((resolve) => (allSettled = resolve));
    },
  };
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}

/** `{"DEADLINE_EXCEEDED":12}`: failures by code. */
function byCode(failures: Failure[]): string {
  const counts: Record<string, number> = {};
  for (const f of failures) counts[f.code] = (counts[f.code] ?? 0) + 1;
  return JSON.stringify(counts);
}

/** The evidence behind a failed target: member events and failed calls, with times from `t0`. */
function evidence(sightings: Sighting[], failures: Failure[], t0: number): string {
  const rel = (at: number) => `${at - t0 >= 0 ? "+" : ""}${((at - t0) / 1000).toFixed(2)}s`;
  const events = sightings.filter((s) => s.at >= t0 - 1_000 && (s.event === "suspect" || s.event === "dead" || s.event === "join" || (s.event === "update" && s.status === "alive")));
  const shown = events.slice(0, 60).map((s) => `${s.observer}: ${s.member} ${s.event}(${s.status}) ${rel(s.at)}`);
  const firstFailures = failures.slice(0, 5).map((f) => `${f.requestId} ${rel(f.at)} ${f.message}`);
  return `membership events from ${rel(t0)}: [${shown.join("; ")}${events.length > 60 ? `; … ${events.length - 60} more` : ""}]; failures ${byCode(failures)}${failures.length ? ` first at ${rel(failures[0]!.at)}, last at ${rel(failures.at(-1)!.at)}: ${firstFailures.join(" | ")}` : ""}`;
}

/** `b suspected c +1.20s, a declared c dead +5.31s`: the suspect and dead verdicts from `t0` on, for the figure lines. */
function verdicts(sightings: Sighting[], t0: number): string {
  const shown = sightings
    .filter((s) => s.at >= t0 && (s.event === "suspect" || s.event === "dead"))
    .map((s) => `${s.observer} ${s.event === "dead" ? "declared" : "suspected"} ${s.member}${s.event === "dead" ? " dead" : ""} +${((s.at - t0) / 1000).toFixed(2)}s`);
  return shown.length === 0 ? "none" : shown.length > 12 ? `${shown.slice(0, 12).join(", ")}, … ${shown.length - 12} more` : shown.join(", ");
}

/** Stops every member with SIGTERM and returns the request ids they executed (to count calls that ran twice). */
async function stopAll(cluster: Cluster): Promise<string[]> {
  cluster.client.close();
  const executed: string[] = [];
  for (const member of cluster.members) {
    const proc = member.proc;
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) continue;
    sendSignal(proc, "SIGTERM");
    await proc.exited;
    const line = proc.lines.find((l) => l.msg === "demo executed");
    if (line) executed.push(...(line.ids as string[]));
  }
  return executed;
}

/** Earlier executions collected from processes that already stopped (restarts). */
function executedBy(procs: NodeProcess[]): string[] {
  return procs.flatMap((proc) => (proc.lines.find((l) => l.msg === "demo executed")?.ids as string[] | undefined) ?? []);
}

function ranTwice(executed: string[]): number {
  const seen = new Set<string>();
  return executed.filter((id) => (seen.has(id) ? true : (seen.add(id), false))).length;
}

const label = (runners: RunnerName[]) => runners.join(", ");

/** 20% bursty loss on the last of 3 members for 30 s: no healthy member declared dead, no idempotent call failed. */
async function burstyLoss(runners: RunnerName[]): Promise<void> {
  const cluster = await startCluster(runners);
  try {
    const lossy = cluster.members.at(-1)!;
    const healthy = cluster.members.slice(0, -1).map((m) => m.id);
    const load = startLoad(cluster.client, `loss-${runners.join("-")}`);
    await loadFor(1_000); // steady state first
    const t0 = Date.now();
    await cluster.net.flap(cluster.members.length - 1, { downMs: 100, periodMs: 500, durationMs: 30_000 }).done;
    const lossEnded = Date.now();
    await loadFor(1_000); // a tail after the loss
    await load.stop();
    const metrics = cluster.client.metrics();
    const executed = await stopAll(cluster);

    const during = cluster.sightings().filter((s) => s.at >= t0);
    const falseDeaths = during.filter((s) => s.event === "dead" && healthy.includes(s.member));
    // Every view counts, the lossy member's own too: it must blame its link before it blames the others.
    const byHealthy = falseDeaths.filter((s) => s.observer !== lossy.id);
    const healthySuspected = during.filter((s) => s.event === "suspect" && healthy.includes(s.member));
    const lossyDead = during.filter((s) => s.event === "dead" && s.member === lossy.id);
    const lossySuspected = during.filter((s) => s.event === "suspect" && s.member === lossy.id);
    console.log(
      `bursty loss 20% on ${lossy.id} (${lossy.runner}) for ${((lossEnded - t0) / 1000).toFixed(1)} s [${label(runners)}] from ${runtime.name}: ` +
        `${load.sent()} calls, ${load.failures.length} failed ${byCode(load.failures)}, ${ranTwice(executed)} ran twice, ` +
        `false deaths of healthy members ${falseDeaths.length} (${byHealthy.length} by healthy members), healthy suspected ${healthySuspected.length}, ` +
        `${lossy.id} suspected ${lossySuspected.length} and declared dead ${lossyDead.length} times, ` +
        `retries ${JSON.stringify(metrics.retries)}, p99 ${quantile(load.latenciesMs, 0.99).toFixed(1)} ms; verdicts: ${verdicts(during, t0)}`,
    );
    const why = evidence(cluster.sightings(), load.failures, t0);
    assert.equal(falseDeaths.length, 0, `healthy members declared dead under loss on ${lossy.id}; ${why}`);
    assert.equal(load.failures.length, 0, `${load.failures.length} of ${load.sent()} idempotent calls failed; ${why}`);
  } finally {
    await cluster.close();
  }
}

/** Status of every member in every observer's view, from the member lines logged so far. */
function views(sightings: Sighting[]): Map<string, Map<string, string>> {
  const all = new Map<string, Map<string, string>>();
  for (const s of sightings) {
    if (!all.has(s.observer)) all.set(s.observer, new Map());
    all.get(s.observer)!.set(s.member, s.status);
  }
  return all;
}

/** `a→c ESTABLISHED 1200 B unacked, 7 retransmits, next in 6.4 s`: every connection between member `cutIndex` and the others. */
function tcpAcross(cluster: Cluster, cutIndex: number): string {
  const gone = cluster.members.filter((m) => m.proc.child.exitCode !== null || m.proc.child.signalCode !== null);
  if (gone.length > 0) return `${gone.map((m) => m.id).join(", ")} exited`;
  const address = (i: number) => cluster.net.hosts[i]!.address;
  const describe = (from: Member, to: number) =>
    connectionsOf(from.proc.child.pid!, address(to)).map((c) =>
      `${from.id}→${cluster.members[to]!.id} ${c.state} ${c.unackedBytes} B unacked, ${c.retransmits} retransmits${c.timer === undefined ? "" : `, ${c.timer} in ${(c.timerInMs! / 1000).toFixed(1)} s`}`
    );
  const cut = cluster.members[cutIndex]!;
  const lines = cluster.members.flatMap((m, i) => (i === cutIndex ? [] : [...describe(m, cutIndex), ...describe(cut, i)]));
  return lines.length === 0 ? "none" : lines.join(", ");
}

/** A 20 s partition of the last member, then heal: no healthy member declared dead, the healed one back everywhere within 10 s and not declared dead again. */
async function partitionAndHeal(runners: RunnerName[]): Promise<void> {
  const cluster = await startCluster(runners);
  try {
    const cutIndex = cluster.members.length - 1;
    const cut = cluster.members[cutIndex]!;
    const healthy = cluster.members.slice(0, -1).map((m) => m.id);
    const load = startLoad(cluster.client, `partition-${runners.join("-")}`);
    await loadFor(1_000);
    const t0 = Date.now();
    await cluster.net.linkDown(cutIndex);
    await loadFor(20_000); // the partition's length is the point
    // What the connections across the cut look like at the heal: stuck ones wait for a retransmission timer.
    const stuck = tcpAcross(cluster, cutIndex);
    await cluster.net.linkUp(cutIndex);
    const healedAt = Date.now();

    // Back in every view: each healthy member sees the healed one alive, and it sees each of them alive.
    const backEverywhere = () => {
      const v = views(cluster.sightings());
      return healthy.every((id) => v.get(id)?.get(cut.id) === "alive") && healthy.every((id) => v.get(cut.id)?.get(id) === "alive");
    };
    let backAt: number | undefined;
    if (backEverywhere()) backAt = Date.now();
    else {
      // Wait for the member line that completes it, from any process, up to 10 s.
      const offs: (() => void)[] = [];
      await new Promise<void>((resolve) => {
        const limit = setTimeout(resolve, 10_000);
        for (const member of cluster.members) {
          offs.push(member.proc.onLine((l) => {
            if (backAt === undefined && typeof l.member === "string" && backEverywhere()) {
              backAt = Date.now();
              clearTimeout(limit);
              resolve();
            }
          }));
        }
      });
      for (const off of offs) off();
    }
    // Every view as it stood when the wait ended, for the failure message (stopping the nodes below makes each say "left").
    const viewsAtWait = JSON.stringify([...views(cluster.sightings())].map(([o, m]) => [o, Object.fromEntries(m)]));
    // Then watch for a second death: the issue saw one 6.7 s after the heal.
    await loadFor(Math.max(0, healedAt + 10_000 - Date.now()));
    await load.stop();
    const metrics = cluster.client.metrics();
    const executed = await stopAll(cluster);

    const sightings = cluster.sightings();
    // The cut member's own verdicts during the partition are right from where it stood; the healthy side's are not.
    const falseDeaths = sightings.filter((s) => s.at >= t0 && s.event === "dead" && healthy.includes(s.member) && (healthy.includes(s.observer) || s.at >= healedAt));
    const cutDeclaredDead = sightings.filter((s) => s.at >= t0 && s.at < healedAt && s.event === "dead" && s.member === cut.id);
    // A dead event is a change: one after the heal means the member came back and was lost again.
    const deadAgain = sightings.filter((s) => s.at > healedAt && s.event === "dead");
    const failuresDuring = load.failures.filter((f) => f.at >= t0 && f.at <= healedAt + 1_000).length;
    const backMs = backAt === undefined ? undefined : backAt - healedAt;
    console.log(
      `partition of ${cut.id} (${cut.runner}) for ${((healedAt - t0) / 1000).toFixed(1)} s then heal [${label(runners)}] from ${runtime.name}: ` +
        `${load.sent()} calls, ${load.failures.length} failed ${byCode(load.failures)} (${failuresDuring} during the partition), ${ranTwice(executed)} ran twice, ` +
        `${cut.id} declared dead by ${cutDeclaredDead.map((s) => `${s.observer} at +${((s.at - t0) / 1000).toFixed(1)} s`).join(", ") || "nobody"}, ` +
        `healthy members declared dead ${falseDeaths.length}, back in every view ${backMs === undefined ? "NOT within 10 s" : `${backMs} ms after the heal`}, ` +
        `deaths after that ${deadAgain.length}, retries ${JSON.stringify(metrics.retries)}; TCP across the cut at the heal: ${stuck}; verdicts: ${verdicts(sightings, t0)}`,
    );
    const why = evidence(sightings, load.failures, t0);
    assert.equal(falseDeaths.length, 0, `healthy members declared dead: ${falseDeaths.map((s) => `${s.observer} declared ${s.member} dead at +${((s.at - healedAt) / 1000).toFixed(2)} s after the heal`).join("; ")}; ${why}`);
    assert.ok(backMs !== undefined, `${cut.id} not back in every view 10 s after the heal: ${viewsAtWait}; ${why}`);
    assert.equal(deadAgain.length, 0, `declared dead again after the heal: ${deadAgain.map((s) => `${s.observer}: ${s.member} at +${((s.at - healedAt) / 1000).toFixed(2)} s`).join("; ")}; ${why}`);
    assert.equal(load.failures.length, 0, `${load.failures.length} of ${load.sent()} idempotent calls failed; ${why}`);
  } finally {
    await cluster.close();
  }
}

/** Every member restarted in turn while every byte between hosts (client included) takes 100 ms more each way: 0 failed calls, each ran once. */
async function rollingRestartWithDelay(runners: RunnerName[]): Promise<void> {
  // No idempotent retries: as in the loopback rolling restart, every call must run exactly once.
  const cluster = await startCluster(runners, { delayMs: 100, idempotentRetries: false });
  try {
    const load = startLoad(cluster.client, `delay-${runners.join("-")}`);
    await loadFor(1_000);
    const t0 = Date.now();
    const executed: string[] = [];
    for (let i = 0; i < cluster.members.length; i++) {
      const member = cluster.members[i]!;
      sendSignal(member.proc, "SIGTERM");
      const code = await member.proc.exited;
      assert.equal(code, 0, `${member.id} (${member.runner}) exited ${code}; stderr: ${member.proc.stderr()}`);
      await cluster.start(i);
    }
    const restartsMs = Date.now() - t0;
    await loadFor(1_000);
    await load.stop();
    const metrics = cluster.client.metrics();
    const stoppedBefore = cluster.members.flatMap((m) => m.procs.slice(0, -1));
    executed.push(...executedBy(stoppedBefore), ...(await stopAll(cluster)));
    const sightings = cluster.sightings().filter((s) => s.at >= t0);
    const deaths = sightings.filter((s) => s.event === "dead");
    const suspicions = sightings.filter((s) => s.event === "suspect");
    const twice = ranTwice(executed);
    const ranOnce = new Set(executed).size;
    console.log(
      `rolling restart with 100 ms delay each way [${label(runners)}] from ${runtime.name}: ${load.sent()} calls, ${load.failures.length} failed ${byCode(load.failures)}, ` +
        `${cluster.members.length} restarts in ${(restartsMs / 1000).toFixed(1)} s, ${twice} ran twice, ${load.sent() - ranOnce - load.failures.length} never ran, ` +
        `deaths ${deaths.length}, suspicions ${suspicions.length}, retries ${JSON.stringify(metrics.retries)}, p50 ${quantile(load.latenciesMs, 0.5).toFixed(1)} ms, p99 ${quantile(load.latenciesMs, 0.99).toFixed(1)} ms; verdicts: ${verdicts(sightings, t0)}`,
    );
    const why = evidence(cluster.sightings(), load.failures, t0);
    assert.equal(load.failures.length, 0, `${load.failures.length} of ${load.sent()} calls failed; ${why}`);
    assert.equal(twice, 0, "a request ran more than once");
    assert.equal(ranOnce, load.sent(), "every call ran exactly once");
  } finally {
    await cluster.close();
  }
}

/** The last member's link cut for good (no FIN, no RST): both sides let go of their connections within the bound. */
async function halfOpen(runners: RunnerName[]): Promise<void> {
  const cluster = await startCluster(runners, { keepaliveMs: KEEPALIVE_MS });
  try {
    const cutIndex = cluster.members.length - 1;
    const cut = cluster.members[cutIndex]!;
    const survivors = cluster.members.slice(0, -1);
    const load = startLoad(cluster.client, `halfopen-${runners.join("-")}`);
    await loadFor(1_000);
    // Each side's view: a survivor's connections with the cut member, and the cut member's with each survivor.
    const sides = [
      ...survivors.map((m) => ({ name: `${m.id}→${cut.id}`, pid: m.proc.child.pid!, peer: cluster.net.hosts[cutIndex]!.address })),
      ...survivors.map((m, i) => ({ name: `${cut.id}→${m.id}`, pid: cut.proc.child.pid!, peer: cluster.net.hosts[i]!.address })),
    ];
    const before = sides.map((s) => ({ ...s, count: socketsOf(s.pid, s.peer) }));
    const t0 = Date.now();
    await cluster.net.linkDown(cutIndex);
    const releasedMs = new Map<string, number>();
    const peak = new Map<string, number>();
    // No event says a descriptor was closed: read /proc every 100 ms until the bound.
    while (releasedMs.size < sides.length && Date.now() - t0 < HALF_OPEN_BOUND_MS) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      for (const side of sides) {
        const count = socketsOf(side.pid, side.peer);
        peak.set(side.name, Math.max(peak.get(side.name) ?? 0, count.toRemote));
        if (count.establishedToRemote === 0 && !releasedMs.has(side.name)) releasedMs.set(side.name, Date.now() - t0);
        if (count.establishedToRemote > 0) releasedMs.delete(side.name);
      }
    }
    const after = sides.map((s) => ({ ...s, count: socketsOf(s.pid, s.peer) }));
    const tcpAfter = tcpAcross(cluster, cutIndex);
    await load.stop();
    const metrics = cluster.client.metrics();
    console.log(
      `half-open link to ${cut.id} (${cut.runner}) [${label(runners)}] from ${runtime.name}: ` +
        sides.map((s, i) => `${s.name} ${before[i]!.count.establishedToRemote} established before, ${releasedMs.has(s.name) ? `released in ${releasedMs.get(s.name)} ms` : `${after[i]!.count.establishedToRemote} still established after ${HALF_OPEN_BOUND_MS} ms`} (sockets to the peer: peak ${peak.get(s.name) ?? 0}, now ${after[i]!.count.toRemote}; all sockets ${before[i]!.count.sockets} -> ${after[i]!.count.sockets})`).join("; ") +
        `; calls ${load.sent()}, ${load.failures.length} failed ${byCode(load.failures)}, retries ${JSON.stringify(metrics.retries)}; TCP across the cut at the end: ${tcpAfter}; verdicts: ${verdicts(cluster.sightings(), t0)}`,
    );
    const held = after.filter((s) => !releasedMs.has(s.name)).map((s) => `${s.name}: ${s.count.establishedToRemote} established`);
    assert.deepEqual(held, [], `half-open connections held past ${HALF_OPEN_BOUND_MS} ms; ${evidence(cluster.sightings(), load.failures, t0)}`);
    // Reconnection attempts to the vanished member are bounded too: a few sockets at most, never a pile.
    const piled = after.filter((s) => s.count.toRemote > 3).map((s) => `${s.name}: ${s.count.toRemote}`);
    assert.deepEqual(piled, [], "sockets to the vanished peer pile up");
  } finally {
    await cluster.close();
  }
}

const skip = NETNS_SKIP;
/**
 * In `npm test` each runner takes half the scenarios (about 45 s each), every cluster mixed (Bun,
 * Deno and the binary, the faulted member last): loss and half-open under `bun test`, partition
 * and the delayed rolling restart under `deno test`. EBB_NET_FULL=1 runs every scenario on Bun,
 * Deno and mixed clusters under either runner (about 5 minutes).
 */
const SHARE: Record<string, RunnerName[]> =
  HOST_RUNNER === "bun"
    ? { loss: ["bun", "binary", "deno"], halfOpen: ["deno", "binary", "bun"] }
    : { partition: ["bun", "deno", "binary"], restart: ["binary", "bun", "deno"] };
const FULL = process.env.EBB_NET_FULL === "1";
const ALL: RunnerName[][] = [["bun", "bun", "bun"], ["deno", "deno", "deno"], ["bun", "deno", "binary"]];
const clustersFor = (scenario: string): RunnerName[][] => (FULL ? ALL : SHARE[scenario] ? [SHARE[scenario]] : []);

for (const runners of clustersFor("loss")) {
  test(`20% bursty loss on one of 3 members for 30 s [${label(runners)}]: no healthy member declared dead, no idempotent call failed`, { skip }, () => burstyLoss(runners));
}
for (const runners of clustersFor("partition")) {
  test(`a 20 s partition of one member, then heal [${label(runners)}]: no healthy member declared dead, the healed one back everywhere within 10 s and not declared dead again, no idempotent call failed`, { skip }, () => partitionAndHeal(runners));
}
for (const runners of clustersFor("restart")) {
  test(`rolling restart with 100 ms delay between hosts [${label(runners)}]: zero failed calls, each ran once`, { skip }, () => rollingRestartWithDelay(runners));
}
for (const runners of clustersFor("halfOpen")) {
  test(`half-open link [${label(runners)}]: both sides release the connections within ${HALF_OPEN_BOUND_MS} ms`, { skip }, () => halfOpen(runners));
}
