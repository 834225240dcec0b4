import { test } from "node:test";
import assert from "node:assert/strict";
import { decode, encode } from "@msgpack/msgpack";
import { z } from "zod";
import { createClusterClient } from "../../../src/cluster/client.ts";
import { defineService, type Implementation } from "../../../src/rpc/contract.ts";
import { RpcError } from "../../../src/rpc/errors.ts";
import { MAX_HEADER_CHARS, MAX_HEADERS } from "../../../src/wire/messages.ts";
import { connectChannel, connectRaw, messagesOf, rejectsWith, runtime, startTestNode } from "../../helpers/net.ts";

// Call metadata both ways and context through nested calls (issue 15, items 2 and 3), on real loopback sockets.

const seen = z.object({
  headers: z.record(z.string(), z.string()),
  requestId: z.string().optional(),
  deadlineAt: z.number().optional(),
  traceId: z.string(),
  spanId: z.string(),
  parentSpanId: z.string().optional(),
});

const metaService = defineService("meta", {
  /** What the handler saw; sets `served-by` and, when asked, the headers in `answer`. */
  look: { input: z.object({ answer: z.record(z.string(), z.string()).optional() }), output: seen },
  /** Calls `look` through the node's own client, and returns what both hops saw. */
  nested: { input: z.object({ timeoutMs: z.number().optional() }), output: z.object({ outer: seen, inner: seen }) },
  /** Calls `look` twice through the node's own client, and once more with `inherit: false`, then twice from a timer 400 ms later. */
  twice: { input: z.object({}), output: z.array(seen) },
  /** Calls `hold` through the node's own client and waits for it. */
  relay: { input: z.object({ tag: z.string() }), output: z.string() },
  /** Waits until its signal aborts, then throws its reason. */
  hold: { input: z.object({ tag: z.string() }), output: z.string() },
});

/** Each `hold` handler's start, and how it ended (its signal's reason's code), by tag. */
const holds = new Map<string, { started: () => void; ended: (code: string) => void }>();
function watchHold(tag: string): { started: Promise<void>; ended: Promise<string> } {
  let started!: () => void;
  let ended!: (code: string) => void;
  const watched = { started: new Promise<void>((resolve) => (started = resolve)), ended: new Promise<string>((resolve) => (ended = resolve)) };
  holds.set(tag, { started, ended });
  return watched;
}

function sawOf(ctx: Parameters<Implementation<typeof metaService>["look"]>[1]): z.infer<typeof seen> {
  const { traceId, spanId, parentSpanId } = ctx.trace;
  // Keys of undefined values are left out: msgpack would carry them as nil.
  return JSON.parse(JSON.stringify({ headers: { ...ctx.headers }, requestId: ctx.requestId, deadlineAt: ctx.deadlineAt, traceId, spanId, parentSpanId }));
}

/** Resolvable promises for what the `twice` handler's timer saw. */
function deferred() {
  let resolve!: (value: string) => void;
  const promise = new Promise<string>((r) => (resolve = r));
  return { promise, resolve };
}
let late = deferred();
let late2 = deferred();

async function metaNode(overrides: Parameters<typeof startTestNode>[1] = {}) {
  const started = await startTestNode((node) => {
    const self = node.client(metaService);
    node.register(metaService, {
      look: ({ answer }, ctx) => {
        ctx.setHeader("served-by", node.id);
        for (const [name, value] of Object.entries(answer ?? {})) ctx.setHeader(name, value);
        return sawOf(ctx);
      },
      nested: async ({ timeoutMs }, ctx) => ({ outer: sawOf(ctx), inner: await self.look({}, { timeoutMs }) }),
      relay: ({ tag }) => self.hold({ tag }),
      twice: async () => {
        const both = await Promise.all([self.look({}), self.look({})]);
        const own = await self.look({}, { inherit: false });
        // Work that outlives the handler's deadline (300 ms, below): inheriting, it is not sent; on its own, it is.
        setTimeout(() => {
          self.look({}).then(
            () => late.resolve("sent"),
            (error: RpcError) => late.resolve(`${error.code} processed=${error.processed}`),
          );
          self.look({}, { inherit: false }).then((saw) => late2.resolve(saw.requestId === undefined ? "no id" : "own"), (error: RpcError) => late2.resolve(error.code));
        }, 400);
        return [...both, own];
      },
      hold: ({ tag }, ctx) =>
        new Promise((_, reject) => {
          ctx.signal.addEventListener("abort", () => {
            const reason = ctx.signal.reason as RpcError;
            holds.get(tag)?.ended(reason.code);
            reject(reason);
          });
          holds.get(tag)?.started();
        }),
    });
  }, overrides);
  const cluster = createClusterClient({ runtime, addresses: [`127.0.0.1:${started.port}`] });
  return { ...started, cluster, api: cluster.client(metaService), [Symbol.asyncDispose]: async () => {
    cluster.close();
    await started.close();
  } };
}

