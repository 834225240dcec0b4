/**
 * `npm run bench:gossip`: the real membership state machine, N members in one
 * process in virtual time (tests/sim). Prints dissemination and detection times,
 * false deaths under loss and stalls, partition healing, steady-state bytes and
 * the simulator's own speed, and writes scripts/bench/results/gossip.json.
 *
 * Options (environment): GOSSIP_N (1000), GOSSIP_TRIALS (5), GOSSIP_LOSS_N (200),
 * GOSSIP_LOSS_MINUTES (60), GOSSIP_SEED (1), GOSSIP_STALL_EVERY_S (15: how often a staller freezes).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import type { MemberEvent, SwimConfig } from "../../src/membership/types.ts";
import { bootCluster, converged, LAN, type NetworkOptions, SimCluster } from "../../tests/sim/sim.ts";
import { quantile, table } from "./stats.ts";

const env = process.env;
const N = Number(env.GOSSIP_N ?? 1000);
const TRIALS = Number(env.GOSSIP_TRIALS ?? 5);
const LOSS_N = Number(env.GOSSIP_LOSS_N ?? 200);
const LOSS_MINUTES = Number(env.GOSSIP_LOSS_MINUTES ?? 60);
const SEED = Number(env.GOSSIP_SEED ?? 1);
const STALL_EVERY_S = Number(env.GOSSIP_STALL_EVERY_S ?? 15);
const here = decodeURIComponent(new URL(".", import.meta.url).pathname);
const results: Record<string, unknown> = { n: N, seed: SEED, date: new Date().toISOString() };
const rows: (string | number)[][] = [];

function duration(ms: number): string {
  return ms < 1_000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function log(text: string): void {
  console.log(text);
}

function settle(cluster: SimCluster, limitMs = 300_000): number {
  const start = cluster.now;
  while (!converged(cluster) && cluster.now - start < limitMs) cluster.run(100);
  return cluster.now - start;
}

/**
 * Time until 50%, 99% and 100% of the other running members saw `matches` about `id`,
 * measured from now; runs the cluster in small steps until all have.
 */
function dissemination(cluster: SimCluster, id: string, matches: (event: MemberEvent) => boolean, trigger: () => void, limitMs = 120_000): number[] {
  const seenAt = new Map<string, number>();
  const start = cluster.now;
  // Observers: running members other than the subject (members that left earlier have stopped).
  const observers = [...cluster.members.values()].filter((m) => !m.down && m.id !== id && m.membership.get(m.id)?.status !== "left").map((m) => m.id);
  cluster.onEvent((observer, event) => {
    if (event.member.id === id && matches(event) && !seenAt.has(observer)) seenAt.set(observer, cluster.now - start);
  });
  trigger();
  while (observers.some((o) => !seenAt.has(o) && !cluster.member(o).down) && cluster.now - start < limitMs) cluster.run(5);
  const times = observers.map((o) => seenAt.get(o) ?? Infinity).sort((a, b) => a - b);
  return [quantile(times, 0.5), quantile(times, 0.99), times[times.length - 1]!];
}

function summarize(name: string, trials: number[][], target: string): void {
  const p50 = Math.max(...trials.map((t) => t[0]!));
  const p99 = Math.max(...trials.map((t) => t[1]!));
  const all = Math.max(...trials.map((t) => t[2]!));
  results[name] = { p50Ms: p50, p99Ms: p99, allMs: all, trials };
  rows.push([name, duration(p50), duration(p99), duration(all), target]);
  log(`${name}: p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, all ${all.toFixed(0)} ms (worst of ${trials.length} trials)`);
}

// ---- 1. A cluster of N: boot, steady state, dissemination, detection --------------------------

const wallStart = performance.now();
const main = new SimCluster({ seed: SEED, network: LAN });
const ids = bootCluster(main, N, 1);
const bootMs = settle(main);
log(`booted ${N} members through one seed; one view after ${(main.now / 1000).toFixed(1)} s of virtual time`);
// Let the join storm's gossip die down before measuring steady state.
main.run(240_000);

