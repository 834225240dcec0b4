import { test } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { configWith } from "../../../src/config/load.ts";
import { createNode } from "../../../src/node.ts";
import { Channel } from "../../../src/rpc/channel.ts";
import { createClient } from "../../../src/rpc/client.ts";
import { defineService, type Implementation } from "../../../src/rpc/contract.ts";
import { RpcError } from "../../../src/rpc/errors.ts";
import { createMemoryRuntime } from "../../../src/runtime/memory.ts";
import { createClusterClient } from "../../../src/cluster/client.ts";

// Per-method policy in the contract (issue 15, item 6), on a whole node over the in-memory runtime.

const attempt = z.object({ key: z.string(), failures: z.number().int() });
const flaky = defineService("flaky", {
  /** Fails APPLICATION ("busy") for its first `failures` tries per key; retried up to 3 tries. */
  busy: { input: attempt, output: z.number().int(), retry: { maxAttempts: 3, retryableCodes: ["APPLICATION"], initialBackoffMs: 10 } },
  /** The same handler, with a policy that would go on for 10 tries, up to a second apart. */
  stubborn: { input: attempt, output: z.number().int(), retry: { maxAttempts: 10, retryableCodes: ["APPLICATION"], initialBackoffMs: 1_000, backoffMultiplier: 1 } },
  /** The same handler without a policy. */
  plain: { input: attempt, output: z.number().int() },
  /** Sleeps `ms` (until aborted); calls that set no timeout have 100 ms. */
  slow: { input: z.object({ ms: z.number() }), output: z.string(), timeoutMs: 100 },
});

const tries = new Map<string, number>();
const failFirst = ({ key, failures }: z.output<typeof attempt>) => {
  const n = (tries.get(key) ?? 0) + 1;
  tries.set(key, n);
  if (failures < 0) throw new RpcError("failures must not be negative", "INVALID_PARAMS");
  if (n <= failures) throw new RpcError(`busy (try ${n})`, "APPLICATION", { data: { try: n } });
  return n;
};
const handlers: Implementation<typeof flaky> = {
  busy: failFirst,
  stubborn: failFirst,
  plain: failFirst,
  slow: ({ ms }, ctx) =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve("done"), ms);
      ctx.signal.addEventListener("abort", () => (clearTimeout(timer), resolve("aborted")));
    }),
};

const where = new WeakMap<object, { runtime: ReturnType<typeof createMemoryRuntime>; port: number }>();
const runtimeOf = (api: object) => where.get(api)!.runtime;
const portOf = (api: object) => where.get(api)!.port;

async function withClient(run: (api: ReturnType<typeof createClient<typeof flaky>>) => Promise<void>): Promise<void> {
  const runtime = createMemoryRuntime();
  const node = createNode({ config: configWith({ nodeId: "p1", host: "127.0.0.1", rpcPort: 0, httpPort: null }), runtime }).register(flaky, handlers);
  let channel: Channel | undefined;
  try {
    await node.start();
    channel = await Channel.connect(runtime, { host: "127.0.0.1", port: node.rpcAddress.port });
    const api = createClient(flaky, channel);
    where.set(api, { runtime, port: node.rpcAddress.port });
    await run(api);
  } finally {
    channel?.close();
    await node.shutdown();
  }
}

test("a method's retry policy tries a call again on its retryable codes, up to maxAttempts; other codes and methods without a policy are not tried again", async () => {
  await withClient(async (api) => {
    assert.equal(await api.busy({ key: "two-failures", failures: 2 }), 3, "third try answered");
    await assert.rejects(api.busy({ key: "three-failures", failures: 3 }), (error: RpcError) => error.code === "APPLICATION" && (error.data as { try: number }).try === 3);
    assert.equal(tries.get("three-failures"), 3, "3 tries in all, no more");
    await assert.rejects(api.busy({ key: "bad", failures: -1 }), (error: RpcError) => error.code === "INVALID_PARAMS");
    assert.equal(tries.get("bad"), 1, "a code the policy does not name is not tried again");
    await assert.rejects(api.plain({ key: "no-policy", failures: 1 }), (error: RpcError) => error.code === "APPLICATION");
    assert.equal(tries.get("no-policy"), 1);
  });
});

