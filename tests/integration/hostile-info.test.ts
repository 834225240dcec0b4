// A node that lies in its `$info` answer, against a real cluster client (src/cluster/client.ts).
// The client asks `$info` first on every new connection and learns from it which methods of
// services it has no contract of are idempotent: those calls are retried after a lost connection.
// Each test runs two fake nodes (raw msgpack-rpc over TCP on loopback) that tell the same lie and
// drop the connection under a chosen call, so a retry, if the client makes one, reaches the other
// node and is counted. Each one ends with an honest call that is answered.
import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { z } from "zod";
import { type ClusterClient, createClusterClient } from "../../src/cluster/client.ts";
import { defineService } from "../../src/rpc/contract.ts";
import { DEFAULT_MAX_ELEMENTS, MessageDecoder } from "../../src/wire/decoder.ts";
import type { Socket } from "../../src/runtime/types.ts";
import { rejectsWith, runtime } from "../helpers/net.ts";

/** A service the client has a typed contract of: `charge` is not idempotent, `lookup` is. */
const shop = defineService("shop", {
  charge: { input: z.object({ cents: z.number() }), output: z.string() },
  lookup: { input: z.object({ id: z.string() }), output: z.string(), idempotent: true },
});

/** Requests the fake nodes of one test received, all nodes together, by method; and waits for them. */
class Requests {
  private readonly counts = new Map<string, number>();
  private waiters: { method: string; n: number; resolve: () => void }[] = [];

  record(method: string): number {
    const n = (this.counts.get(method) ?? 0) + 1;
    this.counts.set(method, n);
    this.waiters = this.waiters.filter((w) => (w.method === method && w.n <= n ? (w.resolve(), false) : true));
    return n;
  }

  count(method: string): number {
    return this.counts.get(method) ?? 0;
  }

  /** Resolves once `n` requests of `method` arrived. */
  seen(method: string, n = 1): Promise<void> {
    if (this.count(method) >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ method, n, resolve }));
  }
}

/** A `$info` answer: the result, or an error instead of one. */
type InfoAnswer = { result: unknown } | { error: unknown };

interface FakeOptions {
  info: InfoAnswer;
  requests: Requests;
  /**
   * Methods whose first request (of all the test's fake nodes together) loses its connection: the
   * node answers nothing and ends it, after the `$info` answer (TCP keeps that order). Later ones are answered.
   */
  drop: ReadonlySet<string>;
}

/** A fake node: answers `$info` as told, drops what it is told to, and answers anything else with `ok <method>`. */
async function startFakeNode({ info, requests, drop }: FakeOptions): Promise<{ addr: string; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const listener = await runtime.listen({
    host: "127.0.0.1",
    port: 0,
    accept: (socket) => {
      sockets.add(socket);
      const decoder = new MessageDecoder(64 << 20);
      let dropped = false;
      return {
        data(chunk) {
          for (const message of decoder.push(chunk) as unknown[][]) {
            const [, msgid, method] = message as [number, number, string];
            if (dropped) return;
            const n = requests.record(method);
            if (method === "$info") {
              const answer = "result" in info ? [1, msgid, null, info.result] : [1, msgid, info.error, null];
              socket.write(encode(answer, { maxDepth: 200 }));
            } else if (drop.has(method) && n === 1) {
              dropped = true;
              socket.end();
            } else socket.write(encode([1, msgid, null, `ok ${method}`]));
          }
        },
        end: () => socket.end(),
        close: () => sockets.delete(socket),
      };
    },
  });
  return {
    addr: `127.0.0.1:${listener.port}`,
    async stop() {
      for (const socket of sockets) socket.close();
      await listener.stop();
    },
  };
}