main.countBytes = true;
for (const m of main.members.values()) m.bytesSent = 0;
const steadyMs = 60_000;
main.run(steadyMs);
main.countBytes = false;
const up = [...main.members.values()].filter((m) => !m.down);
const bytesPerSecond = up.map((m) => m.bytesSent / (steadyMs / 1000)).sort((a, b) => a - b);
results.steadyBytesPerMemberPerSecond = { mean: bytesPerSecond.reduce((a, b) => a + b, 0) / up.length, p99: quantile(bytesPerSecond, 0.99) };
log(`steady state: ${(results.steadyBytesPerMemberPerSecond as { mean: number }).mean.toFixed(0)} B/s per member (mean)`);

const joins: number[][] = [];
for (let t = 0; t < TRIALS; t++) {
  const id = `joiner${t}`;
  joins.push(dissemination(main, id, (e) => e.type === "join", () => main.add(id, [ids[(t * 7) % N]!])));
  main.run(5_000);
}
summarize("join known by all", joins, "p99 ≤ 3 s");

const drains: number[][] = [];
for (let t = 0; t < TRIALS; t++) {
  const id = ids[10 + t]!;
  drains.push(
    dissemination(main, id, (e) => e.type === "update" && e.member.meta.state === "draining", () =>
      main.member(id).membership.updateMeta({ state: "draining", services: ["demo"], version: "0.1.0", http: 7401 }),
    ),
  );
}
summarize("drain (metadata) known by all", drains, "p99 ≤ 3 s");

const leaves: number[][] = [];
for (let t = 0; t < TRIALS; t++) {
  const id = ids[10 + t]!;
  leaves.push(dissemination(main, id, (e) => e.type === "left", () => main.member(id).membership.leave()));
}
summarize("leave known by all", leaves, "p99 ≤ 3 s");

const crashes: number[][] = [];
for (let t = 0; t < TRIALS; t++) {
  const id = ids[100 + t * 13]!;
  crashes.push(dissemination(main, id, (e) => e.type === "dead", () => main.crash(id)));
  main.run(2_000);
}
summarize("crash to dead at every member", crashes, "p99 ≤ 20 s");
const mainVirtualMs = main.now;
const mainWallMs = performance.now() - wallStart;
results.simulation = { virtualMs: mainVirtualMs, wallMs: mainWallMs, events: main.scheduler.processed };
log(`simulation: ${(mainVirtualMs / 60_000).toFixed(1)} virtual minutes at N=${N} in ${(mainWallMs / 1000).toFixed(1)} s (${main.scheduler.processed} events)`);

// ---- 2. False deaths under loss -------------------------------------------------------------

/** Distinct (member, incarnation) dead verdicts about members that never crashed. */
function countFalseDeaths(cluster: SimCluster): () => number {
  const verdicts = new Set<string>();
  cluster.onEvent((_observer, event) => {
    if (event.type === "dead" && !cluster.member(event.member.id)?.down) verdicts.add(`${event.member.id}@${event.member.incarnation}`);
  });
  return () => verdicts.size;
}

function lossRun(loss: number, config?: Partial<SwimConfig>, stalls = false): number {
  const network: NetworkOptions = { ...LAN, loss };
  const cluster = new SimCluster({ seed: SEED + 100, network, config });
  const members = bootCluster(cluster, LOSS_N, 1);
  settle(cluster);
  cluster.run(60_000);
  const falseDeaths = countFalseDeaths(cluster);
  const minutes = stalls ? LOSS_MINUTES / 2 : LOSS_MINUTES;
  const stallers = stalls ? members.filter((_, i) => i % 10 === 3) : [];
  for (let s = 0; s < minutes * 60; s += 1) {
    for (const id of stallers) {
      // Each staller freezes for 2-5 s at random, about every STALL_EVERY_S seconds.
      if (cluster.random() < 1 / STALL_EVERY_S) cluster.stall(id, 2_000 + cluster.random() * 3_000);
    }
    cluster.run(1_000);
  }
  return falseDeaths() * (60 / minutes);
}

