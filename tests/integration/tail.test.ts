import { test } from "node:test";
import assert from "node:assert/strict";
import { createClusterClient } from "../../src/cluster/client.ts";
import { demo } from "../../src/demo/demo.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { Channel } from "../../src/rpc/channel.ts";
import { createClient } from "../../src/rpc/client.ts";
import { LogCapture, runtime, until } from "../helpers/net.ts";
import { FAST_SWIM_ENV, HOST_RUNNER, type NodeProcess, type RunnerName, sendSignal, startNodeProcess, stopProcess } from "../helpers/process.ts";

// The bad days on real processes (issue 16): a node alive but failing every call, and a cluster
// where every node refuses. Nodes on Bun, Deno and the compiled binary.

/** Starts nodes (static addresses: no membership needed), `failing` of them with EBB_DEMO_FAIL=`mode`. */
async function nodes(runners: RunnerName[], failing: number, mode: "internal" | "overloaded"): Promise<NodeProcess[]> {
  return Promise.all(runners.map((runner, i) => startNodeProcess(runner, { EBB_NODE_ID: `t${i}-${runner}`, EBB_HTTP_PORT: "0", EBB_DEMO_FAIL: i < failing ? mode : "none" })));
}

test("outlier ejection: a node failing every call with INTERNAL costs about 5 failed calls, not a quarter of them", async () => {
  const procs = await nodes(["binary", "bun", "deno", HOST_RUNNER], 1, "internal");
  const addresses = procs.map((p) => `127.0.0.1:${p.port}`);
  const ejecting = createClusterClient({ runtime, addresses, warmupMs: 0 });
  const blind = createClusterClient({ runtime, addresses, warmupMs: 0, outlierEjection: false });
  try {
    const failures = async (client: typeof ejecting) => {
      const api = client.client(demo);
      let failed = 0;
      for (let i = 0; i < 1_000; i++) {
        await api.echo(i).catch((error: RpcError) => {
          assert.equal(error.code, "INTERNAL", error.message);
          failed++;
        });
      }
      return failed;
    };
    const withEjection = await failures(ejecting);
    const without = await failures(blind);
    assert.equal(ejecting.metrics().ejections, 1);
    assert.ok(withEjection <= 6, `${withEjection} of 1000 failed with ejection`);
    assert.ok(without >= 150, `${without} of 1000 failed without ejection`);
    assert.ok(!ejecting.candidates().some((c) => c.addr === addresses[0]), "the failing node is out of the ejecting client's picks");
  } finally {
    ejecting.close();
    blind.close();
    await Promise.all(procs.map(stopProcess));
  }
});

test("retry budget: with every node refusing OVERLOADED, a call is sent about once, not once per node, and the caller hears OVERLOADED", async () => {
  const procs = await nodes(["binary", "deno", "bun"], 3, "overloaded");
  const addresses = procs.map((p) => `127.0.0.1:${p.port}`);
  const budgeted = createClusterClient({ runtime, addresses, warmupMs: 0, retryBudget: { ratio: 0.1, minPerSecond: 1 } });
  const unbounded = createClusterClient({ runtime, addresses, warmupMs: 0, retryBudget: false });
  try {
    const sendsPerCall = async (client: typeof budgeted) => {
      const api = client.client(demo);
      const calls = 600;
      await Promise.all(Array.from({ length: 6 }, async () => {
        for (let i = 0; i < calls / 6; i++) await assert.rejects(api.echo(i), (error: RpcError) => error.code === "OVERLOADED" || error.code === "UNAVAILABLE");
      }));
      const sent = Object.values(client.metrics().sentByNode).reduce((a, b) => a + b, 0);
      return sent / calls;
    };
    const withBudget = await sendsPerCall(budgeted);
    const without = await sendsPerCall(unbounded);
    assert.ok(withBudget <= 1.2, `${withBudget.toFixed(2)} sends per call with the budget`);
    assert.ok(without >= 2.9, `${without.toFixed(2)} sends per call without`);
    assert.ok((budgeted.metrics().errors.OVERLOADED ?? 0) >= 500, JSON.stringify(budgeted.metrics().errors));
  } finally {
    budgeted.close();
    unbounded.close();
    await Promise.all(procs.map(stopProcess));
  }
});

