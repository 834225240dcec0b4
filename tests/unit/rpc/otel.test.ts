import { test } from "node:test";
import assert from "node:assert/strict";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { AlwaysOffSampler, BasicTracerProvider, InMemorySpanExporter, ParentBasedSampler, type ReadableSpan, SimpleSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { z } from "zod";
import { createClusterClient } from "../../../src/cluster/client.ts";
import { openTelemetry } from "../../../src/otel.ts";
import { defineService } from "../../../src/rpc/contract.ts";
import { RpcError } from "../../../src/rpc/errors.ts";
import { runtime, startTestNode } from "../../helpers/net.ts";

// OpenTelemetry spans of ebb calls (issue 15, item 4), recorded by the SDK's in-memory exporter,
// between real nodes on loopback.

const shop = defineService("shop", {
  /** Calls stock.count through the node's own client. */
  buy: { input: z.object({ item: z.string() }), output: z.number() },
});
const stock = defineService("stock", {
  count: { input: z.object({ item: z.string() }), output: z.number(), idempotent: true },
  /** Fails with an application error. */
  fail: { input: z.object({}), output: z.never() },
  /** Overloaded on its first call in this process (a node shedding), answered after that. */
  flaky: { input: z.object({}), output: z.string() },
  /** Ignores its signal and answers only when the test releases it. */
  stall: { input: z.object({}), output: z.string() },
});

/** Releases the `stall` handlers waiting. */
let releaseStalls: () => void = () => {};

function traced(sampler?: ParentBasedSampler) {
  const exporter = new InMemorySpanExporter();
  // Tells the test when a span it waits for ends.
  let waiters: { name: string; kind: SpanKind; resolve: (span: ReadableSpan) => void }[] = [];
  const onEnd: SpanProcessor = {
    onStart: () => {},
    onEnd: (span) => (waiters = waiters.filter((w) => (w.name === span.name && w.kind === span.kind ? (w.resolve(span), false) : true))),
    forceFlush: async () => {},
    shutdown: async () => {},
  };
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter), onEnd], sampler });
  const ended = (name: string, kind: SpanKind) => new Promise<ReadableSpan>((resolve) => waiters.push({ name, kind, resolve }));
  return { exporter, ended, otel: openTelemetry({ tracer: provider.getTracer("test") }) };
}

/** Two nodes offering both services, each tracing its calls, and a traced cluster client of both. */
async function cluster(otel: ReturnType<typeof openTelemetry>) {
  let flakyCalls = 0;
  const start = (id: string) =>
    startTestNode((node) => {
      const stockApi = node.client(stock, { interceptors: [otel.client] });
      node
        .use(otel.server)
        .register(shop, { buy: ({ item }) => stockApi.count({ item }) })
        .register(stock, {
          count: ({ item }) => item.length,
          fail: () => {
            throw new RpcError("out of stock", "APPLICATION", { data: { item: "x" } });
          },
          flaky: () => {
            if (flakyCalls++ === 0) throw new RpcError("shedding", "OVERLOADED", { processed: false });
            return id;
          },
          stall: () => new Promise<string>((resolve) => (releaseStalls = () => resolve("late"))),
        });
    }, { nodeId: id });
  const nodes = [await start("o1"), await start("o2")];
  const client = createClusterClient({ runtime, addresses: nodes.map((n) => `127.0.0.1:${n.port}`), interceptors: [otel.client] });
  return {
    client,
    async [Symbol.asyncDispose]() {
      client.close();
      await Promise.all(nodes.map((n) => n.close()));
    },
  };
}

const byName = (spans: ReadableSpan[], name: string, kind: SpanKind) => {
  const found = spans.filter((s) => s.name === name && s.kind === kind);
  assert.equal(found.length, 1, `${name} ${SpanKind[kind]}: ${spans.map((s) => `${s.name}/${SpanKind[s.kind]}`).join(", ")}`);
  return found[0]!;
};

test("a call and its nested call make client and server spans, one trace, each the child of the one before", async () => {
  const { exporter, otel } = traced();
  await using c = await cluster(otel);
  assert.equal(await c.client.client(shop).buy({ item: "book" }), 4);
  const spans = exporter.getFinishedSpans();
  const outerClient = byName(spans, "shop.buy", SpanKind.CLIENT);
  const outerServer = byName(spans, "shop.buy", SpanKind.SERVER);
  const innerClient = byName(spans, "stock.count", SpanKind.CLIENT);
  const innerServer = byName(spans, "stock.count", SpanKind.SERVER);
  const chain = [outerClient, outerServer, innerClient, innerServer];
  assert.equal(new Set(chain.map((s) => s.spanContext().traceId)).size, 1);
  assert.equal(outerClient.parentSpanContext, undefined);
  for (let i = 1; i < chain.length; i++) assert.equal(chain[i]!.parentSpanContext?.spanId, chain[i - 1]!.spanContext().spanId, `${chain[i]!.name} ${SpanKind[chain[i]!.kind]}`);
  for (const span of chain) assert.equal(span.status.code, SpanStatusCode.OK);
  assert.equal(innerServer.attributes["rpc.service"], "stock");
  assert.equal(innerServer.attributes["rpc.method"], "count");
  assert.equal(innerServer.attributes["rpc.system"], "ebb");
  assert.equal(innerServer.attributes["rpc.ebb.request_id"], `${outerServer.attributes["rpc.ebb.request_id"]}.1`);
});