test("retries and their waits fit in the call's one deadline: the caller has the last error by then, not after 10 tries", async () => {
  await withClient(async (api) => {
    const started = performance.now();
    await assert.rejects(api.stubborn({ key: "deadline", failures: 100 }, { timeoutMs: 150 }), (error: RpcError) => error.code === "APPLICATION");
    const took = performance.now() - started;
    const n = tries.get("deadline")!;
    // Waits are up to 1 s (full jitter): the client gives up as soon as the next one would pass the deadline.
    assert.ok(n >= 1 && n < 10, `${n} tries within 150 ms`);
    assert.ok(took < 400, `gave up after ${took.toFixed(0)} ms`);
    // The transport's own default deadline (a client's timeoutMs) bounds a call that sets none.
    const short = await Channel.connect(runtimeOf(api), { host: "127.0.0.1", port: portOf(api), defaultTimeoutMs: 150 });
    try {
      const before = performance.now();
      await assert.rejects(createClient(flaky, short).stubborn({ key: "transport-default", failures: 100 }), (error: RpcError) => error.code === "APPLICATION");
      assert.ok(performance.now() - before < 400, "gave up within the channel's 150 ms default");
    } finally {
      short.close();
    }
    // An aborted call stops waiting at once, and says CANCELLED.
    const controller = new AbortController();
    const call = api.stubborn({ key: "aborted", failures: 100 }, { timeoutMs: 5_000, signal: controller.signal });
    setTimeout(() => controller.abort(), 60);
    const abortedAt = performance.now();
    await assert.rejects(call, (error: RpcError) => error.code === "CANCELLED");
    assert.ok(performance.now() - abortedAt < 1_000 && tries.get("aborted")! < 10);
  });
});

test("a method's timeoutMs is the deadline of its calls that set none; a call's own timeoutMs wins", async () => {
  await withClient(async (api) => {
    const started = performance.now();
    await assert.rejects(api.slow({ ms: 5_000 }), (error: RpcError) => error.code === "DEADLINE_EXCEEDED");
    const took = performance.now() - started;
    assert.ok(took >= 90 && took < 2_000, `DEADLINE_EXCEEDED after ${took.toFixed(0)} ms`);
    assert.equal(await api.slow({ ms: 200 }, { timeoutMs: 2_000 }), "done");
  });
});

test("a policy that cannot work is refused when the contract is defined, and a misspelt policy key is a type error", () => {
  const io = { input: z.object({}), output: z.null() };
  assert.throws(() => defineService("p", { m: { ...io, timeoutMs: -5 } }), /p\.m: timeoutMs must be a positive number of milliseconds, not -5/);
  assert.throws(() => defineService("p", { m: { ...io, retry: { maxAttempts: 1, retryableCodes: ["UNAVAILABLE"] } } }), /retry\.maxAttempts must be a whole number from 2 to 10, not 1/);
  assert.throws(() => defineService("p", { m: { ...io, retry: { maxAttempts: 3, retryableCodes: [] } } }), /retry\.retryableCodes must name at least one code/);
  // @ts-expect-error: not a code (refused at run time too).
  assert.throws(() => defineService("p", { m: { ...io, retry: { maxAttempts: 3, retryableCodes: ["BUSY"] } } }), /"BUSY" is not an error code/);
  // @ts-expect-error: a misspelt key of the method spec.
  defineService("p", { m: { ...io, idempotnt: true } });
  // @ts-expect-error: a misspelt key of the retry policy.
  defineService("p", { m: { ...io, retry: { maxAttempts: 3, retryableCodes: ["UNAVAILABLE"], initialBackofMs: 10 } } });
});

test("a retry policy's retries come out of the cluster client's retry budget: spent, the caller gets the error it had", async () => {
  const runtime = createMemoryRuntime();
  const node = createNode({ config: configWith({ nodeId: "p2", host: "127.0.0.1", rpcPort: 0, httpPort: null }), runtime }).register(flaky, handlers);
  await node.start();
  // A budget of 2 retries in all (no share of calls).
  const cluster = createClusterClient({ runtime, addresses: [`127.0.0.1:${node.rpcAddress.port}`], retryBudget: { ratio: 0, minPerSecond: 0.2, windowMs: 10_000 } });
  try {
    const api = cluster.client(flaky);
    assert.equal(await api.busy({ key: "budget-1", failures: 2 }), 3, "two retries: within the budget");
    await assert.rejects(api.busy({ key: "budget-2", failures: 1 }), (error: RpcError) => error.code === "APPLICATION");
    assert.equal(tries.get("budget-2"), 1, "no retry: the budget is spent");
    assert.equal(cluster.metrics().retriesRefused, 1);
  } finally {
    cluster.close();
    await node.shutdown();
  }
});
