import { test } from "node:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import { createClusterClient } from "../../src/cluster/client.ts";
import { demo } from "../../src/demo/demo.ts";
import { makeCertificates } from "../../scripts/certs.ts";
import { clientRuntime } from "../../src/cli/target.ts";
import { createLogger } from "../../src/log.ts";
import { runtime } from "../helpers/net.ts";
import { HOST_RUNNER, loadFor, type NodeProcess, type RunnerName, sendSignal, type Slot, startNodeProcess, stopProcess } from "../helpers/process.ts";

const FAST_MEMBERSHIP = {
  EBB_SWIM_PROBE_INTERVAL_MS: "200",
  EBB_SWIM_PROBE_TIMEOUT_MS: "100",
  EBB_SWIM_GOSSIP_INTERVAL_MS: "50",
  EBB_SWIM_PUSH_PULL_INTERVAL_MS: "2000",
};
const RATE_PER_SECOND = 150;


function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}

async function startSlot(runner: RunnerName, id: string, seeds: string[], env: Record<string, string>): Promise<NodeProcess> {
  const proc = await startNodeProcess(runner, { ...FAST_MEMBERSHIP, ...env, EBB_NODE_ID: id, EBB_DEMO_RECORD: "1", ...(seeds.length ? { EBB_SEEDS: seeds.join(",") } : {}) });
  await proc.waitForLine((l) => l.state === "ready");
  return proc;
}

/** Stops a node with SIGTERM and returns the request ids it executed; asserts it drained cleanly. */
async function stopSlot(slot: Slot): Promise<string[]> {
  sendSignal(slot.proc, "SIGTERM");
  const code = await slot.proc.exited;
  assert.equal(code, 0, `${slot.id} (${slot.runner}) exited ${code}; stderr: ${slot.proc.stderr()}`);
  const executed = await slot.proc.waitForLine((l) => l.msg === "demo executed");
  return executed.ids as string[];
}

/**
 * Restarts every node of a cluster of `runners` in turn under load; `env` is every node's and the client's (EBB_TLS_* for a TLS cluster).
 * The client's retry budget, outlier ejection and membership watch are on by default; `everything` turns on the rest:
 * hedged calls on the client and adaptive concurrency on the nodes.
 */
