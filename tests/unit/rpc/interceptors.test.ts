import { test } from "node:test";
import assert from "node:assert/strict";
import { type ClientInterceptor, createClusterClient } from "../../../src/cluster/client.ts";
import { configWith } from "../../../src/config/load.ts";
import { createNode, type EbbNode } from "../../../src/node.ts";
import type { ServerInterceptor } from "../../../src/rpc/contract.ts";
import { RpcError } from "../../../src/rpc/errors.ts";
import { createMemoryRuntime, type MemoryRuntime } from "../../../src/runtime/memory.ts";
import { Channel } from "../../../src/rpc/channel.ts";
import { probe, probeHandlers, probeReached } from "../../helpers/services.ts";

// Interceptors (issue 15, item 1): whole nodes and a cluster client on the in-memory runtime.

/** A node serving `probe`, with `interceptors` around it, started; and a cluster client of it with `clientInterceptors`. */
async function served(runtime: MemoryRuntime, interceptors: ServerInterceptor[], clientInterceptors: ClientInterceptor[] = []) {
  const node: EbbNode = createNode({ config: configWith({ nodeId: "i1", host: "127.0.0.1", rpcPort: 0, httpPort: null }), runtime }).register(probe, probeHandlers);
  for (const interceptor of interceptors) node.use(interceptor);
  await node.start();
  const cluster = createClusterClient({ addresses: [`127.0.0.1:${node.rpcAddress.port}`], runtime, interceptors: clientInterceptors });
  return { node, cluster, api: cluster.client(probe), [Symbol.asyncDispose]: async () => {
    cluster.close();
    await node.shutdown();
  } };
}

/** An interceptor that writes `name>` on the way in and `<name` (or `<name!CODE`) on the way out. */
const tracing = (name: string, trace: string[]): ServerInterceptor => (next) => async (call) => {
  trace.push(`${name}>${call.method}`);
  try {
    const result = await next(call);
    trace.push(`<${name}`);
    return result;
  } catch (error) {
    trace.push(`<${name}!${error instanceof RpcError ? error.code : "?"}`);
    throw error;
  }
};

test("server interceptors run in the order added, around the handler, and see its result and its errors", async () => {
  const trace: string[] = [];
  await using s = await served(createMemoryRuntime(), [tracing("a", trace), tracing("b", trace)]);
  assert.equal(await s.api.add({ a: 1, b: 2 }), 3);
  assert.deepEqual(trace.splice(0), ["a>probe.add", "b>probe.add", "<b", "<a"]);
  await assert.rejects(s.api.raise({ code: "APPLICATION" }), (error: RpcError) => error.code === "APPLICATION");
  assert.deepEqual(trace.splice(0), ["a>probe.raise", "b>probe.raise", "<b!APPLICATION", "<a!APPLICATION"]);
  // Invalid input never reaches them (validation is outside), nor do unknown methods.
  await assert.rejects(s.cluster.call("probe.add", { a: "x" }), (error: RpcError) => error.code === "INVALID_PARAMS");
  assert.deepEqual(trace, []);
});

test("an auth interceptor short-circuits: the handler never runs, the caller gets its RpcError; one that changes the input changes what the handler sees", async () => {
  let ran = 0;
  const onlyAdd: ServerInterceptor = (next) => (call) => {
    if (call.method !== "probe.add") throw new RpcError(`${call.ctx.peer} may not call ${call.method}`, "UNAUTHENTICATED");
    ran++;
    return next(call);
  };
  const doubling: ServerInterceptor = (next) => (call) => {
    const { a, b } = call.input as { a: number; b: number };
    return next({ ...call, input: { a: a * 2, b: b * 2 } });
  };
  await using s = await served(createMemoryRuntime(), [onlyAdd, doubling]);
  assert.equal(await s.api.add({ a: 1, b: 2 }), 6);
  await assert.rejects(s.api.echo("hi"), (error: RpcError) => error.code === "UNAUTHENTICATED" && /may not call probe\.echo/.test(error.message));
  assert.equal(ran, 1);
  assert.equal(await s.api.add({ a: 2, b: 2 }), 8);
});

