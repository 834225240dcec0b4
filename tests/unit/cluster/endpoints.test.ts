import { test } from "node:test";
import assert from "node:assert/strict";
import { ANSWERED_TRUST_MS, type Connection, type Endpoint, EndpointTable, MAX_ENDPOINTS } from "../../../src/cluster/endpoints.ts";
import type { Member, MemberStatus } from "../../../src/membership/types.ts";

/** A stand-in connection: records close, resolves whenIdle at once. */
class FakeConnection implements Connection {
  goaway: string | undefined;
  closed = false;
  close(): void {
    this.closed = true;
  }
  whenIdle(): Promise<void> {
    return Promise.resolve();
  }
}

function member(id: string, addr: string, state = "ready", status: MemberStatus = "alive", services = ["demo"]): Member {
  return { id, addr, incarnation: 0, status, meta: { state, services, version: "0", http: null }, since: 0 };
}

const ids = (endpoints: Endpoint[]) => endpoints.map((e) => e.id).sort();

test("endpoint table: a member list in, ready alive members offering the service out", () => {
  const table = new EndpointTable({ warmupMs: 10_000, warmupFloor: 0.1 });
  table.apply([member("a", "h:1"), member("b", "h:2", "starting"), member("c", "h:3", "ready", "suspect"), member("d", "h:4", "ready", "alive", ["other"])], 0);
  assert.deepEqual(ids(table.eligible("demo", undefined, 0)), ["a"]);
  assert.deepEqual(ids(table.eligible(undefined, undefined, 0)), ["a", "d"]);
  assert.deepEqual(ids(table.eligible("other", undefined, 0)), ["d"]);
  // Tried endpoints are left out.
  const a = table.eligible("demo", undefined, 0)[0]!;
  assert.deepEqual(table.eligible("demo", new Set([a]), 0), []);
});

test("endpoint table: dead, left and missing members are retired; their connection closes once idle", async () => {
  const table = new EndpointTable<FakeConnection>({ warmupMs: 0, warmupFloor: 0.1 });
  table.apply([member("a", "h:1"), member("b", "h:2"), member("c", "h:3")], 0);
  const channels = [...table.values()].map((e) => (e.channel = new FakeConnection()));
  table.apply([member("a", "h:1", "ready", "dead"), member("b", "h:2", "ready", "left")], 1);
  assert.equal(table.size, 0);
  await Promise.resolve();
  assert.deepEqual(channels.map((c) => c.closed), [true, true, true]);
});

test("endpoint table: one member's word that a node is dead, left or unknown does not retire a node that answered this client within ANSWERED_TRUST_MS on an open connection", async () => {
  const table = new EndpointTable<FakeConnection>({ warmupMs: 0, warmupFloor: 0.1 });
  table.apply([member("a", "h:1"), member("b", "h:2"), member("c", "h:3"), member("d", "h:4")], 0);
  const [a, b, c, d] = [...table.values()];
  for (const e of [a!, b!, c!, d!]) {
    e.channel = new FakeConnection();
    e.answeredAt = 1_000;
  }
  d!.channel!.goaway = "shutting down"; // d said it drains: its own word wins
  // A starved node's view: every other node dead, or missing.
  table.apply([member("a", "h:1", "ready", "dead"), member("b", "h:2", "ready", "left"), member("d", "h:4", "ready", "dead")], 1_000 + ANSWERED_TRUST_MS);
  assert.deepEqual(ids(table.eligible("demo", undefined, 2_000)), ["a", "b", "c"]);
  assert.equal(d!.gone, true);
  // Once the evidence is older than ANSWERED_TRUST_MS, or the connection closed, the list is believed.
  c!.channel!.closed = true;
  table.apply([member("a", "h:1", "ready", "dead")], 1_000 + ANSWERED_TRUST_MS);
  assert.deepEqual(ids([...table.values()]), ["a", "b"]);
  table.apply([member("a", "h:1", "ready", "dead")], 1_001 + ANSWERED_TRUST_MS);
  assert.equal(table.size, 0);
});

test("endpoint table: with static addresses, nodes left out of a member list stay", () => {
  const table = new EndpointTable({ warmupMs: 0, warmupFloor: 0.1, addresses: ["h:1"] });
  table.upsert("h:1", "h:1", undefined, true, 0);
  table.apply([], 1);
  assert.deepEqual(ids(table.eligible("demo", undefined, 1)), ["h:1"]);
});