/** Two fake nodes telling the same `$info`, and a cluster client of both. */
async function fakeCluster(info: InfoAnswer, drop: string[] = []): Promise<{ requests: Requests; cluster: ClusterClient } & AsyncDisposable> {
  const requests = new Requests();
  const nodes = await Promise.all([0, 1].map(() => startFakeNode({ info, requests, drop: new Set(drop) })));
  const cluster = createClusterClient({ runtime, addresses: nodes.map((n) => n.addr), keepaliveMs: 0 });
  return {
    requests,
    cluster,
    async [Symbol.asyncDispose]() {
      cluster.close();
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

/** A method as `$info` lists it. */
const listed = (name: string, idempotent: boolean) => ({ name, idempotent, input: {}, output: {} });

/** The call fails UNAVAILABLE with the outcome unknown, sent once to one node, and the client retried nothing. */
async function assertNotRetried(call: Promise<unknown>, requests: Requests, method: string, cluster: ClusterClient): Promise<void> {
  const error = await rejectsWith(call, "UNAVAILABLE");
  assert.match(error.message, /lost with the call in flight; outcome unknown/);
  assert.equal(requests.count(method), 1, `${method} reached the fake nodes once`);
  assert.deepEqual(cluster.metrics().retries, {}, "no retry");
}

/** The call is retried once on the other node after its connection was lost, and answered there. */
async function assertRetried(call: Promise<unknown>, requests: Requests, method: string, cluster: ClusterClient): Promise<void> {
  const retriesBefore = Object.values(cluster.metrics().retries).reduce((a, b) => a + b, 0);
  assert.equal(await call, `ok ${method}`);
  assert.equal(requests.count(method), 2, `${method}: the lost try and the retry`);
  assert.equal(Object.values(cluster.metrics().retries).reduce((a, b) => a + b, 0), retriesBefore + 1);
}

test("a node that marks a typed contract's non-idempotent method idempotent does not make the client retry it after a lost connection", async () => {
  // The lie both ways: charge (not idempotent by the contract) said idempotent, lookup (idempotent) said not.
  const info = { result: { node: "liar", services: { shop: [listed("shop.charge", true), listed("shop.lookup", false)] } } };
  await using fake = await fakeCluster(info, ["shop.charge", "shop.lookup"]);
  const api = fake.cluster.client(shop);
  const charge = api.charge({ cents: 500 });
  // The $info question goes out before the call on the new connection, and its answer comes back before the drop.
  await fake.requests.seen("shop.charge");
  assert.ok(fake.requests.count("$info") >= 1, "the client asked $info first");
  await assertNotRetried(charge, fake.requests, "shop.charge", fake.cluster);
  // The contract decides the other way too: lookup is retried whatever $info says, and answered by the other node.
  await assertRetried(api.lookup({ id: "a" }), fake.requests, "shop.lookup", fake.cluster);
  // Honest calls go on.
  assert.equal(await api.charge({ cents: 1 }), "ok shop.charge");
  assert.equal(await api.lookup({ id: "b" }), "ok shop.lookup");
});

test("a method listed under another service's key is not learned: a generic client does not retry it", async () => {
  const info = {
    result: {
      services: {
        // other.method and shop.charge slipped in under keys that are not theirs.
        decoy: [listed("other.method", true), listed("shop.charge", true)],
        // What the same answer says honestly is learned (the control: this client learns and retries).
        other: [listed("other.safe", true)],
      },
    },
  };
  await using fake = await fakeCluster(info, ["other.method", "shop.charge", "other.safe"]);
  await assertNotRetried(fake.cluster.call("other.method", { n: 1 }), fake.requests, "other.method", fake.cluster);
  // A generic call of a typed service's method, over a client with no contract of it, is not learned either.
  await rejectsWith(fake.cluster.call("shop.charge", { cents: 1 }), "UNAVAILABLE");
  assert.equal(fake.requests.count("shop.charge"), 1);
  assert.deepEqual(fake.cluster.metrics().retries, {});
  await assertRetried(fake.cluster.call("other.safe", {}), fake.requests, "other.safe", fake.cluster);
  assert.equal(await fake.cluster.call("other.method", { n: 2 }), "ok other.method");
});

test("a $info of 5,000 idempotent methods and huge, deeply nested schemas: the client learns at most 4,096 and keeps working", async () => {
  const services: Record<string, unknown[]> = {};
  // parseInfo takes up to 1,000 methods a service: five services of 1,000, all said idempotent, in order.
  for (let s = 0; s < 5; s++) services[`s${s}`] = Array.from({ length: 1_000 }, (_, m) => ({ name: `s${s}.m${m}`, idempotent: true, input: null, output: null }));
  // A schema of 40,000 values and one nested as deep as the wire lets the answer be (it is at level 6 of the message).
  let deep: unknown = { type: "string" };
  for (let i = 0; i < 56; i++) deep = [deep];
  const wide = { type: "object", properties: Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`p${i}`, i])) };
  services.big = [{ name: "big.wide", idempotent: true, input: wide, output: deep }];
  const result = { services };
  // Within the client's wire limits (elements of one message), which close a connection whose message breaks them.
  assert.ok(countValues(result) < DEFAULT_MAX_ELEMENTS - 10, `${countValues(result)} values`);
  await using fake = await fakeCluster({ result }, ["s0.m0", "s4.m999"]);
  // The first methods listed are learned (the control) ...
  await assertRetried(fake.cluster.call("s0.m0", {}), fake.requests, "s0.m0", fake.cluster);
  // ... the 5,000th is past the bound: not learned, not retried.
  const retries = fake.cluster.metrics().retries;
  const error = await rejectsWith(fake.cluster.call("s4.m999", {}), "UNAVAILABLE");
  assert.match(error.message, /outcome unknown/);
  assert.equal(fake.requests.count("s4.m999"), 1);
  assert.deepEqual(fake.cluster.metrics().retries, retries, "no retry");
  // Honest calls go on, on both nodes, each of which answered that $info on every connection.
  for (let i = 0; i < 4; i++) assert.equal(await fake.cluster.call("big.wide", { i }), "ok big.wide");
  assert.ok(fake.requests.count("$info") >= 3, `${fake.requests.count("$info")} $info answers`);
});

