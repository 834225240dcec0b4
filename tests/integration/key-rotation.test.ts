import { test } from "node:test";
import assert from "node:assert/strict";
import { type ClusterClient, createClusterClient } from "../../src/cluster/client.ts";
import { demo } from "../../src/demo/demo.ts";
import type { ServiceClient } from "../../src/rpc/client.ts";
import { runtime } from "../helpers/net.ts";
import { FAST_SWIM_ENV, loadFor, type NodeProcess, type RunnerName, sendSignal, type Slot, startNodeProcess, stopProcess } from "../helpers/process.ts";

const A = "q9Hn2V0d8mXbR4tLcW7yPz1sKfA6uJeG3oNvIhTgBkE=";
const B = "Zx8Wc3Vb6Nm1Lk4Jh7Gf0Ds2Ap5Oi9Uy_Tr-Ee3Qw";
const RATE_PER_SECOND = 100;

/** The documented procedure (README "Rotating the cluster key"): each step rolls through every node before the next begins. */
const STEPS: { name: string; ring: string[] }[] = [
  { name: "install B as a secondary key", ring: [A, B] },
  { name: "make B the primary", ring: [B, A] },
  { name: "remove A", ring: [B] },
];


async function startSlot(runner: RunnerName, id: string, ring: string[], seeds: string[]): Promise<NodeProcess> {
  const env = { ...FAST_SWIM_ENV, EBB_NODE_ID: id, EBB_DEMO_RECORD: "1", EBB_CLUSTER_KEY: ring.join(","), EBB_CLUSTER_ID: "rotation" };
  const proc = await startNodeProcess(runner, { ...env, ...(seeds.length ? { EBB_SEEDS: seeds.join(",") } : {}) });
  await proc.waitForLine((l) => l.state === "ready");
  return proc;
}

/** Stops a node with SIGTERM after reading its auth counters; returns them and the request ids it executed. */
async function stopSlot(slot: Slot): Promise<{ ids: string[]; metrics: string }> {
  const metrics = await (await fetch(`http://127.0.0.1:${slot.proc.httpPort}/metrics`)).text();
  sendSignal(slot.proc, "SIGTERM");
  const code = await slot.proc.exited;
  assert.equal(code, 0, `${slot.id} (${slot.runner}) exited ${code}; stderr: ${slot.proc.stderr()}`);
  const executed = await slot.proc.waitForLine((l) => l.msg === "demo executed");
  return { ids: executed.ids as string[], metrics };
}

test("a rolling key rotation (install B, make it primary, remove A) across a Bun, Deno and binary cluster under load fails no call and runs each once", async () => {
  const runners: RunnerName[] = ["bun", "deno", "binary"];
  const slots: Slot[] = [];
  const clients: ClusterClient[] = [];
  const executed: string[] = [];
  const failures: string[] = [];
  const authFailures: string[] = [];
  let sent = 0;
  let settled = 0;
  let allSettled: (() => void) | undefined;
  let load: ReturnType<typeof setInterval> | undefined;
  let early: Rotating | undefined;
  let late: Rotating | undefined;
  const seedsOf = (except?: Slot) => slots.filter((s) => s !== except).map((s) => `127.0.0.1:${s.proc.port}`);
  // Clients rotate like nodes: one takes each step's ring as the step begins, the other once every node has it.
  // A client replaced on both sides is closed once its calls are answered, as a rotated deployment's
  // old process would be; left open, its member refreshes would knock on nodes that dropped its key.
  interface Rotating { cluster: ClusterClient; api: ServiceClient<typeof demo>; inflight: number }
  const clientWith = (ring: string[]): Rotating => {
    const cluster = createClusterClient({ seeds: seedsOf(), runtime, warmupMs: 500, idempotentRetries: false, refreshMs: 200, clusterKey: { keys: ring, clusterId: "rotation" } });
    clients.push(cluster);
    return { cluster, api: cluster.client(demo), inflight: 0 };
  };
  const closeIfRetired = (client: Rotating) => {
    if (client !== early && client !== late && client.inflight === 0) client.cluster.close();
  };
  try {
    for (const [i, runner] of runners.entries()) slots.push({ runner, id: `k${i}-${process.pid}`, proc: await startSlot(runner, `k${i}-${process.pid}`, [A], seedsOf()) });
    early = clientWith([A]);
    late = early;
    await early.cluster.whenAvailable("demo", slots.length);

    // Open-model load: calls go out on schedule whatever the replies do, half through each client.
    load = setInterval(() => {
      for (let k = 0; k < RATE_PER_SECOND / 50; k++) {
        const requestId = `rot-${sent++}`;
        const client = sent % 2 === 0 ? early! : late!;
        client.inflight++;
        client.api.sleep({ ms: sent % 10 === 0 ? 50 : 1 }, { requestId, timeoutMs: 5_000 }).then(
          () => {},
          (error: unknown) => failures.push(`${requestId}: ${error instanceof Error ? error.message : String(error)}`),
        ).finally(() => {
          client.inflight--;
          closeIfRetired(client);
          settled++;
          if (load === undefined && settled === sent) allSettled?.();
        });
      }
    }, 20);
    await loadFor(1_000);

    for (const step of STEPS) {
      const previous = early!;
      early = clientWith(step.ring);
      closeIfRetired(previous);
      for (const slot of slots) {
        const stopped = await stopSlot(slot);
        executed.push(...stopped.ids);
        if (!/^ebb_auth_failures_total\{reason="unknown_key"\} 0$/m.test(stopped.metrics)) authFailures.push(`${slot.id} before "${step.name}"`);
        slot.proc = await startSlot(slot.runner, slot.id, step.ring, seedsOf(slot));
      }
      const lagging = late!;
      late = clientWith(step.ring);
      closeIfRetired(lagging);
      await loadFor(500);
    }

    await loadFor(500);
    clearInterval(load);
    load = undefined;
    if (settled < sent) await new Promise<void>((resolve) => (allSettled = resolve));
    for (const slot of slots) {
      const stopped = await stopSlot(slot);
      executed.push(...stopped.ids);
      if (!/^ebb_auth_failures_total\{reason="unknown_key"\} 0$/m.test(stopped.metrics)) authFailures.push(`${slot.id} at the end`);
    }

    assert.deepEqual(failures, [], `${failures.length} of ${sent} calls failed`);
    assert.deepEqual(authFailures, [], "no handshake between members or clients failed for a key");
    const seen = new Set<string>();
    const twice = executed.filter((id) => (seen.has(id) ? true : (seen.add(id), false)));
    assert.deepEqual(twice, [], "a request ran more than once");
    assert.equal(seen.size, sent, "every call ran exactly once");
    console.log(`key rotation [${runners.join(", ")}] from ${runtime.name}: ${sent} calls, 0 failed, ${STEPS.length * slots.length} restarts`);
  } finally {
    if (load) clearInterval(load);
    for (const cluster of clients) cluster.close();
    for (const slot of slots) await stopProcess(slot.proc);
  }
});