test("an application error ends both spans with ERROR and its code; a transparent retry is an event on the client span", async () => {
  const { exporter, otel } = traced();
  await using c = await cluster(otel);
  const api = c.client.client(stock);
  await assert.rejects(api.fail({}), (error: RpcError) => error.code === "APPLICATION");
  for (const kind of [SpanKind.CLIENT, SpanKind.SERVER]) {
    const span = byName(exporter.getFinishedSpans(), "stock.fail", kind);
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(span.attributes["rpc.ebb.code"], "APPLICATION");
    assert.match(span.status.message ?? "", /out of stock/);
  }

  // The first node to answer sheds the call (OVERLOADED, processed: false): the client sends it to the other one.
  const answeredBy = await api.flaky({});
  const spans = exporter.getFinishedSpans().filter((s) => s.name === "stock.flaky");
  const clientSpan = byName(spans, "stock.flaky", SpanKind.CLIENT);
  assert.equal(clientSpan.status.code, SpanStatusCode.OK);
  assert.deepEqual(clientSpan.events.map((e) => [e.name, e.attributes?.["rpc.ebb.reason"]]), [["ebb.retry", "overloaded"]]);
  assert.notEqual(clientSpan.events[0]!.attributes?.["rpc.ebb.node"], answeredBy);
  // Two server spans: the shed try (ERROR, processed false) and the answered one, both children of the one client span.
  const servers = spans.filter((s) => s.kind === SpanKind.SERVER);
  assert.equal(servers.length, 2);
  for (const server of servers) assert.equal(server.parentSpanContext?.spanId, clientSpan.spanContext().spanId);
  assert.deepEqual(servers.map((s) => s.attributes["rpc.ebb.code"] ?? "OK").sort(), ["OK", "OVERLOADED"]);
});

test("with no tracer provider registered the interceptors pass calls through and ebb's own trace context still flows", async () => {
  const otel = openTelemetry(); // the global API's tracer: a no-op, as nothing registered a provider
  await using c = await cluster(otel);
  assert.equal(await c.client.client(shop).buy({ item: "pen" }), 3);
});

test("a sampler's drop holds down the chain: no span anywhere when the root is not sampled", async () => {
  const { exporter, otel } = traced(new ParentBasedSampler({ root: new AlwaysOffSampler() }));
  await using c = await cluster(otel);
  assert.equal(await c.client.client(shop).buy({ item: "book" }), 4);
  assert.deepEqual(exporter.getFinishedSpans().map((span) => `${span.name}/${SpanKind[span.kind]}`), []);
});

test("a server span ends when the caller is answered (deadline passed), not when a handler that ignores its signal returns", async () => {
  const { ended, otel } = traced();
  await using c = await cluster(otel);
  const serverEnded = ended("stock.stall", SpanKind.SERVER);
  await assert.rejects(c.client.client(stock).stall({}, { timeoutMs: 200 }), (error: RpcError) => error.code === "DEADLINE_EXCEEDED");
  // The handler has not returned (it waits for releaseStalls), yet the span ends with the node's answer.
  const server = await serverEnded;
  assert.equal(server.attributes["rpc.ebb.code"], "DEADLINE_EXCEEDED");
  releaseStalls();
});

test("a client span ends when an interceptor inside it throws at once", async () => {
  const { exporter, otel } = traced();
  const refuse = () => () => {
    throw new RpcError("refused by an interceptor", "UNAUTHENTICATED");
  };
  const client = createClusterClient({ runtime, addresses: ["127.0.0.1:1"], interceptors: [otel.client, refuse] });
  try {
    await assert.rejects(client.call("stock.count", { item: "x" }), (error: RpcError) => error.code === "UNAUTHENTICATED");
    const [span] = exporter.getFinishedSpans();
    assert.equal(span?.attributes["rpc.ebb.code"], "UNAUTHENTICATED");
    assert.equal(span?.status.code, SpanStatusCode.ERROR);
  } finally {
    client.close();
  }
});