test("headers go to the handler in ctx.headers and come back from ctx.setHeader through onHeaders", async () => {
  await using n = await metaNode();
  let answered: Record<string, string> | undefined;
  const saw = await n.api.look({ answer: { "cache-hit": "yes" } }, { headers: { tenant: "acme", "x-b3.flags": "1" }, onHeaders: (h) => (answered = { ...h }) });
  assert.deepEqual(saw.headers, { tenant: "acme", "x-b3.flags": "1" });
  assert.deepEqual(answered, { "served-by": "test-node", "cache-hit": "yes" });
  // A call that sends none sees an empty map.
  assert.deepEqual((await n.api.look({})).headers, {});
});

test("headers past the bounds: the caller is refused before sending, a raw request is answered INVALID_REQUEST, a handler's RangeError names the bound", async () => {
  await using n = await metaNode();
  const tooMany = Object.fromEntries(Array.from({ length: MAX_HEADERS + 1 }, (_, i) => [`h${i}`, "v"]));
  const refused = await rejectsWith(n.api.look({}, { headers: tooMany }), "INVALID_REQUEST");
  assert.equal(refused.processed, false);
  assert.match(refused.message, /more than 64 headers/);
  await rejectsWith(n.api.look({}, { headers: { big: "x".repeat(MAX_HEADER_CHARS) } }), "INVALID_REQUEST");
  await rejectsWith(n.api.look({}, { headers: { Tenant: "upper case" } }), "INVALID_REQUEST");

  // What a hostile or careless msgpack-rpc client sends: each answered with the reason, the connection kept.
  const raw = await connectRaw(n.port);
  const bad: [unknown, RegExp][] = [
    [{ headers: tooMany }, /more than 64 headers/],
    [{ headers: { a: 1 } }, /header "a" is not a string/],
    [{ headers: { "a b": "c" } }, /header name "a b"/],
    [{ headers: { a: "line\r\nbreak" } }, /other than printable ASCII/],
    [{ headers: { a: "日本" } }, /other than printable ASCII/],
    [{ headers: { a: "\u0085" } }, /other than printable ASCII/],
    [{ headers: ["a"] }, /not a map/],
    [{ headers: { big: "x".repeat(MAX_HEADER_CHARS) } }, /longer than 8192/],
  ];
  for (const [i, [meta]] of bad.entries()) raw.socket.write(encode([0, i, "meta.look", [{}], meta]));
  // And one good request after them on the same connection.
  raw.socket.write(encode([0, 99, "meta.look", [{}], { headers: { ok: "1" } }]));
  const answers = new Map<number, unknown[]>();
  while (answers.size < bad.length + 1) {
    await raw.waitForBytes(raw.received().byteLength + 1);
    for (const message of messagesOf(raw)) answers.set(message[1] as number, message);
  }
  for (const [i, [, reason]] of bad.entries()) {
    const error = answers.get(i)![2] as { code: string; message: string };
    assert.equal(error.code, "INVALID_REQUEST", JSON.stringify(error));
    assert.match(error.message, reason);
  }
  const good = answers.get(99)!;
  assert.equal(good[2], null);
  assert.deepEqual((good[3] as { headers: unknown }).headers, { ok: "1" });
  raw.socket.close();

  // A handler that sets more than the bound fails with a message that names it.
  const error = await rejectsWith(n.api.look({ answer: Object.fromEntries(Array.from({ length: MAX_HEADERS }, (_, i) => [`a${i}`, "v"])) }), "INTERNAL");
  assert.match(error.message, /more than 64 headers/);
});

test("a plain msgpack-rpc client (no meta) gets 4-element answers even from a handler that sets headers; an ebb client gets the fifth", async () => {
  await using n = await metaNode();
  const raw = await connectRaw(n.port);
  raw.socket.write(encode([0, 1, "meta.look", [{}]]));
  raw.socket.write(encode([0, 2, "meta.look", [{}], { deadline: 1000 }]));
  while (messagesOf(raw).length < 2) await raw.waitForBytes(raw.received().byteLength + 1);
  const [plain, ebb] = messagesOf(raw).sort((a, b) => (a[1] as number) - (b[1] as number));
  assert.equal(plain!.length, 4);
  assert.equal(ebb!.length, 5);
  assert.deepEqual(ebb![4], { headers: { "served-by": "test-node" } });
  raw.socket.close();
});

test("a client ignores an answer's headers that break the bounds, and still gets the result", async () => {
  // A fake server that answers with a hostile fifth element.
  const listener = await runtime.listen({
    host: "127.0.0.1",
    port: 0,
    accept: (socket) => ({
      data: (chunk) => {
        const [, msgid] = decode(chunk) as [number, number];
        socket.write(encode([1, msgid, null, "result", { headers: { "Bad Name": "x" } }]));
      },
      end: () => socket.end(),
      close: () => {},
    }),
  });
  const channel = await connectChannel(listener.port, { keepaliveMs: 0 });
  let called = false;
  assert.equal(await channel.call("any.thing", {}, { onHeaders: () => (called = true) }), "result");
  assert.equal(called, false);
  channel.close();
  await listener.stop();
});