test("a $info answer that is garbage (not a map, wrong types, an error) teaches nothing, and honest calls are answered", async () => {
  const garbage: [string, InfoAnswer][] = [
    ["a string", { result: "garbage" }],
    ["a number", { result: 42 }],
    ["nil", { result: null }],
    ["an array", { result: [listed("other.safe", true)] }],
    ["bytes", { result: new Uint8Array([0xc1, 0xff, 0x00]) }],
    ["services not a map", { result: { services: "other.safe" } }],
    ["a service not an array", { result: { services: { other: listed("other.safe", true) } } }],
    ["idempotent not a boolean", { result: { services: { other: [{ name: "other.safe", idempotent: "yes" }] } } }],
    ["a name not a string", { result: { services: { other: [{ name: 5, idempotent: true }] } } }],
    // One good entry beside a bad one: the answer is refused whole, so other.safe is not learned.
    ["a good entry beside a bad one", { result: { services: { other: [listed("other.safe", true)], bad: [{ name: "bad.x" }] } } }],
    ["a node name too long", { result: { node: "n".repeat(10_000), services: { other: [listed("other.safe", true)] } } }],
    ["an error", { error: { code: "INTERNAL", message: "no" } }],
    ["a bare error string", { error: "no $info here" }],
  ];
  for (const [what, info] of garbage) {
    await using fake = await fakeCluster(info, ["other.safe"]);
    const error = await rejectsWith(fake.cluster.call("other.safe", { what }), "UNAVAILABLE");
    assert.match(error.message, /outcome unknown/, what);
    assert.equal(fake.requests.count("other.safe"), 1, `${what}: other.safe not learned, not retried`);
    assert.deepEqual(fake.cluster.metrics().retries, {}, what);
    assert.equal(await fake.cluster.call("other.safe", { what }), "ok other.safe", what);
    assert.equal(await fake.cluster.call("other.hello", {}), "ok other.hello", what);
  }
});

/** Values in a msgpack message of `value` (containers and scalars), as the decoder counts elements. */
function countValues(value: unknown): number {
  if (Array.isArray(value)) return 1 + value.reduce((n: number, item) => n + countValues(item), 0);
  if (typeof value === "object" && value !== null && !(value instanceof Uint8Array)) {
    return 1 + Object.values(value).reduce((n: number, item) => n + 1 + countValues(item), 0);
  }
  return 1;
}