test("endpoint table: a known id at a new address is a restarted node, started afresh", async () => {
  const table = new EndpointTable<FakeConnection>({ warmupMs: 10_000, warmupFloor: 0.1 });
  table.apply([member("a", "h:1")], 0);
  const old = [...table.values()][0]!;
  const channel = (old.channel = new FakeConnection());
  old.inflight = 3;
  table.apply([member("a", "h:9")], 5_000);
  const renewed = [...table.values()][0]!;
  assert.notEqual(renewed, old);
  assert.equal(old.gone, true);
  assert.deepEqual({ addr: renewed.addr, inflight: renewed.inflight, readySince: renewed.readySince }, { addr: "h:9", inflight: 0, readySince: 5_000 });
  await Promise.resolve();
  assert.equal(channel.closed, true);
});

test("endpoint table: warm-up weight runs from when the node was seen ready; a drain resets it", () => {
  const table = new EndpointTable({ warmupMs: 10_000, warmupFloor: 0.1 });
  table.apply([member("a", "h:1", "starting")], 0);
  const a = [...table.values()][0]!;
  assert.equal(table.weight(a, 0), 0.1, "not ready yet: the floor");
  table.apply([member("a", "h:1")], 1_000);
  assert.equal(table.weight(a, 1_000), 0.1);
  assert.ok(Math.abs(table.weight(a, 6_000) - 0.55) < 1e-9);
  assert.equal(table.weight(a, 11_000), 1);
  table.apply([member("a", "h:1", "draining")], 12_000);
  assert.equal(a.readySince, undefined);
  table.apply([member("a", "h:1")], 20_000);
  assert.equal(table.weight(a, 20_000), 0.1);
});

test("endpoint table: ready again after a drain closes the connection that said goaway (once idle) and takes calls again", async () => {
  const table = new EndpointTable<FakeConnection>({ warmupMs: 0, warmupFloor: 0.1 });
  table.apply([member("a", "h:1")], 0);
  const a = [...table.values()][0]!;
  const channel = (a.channel = new FakeConnection());
  channel.goaway = "draining";
  assert.deepEqual(table.eligible("demo", undefined, 0), [], "a node that said goaway takes no new calls");
  table.apply([member("a", "h:1", "draining")], 1);
  assert.equal(channel.closed, false);
  table.apply([member("a", "h:1")], 2);
  await Promise.resolve();
  assert.equal(channel.closed, true);
  assert.deepEqual(ids(table.eligible("demo", undefined, 2)), ["a"]);
});