test("a nested call through node.client() inherits the rest of the deadline, the request id and the trace, with a new span", async () => {
  await using n = await metaNode();
  const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const before = Date.now();
  const { outer, inner } = await n.api.nested({}, { timeoutMs: 5_000, requestId: "req-1", traceparent, headers: { tenant: "acme" } });
  assert.equal(outer.requestId, "req-1");
  assert.equal(inner.requestId, "req-1.1");
  assert.equal(outer.traceId, "0af7651916cd43dd8448eb211c80319c");
  assert.equal(inner.traceId, outer.traceId);
  assert.equal(outer.parentSpanId, "b7ad6b7169203331");
  assert.equal(inner.parentSpanId, outer.spanId);
  assert.notEqual(inner.spanId, outer.spanId);
  // The callee's deadline is the caller's, nothing added (the wire carries ms left, so allow the clock's rounding).
  assert.ok(outer.deadlineAt! <= before + 5_000 + 5, `${outer.deadlineAt} vs ${before + 5_000}`);
  assert.ok(inner.deadlineAt! <= outer.deadlineAt! + 5, `inner ${inner.deadlineAt} > outer ${outer.deadlineAt}`);
  // Headers are not passed on by themselves.
  assert.deepEqual(inner.headers, {});
  // A shorter timeout of the nested call's own wins.
  const shorter = await n.api.nested({ timeoutMs: 1_000 }, { timeoutMs: 20_000 });
  assert.ok(shorter.inner.deadlineAt! <= Date.now() + 1_000);
  // A call with no trace of its own starts one, and the nested call joins it.
  const fresh = await n.api.nested({});
  assert.match(fresh.outer.traceId, /^[0-9a-f]{32}$/);
  assert.equal(fresh.inner.traceId, fresh.outer.traceId);
  assert.equal(fresh.outer.parentSpanId, undefined);
});

test("the caller's cancel reaches a nested call: the callee sees its signal abort with CANCELLED; a deadline reaches it as DEADLINE_EXCEEDED", async () => {
  await using n = await metaNode();
  const controller = new AbortController();
  const c1 = watchHold("c1");
  const call = n.api.relay({ tag: "c1" }, { signal: controller.signal });
  // Cancel once the innermost handler runs: it is then waiting on its signal.
  await c1.started;
  controller.abort();
  await rejectsWith(call, "CANCELLED");
  assert.equal(await c1.ended, "CANCELLED");

  const d1 = watchHold("d1");
  await rejectsWith(n.api.relay({ tag: "d1" }, { timeoutMs: 300 }), "DEADLINE_EXCEEDED");
  assert.equal(await d1.ended, "DEADLINE_EXCEEDED");
});

test("a call made outside any handler inherits nothing: a new trace, the client's own request id", async () => {
  await using n = await metaNode();
  const [a, b] = await Promise.all([n.api.look({}), n.api.look({})]);
  assert.equal(a.parentSpanId, undefined);
  assert.notEqual(a.traceId, b.traceId);
  assert.notEqual(a.requestId, b.requestId);
});

test("the HTTP gateway maps ebb-meta-* headers both ways, and traceparent", async () => {
  await using n = await metaNode({ httpPort: 0 });
  const url = `http://127.0.0.1:${n.node.httpAddress!.port}/rpc/meta.look`;
  const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const response = await fetch(url, { method: "POST", body: JSON.stringify({ answer: { region: "eu" } }), headers: { "ebb-meta-tenant": "acme", "Ebb-Meta-Plan": "gold", traceparent, "ebb-request-id": "r-9" } });
  assert.equal(response.status, 200);
  const { result } = (await response.json()) as { result: { headers: unknown; traceId: string; parentSpanId: string; requestId: string } };
  assert.deepEqual(result.headers, { tenant: "acme", plan: "gold" });
  assert.equal(result.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
  assert.equal(result.parentSpanId, "00f067aa0ba902b7");
  assert.equal(result.requestId, "r-9");
  assert.equal(response.headers.get("ebb-meta-served-by"), "test-node");
  assert.equal(response.headers.get("ebb-meta-region"), "eu");
  // Past the bounds: 400 with the reason, nothing dispatched.
  const many: Record<string, string> = {};
  for (let i = 0; i <= MAX_HEADERS; i++) many[`ebb-meta-h${i}`] = "v";
  const refused = await fetch(url, { method: "POST", body: "{}", headers: many });
  assert.equal(refused.status, 400);
  const { error } = (await refused.json()) as { error: { code: string; message: string } };
  assert.equal(error.code, "INVALID_REQUEST");
  assert.match(error.message, /ebb-meta-\*: more than 64 headers/);
});

test("each nested call has a request id of its own, derived from the caller's; inherit: false inherits nothing; a call that outlives its handler is not sent", async () => {
  await using n = await metaNode();
  late = deferred();
  late2 = deferred();
  const [first, second, own] = await n.api.twice({}, { requestId: "order-7", timeoutMs: 300 });
  assert.deepEqual([first!.requestId, second!.requestId], ["order-7.1", "order-7.2"]);
  assert.equal(second!.traceId, first!.traceId);
  assert.notEqual(own!.requestId, "order-7.3");
  assert.notEqual(own!.traceId, first!.traceId);
  assert.equal(await late.promise, "DEADLINE_EXCEEDED processed=false");
  assert.equal(await late2.promise, "own");
});