const lossRows: Record<string, number> = {};
for (const [loss, target] of [
  [0.05, "0"],
  [0.1, "0"],
  [0.2, "≤ 1"],
] as const) {
  const perHour = lossRun(loss);
  lossRows[`${loss * 100}%`] = perHour;
  rows.push([`false deaths / cluster-hour, ${loss * 100}% loss (N=${LOSS_N})`, perHour.toFixed(1), "", "", target]);
  log(`${loss * 100}% loss: ${perHour.toFixed(1)} false deaths per cluster-hour (N=${LOSS_N})`);
}
results.falseDeathsPerClusterHour = lossRows;

// ---- 3. Stalls: Lifeguard on vs off ----------------------------------------------------------

const withLifeguard = lossRun(0, { lifeguard: true }, true);
const withoutLifeguard = lossRun(0, { lifeguard: false }, true);
results.stalls = { lifeguardOn: withLifeguard, lifeguardOff: withoutLifeguard };
const factor = withLifeguard === 0 ? (withoutLifeguard === 0 ? 1 : Infinity) : withoutLifeguard / withLifeguard;
rows.push([`false deaths / cluster-hour, 10% stalling 2-5 s every ~${STALL_EVERY_S} s, Lifeguard off → on (N=${LOSS_N})`, `${withoutLifeguard.toFixed(1)} → ${withLifeguard.toFixed(1)}`, factor === Infinity ? "∞ ×" : `${factor.toFixed(1)} ×`, "", "≥ 20× fewer"]);
log(`stalls: ${withoutLifeguard.toFixed(1)} false deaths/hour without Lifeguard, ${withLifeguard.toFixed(1)} with (same seed)`);

// ---- 4. Partition ----------------------------------------------------------------------------

{
  const cluster = new SimCluster({ seed: SEED + 200, network: LAN });
  const members = bootCluster(cluster, LOSS_N, 1);
  settle(cluster);
  cluster.partition([members.slice(0, LOSS_N / 2), members.slice(LOSS_N / 2)]);
  // Longer than the suspicion timeout: each side declares the other dead.
  cluster.run(120_000);
  const dead = cluster.member(members[0]!).membership.list().filter((m) => m.status === "dead").length;
  cluster.heal();
  const healMs = settle(cluster, 600_000);
  results.partition = { n: LOSS_N, deadBeforeHeal: dead, oneViewAfterMs: healMs };
  rows.push([`50/50 partition of 120 s healed to one view (N=${LOSS_N})`, `${(healMs / 1000).toFixed(1)} s`, "", "", "≤ 60 s"]);
  log(`partition: ${dead} members dead on one side; one view ${(healMs / 1000).toFixed(1)} s after healing`);
}

rows.push([`steady bytes per member per second (N=${N})`, `${(results.steadyBytesPerMemberPerSecond as { mean: number }).mean.toFixed(0)} B/s`, "", "", "≤ 1 KB/s"]);
rows.push([`simulation speed (N=${N})`, `${(mainVirtualMs / 60_000).toFixed(1)} virtual min in ${(mainWallMs / 1000).toFixed(1)} s`, "", "", "10 min in ≤ 60 s"]);
void bootMs;

console.log(`\ngossip, N=${N}, LAN defaults (probe 1 s, timeout 500 ms, k=3, gossip 200 ms to 3, suspicion ×4), seed ${SEED}`);
console.log(table(["measure", "p50 / value", "p99", "all", "target"], rows));
mkdirSync(`${here}results`, { recursive: true });
writeFileSync(`${here}results/gossip.json`, JSON.stringify(results, null, 2) + "\n");
console.log(`wrote ${here}results/gossip.json`);