test("an interceptor that throws something other than an RpcError answers INTERNAL, and the node keeps serving", async () => {
  const broken: ServerInterceptor = () => () => {
    throw new TypeError("interceptor bug");
  };
  await using s = await served(createMemoryRuntime(), [broken]);
  await assert.rejects(s.api.add({ a: 1, b: 1 }), (error: RpcError) => error.code === "INTERNAL" && /interceptor bug/.test(error.message));
  await assert.rejects(s.api.add({ a: 1, b: 1 }), (error: RpcError) => error.code === "INTERNAL");
});

test("interceptors are added before start(), like services", async () => {
  const runtime = createMemoryRuntime();
  const node = createNode({ config: configWith({ nodeId: "i2", host: "127.0.0.1", rpcPort: 0, httpPort: null }), runtime }).register(probe, probeHandlers);
  await node.start();
  try {
    assert.throws(() => node.use((next) => next), /Add interceptors before start\(\)/);
  } finally {
    await node.shutdown();
  }
});

test("client interceptors see each call once, in order, with its result or error; one may short-circuit (nothing is sent) or set options", async () => {
  const trace: string[] = [];
  const logging: ClientInterceptor = (next) => async (call) => {
    trace.push(`log>${call.method}`);
    try {
      return await next(call);
    } finally {
      trace.push("<log");
    }
  };
  const refuseEcho: ClientInterceptor = (next) => (call) => {
    if (call.method === "probe.echo") return Promise.reject(new RpcError("echo is off in this client", "CANCELLED"));
    return next({ ...call, options: { ...call.options, requestId: `tagged-${call.method}` } });
  };
  const seen: (string | undefined)[] = [];
  await using s = await served(createMemoryRuntime(), [(next) => (call) => (seen.push(call.ctx.requestId), next(call))], [logging, refuseEcho]);
  assert.equal(await s.api.add({ a: 2, b: 3 }), 5);
  await assert.rejects(s.api.echo("x"), (error: RpcError) => error.code === "CANCELLED");
  assert.deepEqual(trace, ["log>probe.add", "<log", "log>probe.echo", "<log"]);
  assert.deepEqual(seen, ["tagged-probe.add"], "the refused call was never sent; the other carried the id the interceptor set");
  assert.equal(s.cluster.metrics().calls, 1);
});

test("a call baffled by a draining node reaches no interceptor: no user code runs for it", async () => {
  const trace: string[] = [];
  const runtime = createMemoryRuntime();
  const s = await served(runtime, [tracing("a", trace)]);
  try {
    const channel = await Channel.connect(runtime, { host: "127.0.0.1", port: s.node.rpcAddress.port });
    const inFlight = s.api.wait({ ms: 100, tag: "interceptor-drain" });
    await probeReached("interceptor-drain", "started");
    const draining = new Promise<void>((resolve) => s.node.onStateChange((state) => state === "draining" && resolve()));
    const stopping = s.node.shutdown("test");
    await draining;
    // Refused unprocessed, by the node's baffle or by the channel that heard its $goaway.
    await assert.rejects(channel.call("probe.add", { a: 1, b: 1 }), (error: RpcError) => error.code === "SHUTTING_DOWN" && error.processed === false);
    channel.close();
    assert.equal(await inFlight, "interceptor-drain");
    await stopping;
    assert.deepEqual(trace, ["a>probe.wait", "<a"], "only the call admitted before the drain");
  } finally {
    s.cluster.close();
    await s.node.shutdown();
  }
});

test("each interceptor's factory runs once for the whole node, so what it keeps is shared by every method", async () => {
  let made = 0;
  let calls = 0;
  const counting: ServerInterceptor = (next) => {
    made++;
    return (call) => (calls++, next(call));
  };
  await using s = await served(createMemoryRuntime(), [counting]);
  assert.equal(await s.api.add({ a: 1, b: 1 }), 2);
  assert.equal(await s.api.echo("x"), "x");
  assert.equal(await s.api.add({ a: 2, b: 2 }), 4);
  assert.deepEqual({ made, calls }, { made: 1, calls: 3 });
});
