import { test } from "node:test";
import assert from "node:assert/strict";
import { StateSync, statePages, type SyncView } from "../../../src/membership/sync.ts";
import type { SwimMessage, SwimTransport, Update } from "../../../src/membership/types.ts";
import { ManualClock } from "../../helpers/clock.ts";

const member = (id: string): Update => ({ id, addr: `${id}:7000`, inc: 1, status: "alive", meta: { state: "ready", services: [], version: "0", http: null } });

test("statePages cuts the view into pages of at most the page size, in order", () => {
  const table: [number, number, number[]][] = [
    // members, page size, page lengths
    [1, 3, [1]],
    [3, 3, [3]],
    [4, 3, [3, 1]],
    [7, 3, [3, 3, 1]],
  ];
  for (const [count, size, lengths] of table) {
    const view = Array.from({ length: count }, (_, i) => member(`m${i}`));
    const pages = statePages(view, size);
    assert.deepEqual(pages.map((p) => p.length), lengths, `${count} members in pages of ${size}`);
    assert.deepEqual(pages.flat(), view);
  }
});

/** A state exchange over a recording transport, for a view of `count` members known at their addresses. */
function exchange(count: number, digest = 42) {
  const sent: [string, SwimMessage][] = [];
  const merged: [Update[], string][] = [];
  const view: SyncView = {
    id: "m0",
    isRunning: () => true,
    updates: () => Array.from({ length: count }, (_, i) => member(`m${i}`)),
    digest: () => digest,
    merge: (updates, from) => merged.push([updates, from]),
    addressOf: (id) => (id === "m0" ? undefined : `${id}:7000`),
    guard: (_where, fn) => fn(),
  };
  const transport: SwimTransport = { request: () => {}, send: (to, message) => sent.push([to, message]) };
  const clock = { now: () => 0, setTimer: () => ({ cancel() {} }) };
  return { sync: new StateSync(view, transport, clock, 1_000, 2), sent, merged };
}

test("a sync with our digest is answered same, and nothing is sent", () => {
  const { sync, sent } = exchange(5);
  const replies: SwimMessage[] = [];
  sync.answer({ t: "sync", from: "m1", digest: 42 }, (r) => replies.push(r));
  assert.deepEqual(replies, [{ t: "sync", from: "m0", same: true }]);
  assert.deepEqual(sent, []);
});

test("a sync with another digest is answered with the first page; the rest are pushed to the asker", () => {
  const { sync, sent } = exchange(5);
  const replies: SwimMessage[] = [];
  sync.answer({ t: "sync", from: "m1", digest: 7 }, (r) => replies.push(r));
  assert.deepEqual(replies, [{ t: "sync", from: "m0", state: [member("m0"), member("m1")] }]);
  assert.deepEqual(sent, [
    ["m1:7000", { t: "sync", from: "m0", state: [member("m2"), member("m3")], push: true }],
    ["m1:7000", { t: "sync", from: "m0", state: [member("m4")], push: true }],
  ]);
});

test("a pushed state is merged and not answered", () => {
  const { sync, merged } = exchange(1);
  const replies: SwimMessage[] = [];
  sync.answer({ t: "sync", from: "m1", state: [member("m1")], push: true }, (r) => replies.push(r));
  assert.deepEqual(merged, [[[member("m1")], "m1"]]);
  assert.deepEqual(replies, []);
});

test("with no seeds a member has joined at once", () => {
  const { sync } = exchange(1);
  sync.start([]);
  assert.equal(sync.hasJoined, true);
  assert.equal(sync.hasSeeds, false);
});

/** The view of a member that knows only itself, as when it joins or is cut off. */
function loneView(): SyncView {
  return { id: "m0", isRunning: () => true, updates: () => [member("m0")], digest: () => 1, merge: () => {}, addressOf: () => undefined, guard: (_where, fn) => fn() };
}

test("a member reaching for unanswering seeds keeps one join going: rejoin (each reconnect interval while alone) does not start another", async () => {
  const clock = new ManualClock();
  const asked: string[] = [];
  const answers: ((answer: SwimMessage | undefined) => void)[] = [];
  const view = loneView();
  const transport: SwimTransport = { request: (to, _message, _timeoutMs, onAnswer) => (asked.push(to), answers.push(onAnswer)), send: () => {} };
  const sync = new StateSync(view, transport, clock, 1_000, 2);
  sync.start(["s:1"]);
  assert.deepEqual(asked, ["s:1"]);
  // No answer (timed out); three reconnect ticks come while the retry waits and after it.
  answers.shift()!(undefined);
  sync.rejoin();
  sync.rejoin();
  assert.equal(asked.length, 1, "the retry already scheduled is the only one");
  await clock.advance(1_000);
  assert.equal(asked.length, 2);
  sync.rejoin();
  assert.equal(asked.length, 2, "a join round under way is not doubled");
  // The seed answers: joined; a later rejoin (alone again) starts a fresh round.
  answers.shift()!({ t: "sync", from: "s", state: [member("s")] });
  assert.equal(sync.hasJoined, true);
  await clock.advance(5_000);
  assert.equal(asked.length, 2, "no retry after joining");
  sync.rejoin();
  assert.equal(asked.length, 3);
});

test("a member that joined through one seed while another still owes an answer can rejoin at once when it is alone again", () => {
  const clock = new ManualClock();
  const asked: string[] = [];
  const answers = new Map<string, (answer: SwimMessage | undefined) => void>();
  const view = loneView();
  const transport: SwimTransport = { request: (to, _message, _timeoutMs, onAnswer) => (asked.push(to), answers.set(`${to}#${asked.length}`, onAnswer)), send: () => {} };
  const sync = new StateSync(view, transport, clock, 1_000, 2);
  sync.start(["s:1", "s:2"]);
  answers.get("s:1#1")!({ t: "sync", from: "s1", state: [member("s1")] });
  assert.equal(sync.hasJoined, true);
  // s:2 (a vanished host) has not answered yet; we are alone again.
  sync.rejoin();
  assert.deepEqual(asked, ["s:1", "s:2", "s:1", "s:2"]);
  // The first round's late timeout schedules nothing: the second round owns the retrying.
  answers.get("s:2#2")!(undefined);
  answers.get("s:1#3")!(undefined);
  answers.get("s:2#4")!(undefined);
  assert.equal(clock.pending, 1, "one retry, not two");
});