async function rollingRestart(runners: RunnerName[], env: Record<string, string> = {}, everything = false): Promise<void> {
  if (everything) env = { ...env, EBB_ADAPTIVE_CONCURRENCY: "1" };
  const slots: Slot[] = [];
  const executed: string[] = [];
  const failures: string[] = [];
  const latencies: { at: number; ms: number }[] = [];
  const restartWindows: [number, number][] = [];
  let sent = 0;
  let settled = 0;
  let allSettled: (() => void) | undefined;
  let load: ReturnType<typeof setInterval> | undefined;
  const client = { close() {} } as { close(): void };
  try {
    for (let i = 0; i < runners.length; i++) {
      // Ids unique to this process: Bun's and Deno's suites run side by side, and a port one cluster freed may be
      // taken by a node of the other, whose member list must not pass for ours (discovery also checks that).
      slots.push({ runner: runners[i]!, id: `r${i}-${process.pid}`, proc: await startSlot(runners[i]!, `r${i}-${process.pid}`, slots.map((s) => `127.0.0.1:${s.proc.port}`), env) });
    }
    // The client's debug lines (member lists taken, connections failed), the last of them kept for a failure's message.
    const clientLog: string[] = [];
    const log = createLogger({ node: "client", level: "debug", format: "pretty", write: (line) => clientLog.push(line) > 5_000 && clientLog.shift() });
    const cluster = createClusterClient({ seeds: slots.map((s) => `127.0.0.1:${s.proc.port}`), runtime: clientRuntime(runtime, env), warmupMs: 2_000, idempotentRetries: false, refreshMs: 200, log, hedging: everything ? {} : undefined });
    client.close = () => cluster.close();
    const api = cluster.client(demo);
    await cluster.whenAvailable("demo", slots.length);

    // Open-model load: calls go out on schedule whatever the replies do, so a stall cannot hide a failure.
    const tag = runners.join("-");
    load = setInterval(() => {
      for (let k = 0; k < RATE_PER_SECOND / 50; k++) {
        const roll = (sent * 7919) % 100;
        const ms = roll < 70 ? 1 : roll < 95 ? 50 : 500;
        const requestId = `${tag}-${sent++}`;
        const started = performance.now();
        api.sleep({ ms }, { requestId, timeoutMs: 5_000 }).then(
          () => latencies.push({ at: Date.now(), ms: performance.now() - started }),
          (error: unknown) => failures.push(`${requestId}: ${error instanceof Error ? error.message : String(error)}`),
        ).finally(() => {
          settled++;
          if (load === undefined && settled === sent) allSettled?.();
        });
      }
    }, 20);

    await loadFor(1_500); // steady state first

    const restart = async (i: number) => {
      const slot = slots[i]!;
      const began = Date.now();
      executed.push(...(await stopSlot(slot)));
      const seeds = slots.filter((s) => s !== slot).map((s) => `127.0.0.1:${s.proc.port}`);
      slot.proc = await startSlot(slot.runner, slot.id, seeds, env);
      restartWindows.push([began, Date.now()]);
    };
    // Two full rounds, node by node, each started as soon as the previous is ready...
    for (let round = 0; round < 2; round++) for (let i = 0; i < slots.length; i++) await restart(i);
    // ...and one node restarted twice back to back.
    await restart(1);
    await restart(1);

    await loadFor(1_000); // and a tail after the last restart
    clearInterval(load);
    load = undefined;
    if (settled < sent) await new Promise<void>((resolve) => (allSettled = resolve));
    const metrics = cluster.metrics();
    // What the client saw, for the failure message: the nodes it could call at the end, and its retries and errors.
    const view = `client view at the end: ${JSON.stringify(cluster.candidates("demo"))}, retries ${JSON.stringify(metrics.retries)}, errors ${JSON.stringify(metrics.errors)}, ${restartWindows.length} restarts done; ` +
      `nodes: ${slots.map((s) => `${s.id}@${s.proc.port}`).join(" ")}; the client's last lines:\n${clientLog.slice(-25).join("\n")}\n`;
    cluster.close();
    for (const slot of slots) executed.push(...(await stopSlot(slot)));

    const sample = failures.length > 6 ? [...failures.slice(0, 3), "...", ...failures.slice(-3)] : failures;
    if (failures.length > 0) {
      // The whole client log, for a failure seen only in a full run: its path is in the message.
      const path = join(tmpdir(), `ebb-rolling-client-${process.pid}-${Date.now()}.log`);
      writeFileSync(path, `${clientLog.join("\n")}\nfirst failure: ${failures[0]}\n`);
      console.log(`rolling restart: the client's log is in ${path}`);
    }
    assert.equal(failures.length, 0, `${failures.length} of ${sent} calls failed:\n${sample.join("\n")}\n${view}`);
    const seen = new Set<string>();
    const twice = executed.filter((id) => (seen.has(id) ? true : (seen.add(id), false)));
    // A hedge runs an idempotent call a second time by design: as many twice-run requests as hedges at most, none without.
    if (everything) assert.ok(twice.length <= metrics.hedges, `${twice.length} requests ran twice, ${metrics.hedges} hedges`);
    else assert.deepEqual(twice, [], "a request ran more than once");
    assert.equal(seen.size, sent, "every call ran exactly once");
    const during = latencies.filter((l) => restartWindows.some(([a, b]) => l.at >= a && l.at <= b)).map((l) => l.ms);
    const steady = latencies.filter((l) => !restartWindows.some(([a, b]) => l.at >= a && l.at <= b)).map((l) => l.ms);
    console.log(
      `rolling restart [${runners.join(", ")}]${everything ? " with everything on" : ""} from ${runtime.name}: ${sent} calls, 0 failed, ${restartWindows.length} restarts, ` +
        `retries ${JSON.stringify(metrics.retries)}, hedges ${metrics.hedges} (won ${metrics.hedgesWon}), refused ${metrics.retriesRefused}, ejections ${metrics.ejections}, p99 steady ${quantile(steady, 0.99).toFixed(1)} ms, p99 during restarts ${quantile(during, 0.99).toFixed(1)} ms`,
    );
  } finally {
    if (load) clearInterval(load);
    client.close();
    for (const slot of slots) await stopProcess(slot.proc);
  }
}

test(`zero failed calls through rolling restarts of a ${runtime.name} cluster`, () => rollingRestart([HOST_RUNNER, HOST_RUNNER, HOST_RUNNER]));

test("zero failed calls through rolling restarts of a mixed Bun, Deno and binary cluster", () => rollingRestart(["bun", "deno", "binary"]));

test(`zero failed calls through rolling restarts of a TLS cluster of Bun, Deno and the binary, from ${runtime.name}`, async () => {
  const dir = mkdtempSync(join(tmpdir(), "ebb-rolling-tls-"));
  try {
    // Inline PEM, so the Deno node needs no --allow-read; one certificate (localhost, 127.0.0.1) serves every node.
    const certs = makeCertificates(dir, ["node"]);
    const pem = (path: string) => readFileSync(path, "utf8");
    await rollingRestart(["bun", "deno", "binary"], { EBB_TLS_CERT: pem(certs.nodes.node!.cert), EBB_TLS_KEY: pem(certs.nodes.node!.key), EBB_TLS_CA: pem(certs.ca) });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`zero failed calls through rolling restarts of a mixed cluster with every guard on (hedging, adaptive concurrency, retry budget, ejection, watch), from ${runtime.name}`, () =>
  rollingRestart(["bun", "deno", "binary"], {}, true));
