import { test } from "node:test";
import assert from "node:assert/strict";
import { Discovery, type MembershipView } from "../../../src/cluster/discovery.ts";
import { EndpointTable } from "../../../src/cluster/endpoints.ts";
import type { Member, MemberEvent } from "../../../src/membership/types.ts";
import { RpcError } from "../../../src/rpc/errors.ts";
import { ManualClock, settle } from "../../helpers/clock.ts";

function member(id: string, addr: string, state = "ready"): Member {
  return { id, addr, incarnation: 0, status: "alive", meta: { state, services: ["demo"], version: "0", http: null }, since: 0 };
}

const table = () => new EndpointTable({ warmupMs: 0, warmupFloor: 0.1 });
const idsOf = (t: EndpointTable) => [...t.values()].map((e) => e.id).sort();

/** A discovery over seeds (not started: `answer` may read `asked`), on a manual clock; `asked` records every address asked, in order. */
function seeded(seeds: string[], answer: (addr: string) => Promise<Member[]>) {
  const clock = new ManualClock();
  const asked: string[] = [];
  const t = table();
  const discovery = new Discovery(t, { seeds, refreshMs: 1_000, clock, membersFrom: (addr) => (asked.push(addr), answer(addr)), onChange: () => {} });
  return { clock, asked, t, discovery };
}

/** A seeds-mode discovery whose nodes answer `net.list` while their address is in `net.up`, and refuse otherwise. */
function switchboard(list: Member[], up: string[]) {
  const net = { list, up: new Set(up) };
  const parts = seeded(["s:1"], async (addr) => {
    if (!net.up.has(addr)) throw new RpcError(`${addr} refused`, "UNAVAILABLE");
    return net.list;
  });
  return { net, ...parts };
}

test("discovery: seeds are asked at once and every refreshMs; the first that answers wins", async () => {
  const clock = new ManualClock();
  const asked: string[] = [];
  let changes = 0;
  const t = table();
  const discovery = new Discovery(t, {
    seeds: ["s:1", "s:2"],
    refreshMs: 1_000,
    clock,
    membersFrom: async (addr) => {
      asked.push(addr);
      if (addr === "s:1") throw new RpcError("refused", "UNAVAILABLE");
      return [member("a", "h:1"), member("b", "h:2")];
    },
    onChange: () => changes++,
  });
  discovery.start();
  await settle();
  assert.deepEqual(asked, ["s:1", "s:2"]);
  assert.deepEqual(idsOf(t), ["a", "b"]);
  assert.equal(discovery.error, undefined);
  assert.equal(changes, 1);
  await clock.advance(999);
  assert.equal(asked.length, 2);
  await clock.advance(1);
  assert.deepEqual(asked, ["s:1", "s:2", "s:1", "s:2"]);
  await clock.advance(2_000);
  assert.equal(asked.length, 8);
  discovery.stop();
  assert.equal(clock.pending, 0);
  await clock.advance(5_000);
  assert.equal(asked.length, 8);
});

test("discovery: connected nodes are asked before the seeds; a failed round keeps the reason", async () => {
  const clock = new ManualClock();
  const asked: string[] = [];
  let answer = true;
  let changes = 0;
  const t = table();
  const discovery = new Discovery(t, {
    seeds: ["s:1"],
    refreshMs: 1_000,
    clock,
    membersFrom: async (addr) => {
      asked.push(addr);
      if (!answer) throw new RpcError(`${addr} is down`, "UNAVAILABLE");
      return [member("a", "h:1")];
    },
    onChange: () => changes++,
  });
  discovery.start();
  await settle();
  const a = [...t.values()][0]!;
  a.channel = { goaway: undefined, closed: false, close() {}, whenIdle: () => Promise.resolve() };
  asked.length = 0;
  answer = false;
  changes = 0;
  await discovery.refresh();
  assert.deepEqual(asked, ["h:1", "s:1"]);
  assert.match(discovery.error?.message ?? "", /s:1 is down/);
  assert.equal(changes, 1, "a round that reached no node still wakes the waiters");
  assert.deepEqual(idsOf(t), ["a"], "a failed round forgets no node");
  discovery.stop();
});