test("endpoint table: backoff 100 ms doubling to 5 s, reset by a connection", () => {
  const table = new EndpointTable({ warmupMs: 0, warmupFloor: 0.1 });
  table.apply([member("a", "h:1")], 0);
  const a = [...table.values()][0]!;
  let now = 0;
  const waits: number[] = [];
  for (let i = 0; i < 8; i++) {
    table.connectFailed(a, now);
    waits.push(a.backoffUntil - now);
    assert.deepEqual(table.eligible("demo", undefined, a.backoffUntil - 1), [], "not eligible while backing off");
    now = a.backoffUntil;
    assert.deepEqual(ids(table.eligible("demo", undefined, now)), ["a"], "eligible again when the backoff ends");
  }
  assert.deepEqual(waits, [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
  table.connected(a, now);
  table.connectFailed(a, now);
  assert.equal(a.backoffUntil - now, 100);
});

test("endpoint table: a static address starts its warm-up when first reached", () => {
  const table = new EndpointTable({ warmupMs: 1_000, warmupFloor: 0.5, addresses: ["h:1"] });
  const e = table.upsert("h:1", "h:1", undefined, true, 0);
  e.readySince = undefined;
  table.connected(e, 400);
  assert.equal(e.readySince, 400);
  table.connected(e, 900);
  assert.equal(e.readySince, 400);
});

test("endpoint table: the no-candidate error says why", () => {
  const table = new EndpointTable<FakeConnection>({ warmupMs: 0, warmupFloor: 0.1 });
  const none = () => table.noCandidate("demo", new Set(), undefined);
  assert.match(none().message, /No node to call: no node is known/);
  assert.equal(none().code, "UNAVAILABLE");
  assert.equal(none().processed, false);
  table.apply([member("a", "h:1", "ready", "alive", ["other"])], 0);
  assert.match(none().message, /no member offers the service "demo"/);
  table.apply([member("a", "h:1", "draining"), member("b", "h:2", "starting")], 0);
  assert.match(none().message, /all 2 nodes offering "demo" are draining or not ready/);
  table.apply([member("a", "h:1"), member("b", "h:2")], 0);
  assert.match(table.noCandidate("demo", new Set(table.values()), undefined).message, /every one of the nodes offering "demo" refused or could not be reached \(tried h:1, h:2\)/);
  assert.match(none().message, /none of the 2 nodes offering "demo" is reachable/);
});

test("endpoint table: a list that says an earlier life of a node (at its old address) left or died does not retire the node restarted at a new one", () => {
  const table = new EndpointTable({ warmupMs: 0, warmupFloor: 0.1 });
  table.apply([member("a", "h:9"), member("b", "h:2")], 0);
  // A node that has not heard of the restart yet still holds a's old life, at h:1, as left.
  table.apply([{ ...member("a", "h:1"), status: "left" }, member("b", "h:2")], 100);
  assert.deepEqual([...table.values()].map((e) => `${e.id}@${e.addr}`).sort(), ["a@h:9", "b@h:2"]);
  table.apply([{ ...member("a", "h:9"), status: "left" }, member("b", "h:2")], 200);
  assert.deepEqual([...table.values()].map((e) => `${e.id}@${e.addr}`), ["b@h:2"], "news of the life at h:9 is news of it");
});

test("endpoint table: a node one member list calls suspect stays usable while the client's own connection answers it; in the node's own membership view a suspect is not used", () => {
  const table = new EndpointTable<FakeConnection>({ warmupMs: 0, warmupFloor: 0.1 });
  table.apply([member("a", "h:1"), member("b", "h:2")], 0);
  const [a, b] = [...table.values()];
  a!.channel = new FakeConnection();
  a!.answeredAt = 1_000;
  b!.channel = new FakeConnection();
  // A lossy node's answer: everyone else suspect. a answered us just now; b has not lately.
  table.apply([member("a", "h:1", "ready", "suspect"), member("b", "h:2", "ready", "suspect")], 1_000 + ANSWERED_TRUST_MS, true);
  assert.deepEqual(ids(table.eligible("demo", undefined, 2_000)), ["a"]);
  // The same from this node's own membership view: a suspect is out, whatever the connection says.
  table.apply([member("a", "h:1", "ready", "suspect"), member("b", "h:2", "ready", "suspect")], 1_000 + ANSWERED_TRUST_MS);
  assert.deepEqual(ids(table.eligible("demo", undefined, 2_000)), []);
});

test("endpoint table: a list or a watch naming more members than MAX_ENDPOINTS fills it no further", () => {
  const table = new EndpointTable({ warmupMs: 0, warmupFloor: 0.1 });
  for (let i = 0; i < MAX_ENDPOINTS + 100; i++) table.change(member(`m${i}`, `h:${i}`), 0);
  assert.equal(table.size, MAX_ENDPOINTS);
  // Known members are still updated.
  table.change(member("m0", "h:0", "ready", "left"), 1);
  assert.equal(table.size, MAX_ENDPOINTS - 1);
});

test("endpoint table: the ejection share counts the nodes that could be called, not ones down or not ready; with all of those ejected, they are called anyway", () => {
  const table = new EndpointTable({ warmupMs: 0, warmupFloor: 0.1 });
  table.apply([member("a", "h:1"), member("b", "h:2"), member("c", "h:3"), member("d", "h:4", "starting")], 0);
  const [a, b, c] = ["a", "b", "c"].map((id) => [...table.values()].find((e) => e.id === id)!);
  // c is down: its connection failed, it backs off.
  table.connectFailed(c!, 0);
  assert.deepEqual(table.ejectedCount(0), { ejected: 0, total: 2 });
  a!.ejectedUntil = 10_000;
  assert.deepEqual(table.ejectedCount(0), { ejected: 1, total: 2 });
  b!.ejectedUntil = 10_000;
  assert.deepEqual(ids(table.eligible("demo", undefined, 0)), []);
  assert.deepEqual(ids(table.eligible("demo", undefined, 0, true)), ["a", "b"]);
});

test("endpoint table: a draining node listed ready again keeps its goaway connection until its calls are done, and new calls get a new one", async () => {
  const table = new EndpointTable<FakeConnection>({ warmupMs: 0, warmupFloor: 0.1 });
  table.apply([member("a", "h:1")], 0);
  const a = [...table.values()][0]!;
  let idle!: () => void;
  const draining = new (class extends FakeConnection {
    override goaway = "draining";
    override whenIdle(): Promise<void> {
      return new Promise((resolve) => (idle = resolve));
    }
  })();
  a.channel = draining;
  table.apply([member("a", "h:1", "draining")], 1);
  // A stale list from another node still calls it ready.
  table.apply([member("a", "h:1")], 2);
  assert.equal(a.channel, undefined, "new calls open a new connection");
  assert.equal(draining.closed, false, "the calls in flight on the old one are not cut");
  idle();
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(draining.closed, true, "closed once idle");
});