test("hedging: a node frozen (SIGSTOP) under load costs no failed call and no call waits for it", async () => {
  const procs = await nodes(["binary", "bun", "deno", HOST_RUNNER], 0, "internal");
  const client = createClusterClient({ runtime, addresses: procs.map((p) => `127.0.0.1:${p.port}`), warmupMs: 0, hedging: {} });
  const frozen = procs[0]!;
  try {
    const api = client.client(demo);
    // Enough answered calls for the hedge delay to be known (32 per method).
    for (let i = 0; i < 64; i++) await api.sleep({ ms: 2 });
    let stopped = false;
    let maxMs = 0;
    let calls = 0;
    const failures: string[] = [];
    const worker = async () => {
      // Until the frozen node has been frozen a while, and then thawed.
      while (!stopped) {
        const started = performance.now();
        await api.sleep({ ms: 10 }).catch((error: RpcError) => failures.push(error.code));
        maxMs = Math.max(maxMs, performance.now() - started);
        calls++;
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    sendSignal(frozen, "SIGSTOP");
    try {
      // Frozen for as long as it takes the workers to make 300 calls (each hedged past it in ms).
      const frozenAt = calls;
      while (calls - frozenAt < 300) await api.sleep({ ms: 10 });
    } finally {
      sendSignal(frozen, "SIGCONT");
    }
    stopped = true;
    await Promise.all(workers);
    assert.deepEqual(failures, []);
    assert.ok(client.metrics().hedgesWon >= 1, JSON.stringify(client.metrics()));
    assert.ok(maxMs < 1_000, `a call took ${maxMs.toFixed(0)} ms with a node frozen`);
  } finally {
    client.close();
    await Promise.all(procs.map(stopProcess));
  }
});

test("adaptive concurrency: a node offered far more CPU-bound calls than it can run refuses the excess with retryAfterMs, keeps its answers fast, and its limit falls", async () => {
  const procs = await Promise.all((["binary", "deno", "bun"] as const).map((runner) => startNodeProcess(runner, { EBB_NODE_ID: `adaptive-${runner}`, EBB_ADAPTIVE_CONCURRENCY: "1" })));
  try {
    for (const proc of procs) {
      const channel = await Channel.connect(runtime, { host: "127.0.0.1", port: proc.port });
      try {
        const api = createClient(demo, channel);
        // Quiet first: the node learns its unloaded latency.
        const quietMs: number[] = [];
        for (let i = 0; i < 50; i++) {
          const started = performance.now();
          await api.work({ ms: 2 });
          quietMs.push(performance.now() - started);
        }
        const quiet = quietMs.sort((a, b) => a - b)[25]!;
        // Then 64 at a time, for 300 calls.
        const refusals: { limit: number; retryAfterMs: number }[] = [];
        const answeredMs: number[] = [];
        let left = 300;
        await Promise.all(Array.from({ length: 64 }, async () => {
          while (left-- > 0) {
            const started = performance.now();
            await api.work({ ms: 2 }).then(
              () => void answeredMs.push(performance.now() - started),
              (error: RpcError) => {
                assert.equal(error.code, "OVERLOADED", error.message);
                assert.equal(error.processed, false);
                refusals.push(error.data as { limit: number; retryAfterMs: number });
              },
            );
          }
        }));
        assert.ok(refusals.length > 0, "the excess was refused");
        assert.ok(refusals.every((r) => r.limit < 64 && r.retryAfterMs >= 1 && r.retryAfterMs <= 1_000), JSON.stringify(refusals.slice(0, 3)));
        assert.ok(answeredMs.length >= 20, `${answeredMs.length} answered`);
        // Admitted calls share the CPU with fewer than half the 64 offered (ratios to the quiet latency: the machine may be busy).
        const median = answeredMs.sort((a, b) => a - b)[answeredMs.length >> 1]!;
        assert.ok(median < 32 * quiet, `answered in ${median.toFixed(0)} ms (median), ${quiet.toFixed(1)} ms when quiet`);
        const metrics = await (await fetch(`http://127.0.0.1:${proc.httpPort}/metrics`)).text();
        const limit = Number(/^ebb_inflight_limit (\d+)/m.exec(metrics)?.[1]);
        assert.ok(limit >= 4 && limit < 32, `limit ${limit} on ${proc.port}`);
      } finally {
        channel.close();
      }
    }
  } finally {
    await Promise.all(procs.map(stopProcess));
  }
});

test("watched discovery: a seeds-mode client hears of a node joining and draining from its watch, with no poll due", async () => {
  const first = await startNodeProcess("binary", { ...FAST_SWIM_ENV, EBB_NODE_ID: "watch-a" });
  const procs = [first, await startNodeProcess("deno", { ...FAST_SWIM_ENV, EBB_NODE_ID: "watch-b", EBB_SEEDS: `127.0.0.1:${first.port}` })];
  const logs = new LogCapture();
  // Polls every minute: within the test, what the client learns it learns from its watch.
  const client = createClusterClient({ runtime, seeds: [`127.0.0.1:${first.port}`], refreshMs: 60_000, watchRefreshMs: 60_000, log: logs.logger });
  try {
    await client.whenAvailable("demo", 2, 20_000);
    await logs.next((l) => l.msg === "watching membership");
    const third = await startNodeProcess(HOST_RUNNER, { ...FAST_SWIM_ENV, EBB_NODE_ID: "watch-c", EBB_SEEDS: `127.0.0.1:${first.port}` });
    procs.push(third);
    await client.whenAvailable("demo", 3, 20_000);
    sendSignal(third, "SIGTERM");
    await until(() => !client.candidates("demo").some((c) => c.id === "watch-c"), "the draining node left the client's view");
    assert.equal(await third.exited, 0);
  } finally {
    client.close();
    await Promise.all(procs.map(stopProcess));
  }
});