test("discovery: a membership view fills the table and every member event refreshes it", () => {
  let members = [member("a", "h:1")];
  const listeners = new Set<(event: MemberEvent) => void>();
  const view: MembershipView = {
    members: () => members,
    onMemberEvent: (listener) => (listeners.add(listener), () => listeners.delete(listener)),
  };
  const t = table();
  const discovery = new Discovery(t, { membership: view, refreshMs: 1_000, clock: new ManualClock(), membersFrom: () => Promise.reject(new Error("not asked")), onChange: () => {} });
  assert.equal(discovery.isStatic, false);
  discovery.start();
  assert.deepEqual(idsOf(t), ["a"]);
  members = [member("b", "h:2")];
  for (const listener of listeners) listener({ type: "join", member: members[0]! });
  assert.deepEqual(idsOf(t), ["b"]);
  discovery.stop();
  assert.equal(listeners.size, 0);
});

test("discovery: static addresses are ready at once and never refreshed", () => {
  const clock = new ManualClock();
  const t = new EndpointTable({ warmupMs: 0, warmupFloor: 0.1, addresses: ["h:1", "h:2"] });
  const discovery = new Discovery(t, { addresses: ["h:1", "h:2"], refreshMs: 1_000, clock, membersFrom: () => Promise.reject(new Error("not asked")), onChange: () => {} });
  assert.equal(discovery.isStatic, true);
  discovery.start();
  assert.deepEqual(t.eligible(undefined, undefined, 0).map((e) => e.addr), ["h:1", "h:2"]);
  assert.equal(clock.pending, 0);
});

test("discovery: when every seed is gone (a rolling restart replaced them all), the live members of the last list are asked", async () => {
  let seedsUp = true;
  const { clock, asked, t, discovery } = seeded(["s:1"], async (addr) => {
    if (addr === "s:1" && seedsUp) return [member("a", "h:1"), member("b", "h:2")];
    if (addr === "h:2") return [member("b", "h:2"), member("c", "h:3")];
    throw new RpcError(`${addr} refused`, "UNAVAILABLE");
  });
  discovery.start();
  await settle();
  assert.deepEqual(idsOf(t), ["a", "b"]);
  seedsUp = false;
  asked.length = 0;
  await clock.advance(1_000);
  assert.deepEqual(asked, ["s:1", "h:1", "h:2"]);
  // a, left out of one node's list, stays for now (OMITTED_LISTS); c is new.
  assert.deepEqual(idsOf(t), ["a", "b", "c"]);
  discovery.stop();
});

test("discovery: addresses are learned across lists, so a list that leaves live members out does not lose them; one that fails to answer is dropped", async () => {
  const lists: Record<string, Member[]> = {
    "s:1": [member("a", "h:1"), member("b", "h:2"), member("c", "h:3")],
    // b's view under load: only itself.
    "h:2": [member("b", "h:2")],
    "h:3": [member("a", "h:1"), member("b", "h:2"), member("c", "h:3")],
  };
  let up = new Set(["s:1", "h:1", "h:2", "h:3"]);
  const { clock, asked, t, discovery } = seeded(["s:1"], async (addr) => {
    if (!up.has(addr)) throw new RpcError(`${addr} refused`, "UNAVAILABLE");
    return lists[addr] ?? lists["h:3"]!;
  });
  discovery.start();
  await settle();
  assert.deepEqual(idsOf(t), ["a", "b", "c"]);
  // The seed and a go; b answers with a list of itself alone.
  up = new Set(["h:2", "h:3"]);
  asked.length = 0;
  await clock.advance(1_000);
  assert.deepEqual(asked, ["s:1", "h:1", "h:2"]);
  // One partial list retires no one (OMITTED_LISTS).
  assert.deepEqual(idsOf(t), ["a", "b", "c"]);
  // Then b goes too: c, learned from the first list, is still asked, and its whole list is taken.
  up = new Set(["h:3"]);
  asked.length = 0;
  await clock.advance(1_000);
  assert.deepEqual(asked, ["s:1", "h:2", "h:1", "h:3"], "h:1 is still asked (the table holds a), then h:3 answers");
  assert.deepEqual(idsOf(t), ["a", "b", "c"]);
  discovery.stop();
});

test("discovery: a list that shares no member with the table (a seed's address reused by another cluster's node) is passed over for a related one, and believed only after 5 in a row", async () => {
  let ours = true;
  const { clock, asked, t, discovery } = seeded(["s:1", "s:2"], async (addr) => {
    if (addr === "s:1" && asked.length === 1) return [member("a", "h:1"), member("b", "h:2")];
    // s:1's port now belongs to a node of another cluster.
    if (addr === "s:1") return [member("x", "s:1"), member("y", "h:9")];
    if (ours && (addr === "h:1" || addr === "h:2")) return [member("a", "h:1"), member("b", "h:2")];
    throw new RpcError(`${addr} refused`, "UNAVAILABLE");
  });
  discovery.start();
  await settle();
  assert.deepEqual(idsOf(t), ["a", "b"]);
  asked.length = 1;
  await clock.advance(1_000);
  assert.deepEqual(asked.slice(1), ["s:1", "s:2", "h:1"], "the stranger's list was passed over; h:1, learned, answered");
  assert.deepEqual(idsOf(t), ["a", "b"]);
  // Our cluster is gone for good: after 5 stranger lists in a row, the new one is believed.
  ours = false;
  for (let i = 0; i < 4; i++) await clock.advance(1_000);
  assert.deepEqual(idsOf(t), ["a", "b"]);
  await clock.advance(1_000);
  assert.deepEqual(idsOf(t), ["a", "b", "x", "y"], "believed; a and b left out once");
  for (let i = 0; i < 2; i++) await clock.advance(1_000);
  assert.deepEqual(idsOf(t), ["x", "y"], "a and b left out of 3 lists in a row, not connected: retired");
  discovery.stop();
});

test("discovery: refreshes that reach no node forget no learned address (a client must not lose the cluster to a moment of starvation); the first that answers again brings it back", async () => {
  let up = new Set(["s:1", "h:1", "h:2"]);
  const { clock, asked, t, discovery } = seeded(["s:1"], async (addr) => {
    if (!up.has(addr)) throw new RpcError(`${addr} refused`, "UNAVAILABLE");
    return addr === "s:1" ? [member("a", "h:1"), member("b", "h:2")] : [member("a", "h:1"), member("b", "h:2"), member("c", "h:3")];
  });
  discovery.start();
  await settle();
  assert.deepEqual(idsOf(t), ["a", "b"]);
  // Nothing answers for three refreshes (the seed is gone for good).
  up = new Set();
  for (let i = 0; i < 3; i++) await clock.advance(1_000);
  assert.deepEqual(asked.slice(-3), ["s:1", "h:1", "h:2"]);
  // Then h:2 answers again: still asked, and its list is taken.
  up = new Set(["h:2"]);
  asked.length = 0;
  await clock.advance(1_000);
  assert.deepEqual(asked, ["s:1", "h:1", "h:2"]);
  assert.deepEqual(idsOf(t), ["a", "b", "c"]);
  // h:1 failed and the list named it alive again: kept; asked after the ones answering, h:3 first.
  asked.length = 0;
  up = new Set();
  await clock.advance(1_000);
  assert.deepEqual(asked, ["s:1", "h:1", "h:2", "h:3"]);
  discovery.stop();
});

test("discovery: an address a list leaves out stays (a partial view); one a list says left goes at once; one that failed 5 refreshes in a row goes once its node is out of the table", async () => {
  const { net, clock, asked, t, discovery } = switchboard([member("a", "h:1"), member("b", "h:2"), member("c", "h:3")], ["s:1", "h:2"]);
  discovery.start();
  await settle();
  // The seed goes; h:2 answers naming only b, and c as left: c and h:3 go, a and h:1 stay.
  net.up = new Set(["h:2"]);
  net.list = [member("b", "h:2"), { ...member("c", "h:3"), status: "left" }];
  await clock.advance(1_000);
  assert.deepEqual(idsOf(t), ["a", "b"]);
  // Nothing answers for 6 refreshes: nothing is forgotten, h:1 is asked every time.
  net.up = new Set();
  asked.length = 0;
  for (let i = 0; i < 6; i++) await clock.advance(1_000);
  assert.equal(asked.filter((addr) => addr === "h:1").length, 6);
  assert.ok(!asked.includes("h:3"), "h:3 was listed left");
  // h:2 answers again, lists in a row leaving a out: a (not connected) is retired after 3.
  net.up = new Set(["h:2"]);
  for (let i = 0; i < 2; i++) await clock.advance(1_000);
  assert.deepEqual(idsOf(t), ["b"]);
  // h:1, no longer held by the table, fails 5 refreshes in a row; the next list taken forgets it.
  net.up = new Set();
  for (let i = 0; i < 5; i++) await clock.advance(1_000);
  net.up = new Set(["h:2"]);
  await clock.advance(1_000);
  net.up = new Set();
  asked.length = 0;
  await clock.advance(1_000);
  assert.deepEqual(asked, ["s:1", "h:2"]);
  discovery.stop();
});

test("discovery: connected nodes take turns to be asked first, so one whose view is partial is not the only one heard", async () => {
  const lists: Record<string, Member[]> = {
    // a started and went ready before its join was answered: it knows itself only.
    "h:1": [member("a", "h:1")],
    "h:2": [member("a", "h:1"), member("b", "h:2"), member("c", "h:3")],
  };
  const { clock, asked, t, discovery } = seeded(["s:1"], async (addr) => lists[addr] ?? lists["h:2"]!);
  discovery.start();
  await settle();
  const open = { goaway: undefined, closed: false, close() {}, whenIdle: () => Promise.resolve() };
  for (const e of t.values()) if (e.id !== "c") e.channel = open;
  asked.length = 0;
  for (let i = 0; i < 4; i++) await clock.advance(1_000);
  assert.deepEqual(asked.slice(0, 4).sort(), ["h:1", "h:1", "h:2", "h:2"], "a and b asked first in turn");
  assert.deepEqual(idsOf(t).filter((id) => id !== "c").sort(), ["a", "b"]);
  discovery.stop();
});

test("discovery: an empty member list (a node outside any membership) is no answer: the next node is asked, and however many come, nothing is retired", async () => {
  let empty = new Set<string>();
  const { clock, asked, t, discovery } = seeded(["s:1", "s:2"], async (addr) => {
    return empty.has(addr) ? [] : [member("a", "h:1"), member("b", "h:2")];
  });
  discovery.start();
  await settle();
  empty = new Set(["s:1"]);
  asked.length = 0;
  await clock.advance(1_000);
  assert.deepEqual(asked, ["s:1", "s:2"]);
  // Every node answers empty, again and again (a stranger's list would be believed after 5).
  empty = new Set(["s:1", "s:2", "h:1", "h:2"]);
  for (let i = 0; i < 8; i++) await clock.advance(1_000);
  assert.deepEqual(idsOf(t), ["a", "b"]);
  assert.match(discovery.error?.message ?? "", /empty member list/);
  discovery.stop();
});

test("discovery: one refresh at a time: ticks while a slow one is under way join it", async () => {
  const clock = new ManualClock();
  let calls = 0;
  let release: (() => void) | undefined;
  const t = table();
  const discovery = new Discovery(t, {
    seeds: ["s:1"],
    refreshMs: 100,
    clock,
    membersFrom: async () => {
      calls++;
      await new Promise<void>((resolve) => (release = resolve));
      return [member("a", "h:1")];
    },
    onChange: () => {},
  });
  discovery.start();
  await settle();
  for (let i = 0; i < 5; i++) await clock.advance(100);
  assert.equal(calls, 1, "five ticks during one slow answer started no other");
  release!();
  await settle();
  assert.deepEqual(idsOf(t), ["a"]);
  await clock.advance(100);
  assert.equal(calls, 2);
  release!();
  discovery.stop();
});

test("discovery: an answer that arrives after stop() changes nothing", async () => {
  let release: ((members: Member[]) => void) | undefined;
  let changes = 0;
  const t = table();
  const discovery = new Discovery(t, {
    seeds: ["s:1"],
    refreshMs: 1_000,
    clock: new ManualClock(),
    membersFrom: () => new Promise<Member[]>((resolve) => (release = resolve)),
    onChange: () => changes++,
  });
  discovery.start();
  discovery.stop();
  release!([member("a", "h:1")]);
  await settle();
  assert.deepEqual(idsOf(t), []);
  assert.equal(changes, 0);
});

test("discovery: an address whose node the client's own connection shows answering stays learned when one list says it left", async () => {
  const { net, clock, asked, t, discovery } = switchboard([member("a", "h:1"), member("b", "h:2")], ["s:1", "h:2"]);
  discovery.start();
  await settle();
  // a answers this client on an open connection; a starved b lists it as left.
  const a = [...t.values()].find((e) => e.id === "a")!;
  a.channel = { goaway: undefined, closed: false, close() {}, whenIdle: () => Promise.resolve() };
  a.answeredAt = clock.now();
  net.up = new Set(["h:2"]);
  net.list = [{ ...member("a", "h:1"), status: "left" }, member("b", "h:2")];
  // (a's connection is asked first; it is down now, so b's list is taken.)
  await clock.advance(1_000);
  assert.deepEqual(idsOf(t), ["a", "b"], "the table keeps a");
  a.channel = undefined;
  net.up = new Set(["h:1"]);
  net.list = [member("a", "h:1"), member("b", "h:2")];
  asked.length = 0;
  await clock.advance(1_000);
  assert.deepEqual(asked, ["s:1", "h:2", "h:1"], "h:1 is still asked");
  discovery.stop();
});
