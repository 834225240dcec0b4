import { test } from "node:test";
import assert from "node:assert/strict";
import { Membership } from "../../../src/membership/membership.ts";
import { MAX_INCARNATION, MAX_INCARNATION_STEP, MAX_UPDATES_PER_MESSAGE } from "../../../src/membership/schema.ts";
import type { Clock, SwimMessage, SwimTransport, TimerHandle, Update } from "../../../src/membership/types.ts";

const meta = { state: "ready", services: ["demo"], version: "0.1.0", http: null };

/** A virtual clock and a transport that records what is sent, for one membership. */
function harness(config: Record<string, number> = {}, options: { acks?: boolean } = {}) {
  let now = 1_000_000;
  const timers: { at: number; fn: () => void; live: boolean }[] = [];
  const clock: Clock = {
    now: () => now,
    setTimer(ms, fn): TimerHandle {
      const timer = { at: now + ms, fn, live: true };
      timers.push(timer);
      return { cancel: () => (timer.live = false) };
    },
  };
  const sent: { to: string; message: SwimMessage }[] = [];
  const requests: { to: string; message: SwimMessage; timeoutMs: number }[] = [];
  const forgotten: string[] = [];
  const transport: SwimTransport = {
    // Nobody answers: every request times out; with `acks`, every ping is acked a millisecond later.
    request: (to, message, timeoutMs, onReply) => {
      requests.push({ to, message, timeoutMs });
      if (options.acks && message.t === "ping") clock.setTimer(1, () => onReply({ t: "ack", from: message.target }));
      else clock.setTimer(timeoutMs, () => onReply(undefined));
    },
    send: (to, message) => sent.push({ to, message }),
    forget: (to) => forgotten.push(to),
  };
  const errors: string[] = [];
  const events: string[] = [];
  let throwOnEvent = false;
  const m = new Membership({
    id: "a",
    addr: "127.0.0.1:7000",
    meta,
    clock,
    transport,
    config,
    random: () => 0.5,
    onEvent: (e) => {
      events.push(`${e.type} ${e.member.id}`);
      if (throwOnEvent) throw new Error("listener failed");
    },
    onError: (error) => errors.push(String(error)),
  });
  const advance = (ms: number) => {
    const until = now + ms;
    for (;;) {
      const due = timers.filter((t) => t.live && t.at <= until).sort((x, y) => x.at - y.at)[0];
      if (!due) break;
      due.live = false;
      now = Math.max(now, due.at);
      due.fn();
    }
    now = until;
  };
  const gossip = (...u: Update[]) => m.handle({ t: "gossip", from: "x", u }, () => {});
  /** A message from the member `from` itself. */
  const said = (from: string, ...u: Update[]) => m.handle({ t: "gossip", from, u }, () => {});
  return { m, sent, requests, forgotten, errors, events, advance, gossip, said, throwOnEvent: () => (throwOnEvent = true) };
}

const alive = (id: string, inc = 10, addr = `127.0.0.1:${7000 + Number(id.slice(1) || 1)}`): Update => ({ id, addr, inc, status: "alive", meta });

test("gossip cannot move a live member to another address, whatever its incarnation", () => {
  const h = harness();
  h.m.start();
  h.gossip(alive("b1", 10, "127.0.0.1:7001"));
  h.gossip({ ...alive("b1", 11 + MAX_INCARNATION_STEP - 2, "127.0.0.1:7790") });
  assert.equal(h.m.get("b1")?.addr, "127.0.0.1:7001");
  assert.equal(h.m.get("b1")?.incarnation, 10);
  assert.equal(h.m.stats.addressConflicts, 1);
  h.gossip({ ...alive("b1", 12, "127.0.0.1:7790") });
  assert.equal(h.errors.length, 1, "an address conflict is reported once per member");
  h.m.stop();
});

test("a member we suspect that tells us itself it now lives at another address (a restart whose leave we missed) is taken there at once; a third party's word, or a member we hold alive, is not", () => {
  const h = harness();
  h.m.start();
  h.gossip(alive("b1", 10, "127.0.0.1:7001"));
  // A third party says b1 moved: refused, whether we hold b1 alive or suspect.
  h.said("x", alive("b1", 11, "127.0.0.1:7790"));
  assert.equal(h.m.get("b1")?.addr, "127.0.0.1:7001");
  // b1 itself says so while we hold it alive: refused too (a live member is not moved by a claim).
  h.said("b1", alive("b1", 11, "127.0.0.1:7790"));
  assert.equal(h.m.get("b1")?.addr, "127.0.0.1:7001");
  h.said("c1", { ...alive("b1", 10, "127.0.0.1:7001"), status: "suspect", by: "c1" });
  assert.equal(h.m.get("b1")?.status, "suspect");
  h.said("x", alive("b1", 11, "127.0.0.1:7790"));
  assert.equal(h.m.get("b1")?.addr, "127.0.0.1:7001", "a third party's word does not move a suspect either");
  // Suspected, it tells us itself (its join or its gossip): alive at the new address.
  h.said("b1", alive("b1", 11, "127.0.0.1:7790"));
  assert.deepEqual([h.m.get("b1")?.status, h.m.get("b1")?.addr], ["alive", "127.0.0.1:7790"]);
  assert.ok(h.forgotten.includes("127.0.0.1:7001"), "the old address's pooled connection is let go");
  h.m.stop();
});

test("one update cannot raise a live member's incarnation, or ours, by more than MAX_INCARNATION_STEP: no pinning at the top", () => {
  const h = harness();
  h.m.start();
  h.gossip(alive("b1", 10));
  // Forged news at the top of the range about a live member: ignored and counted, whatever it says.
  h.gossip({ ...alive("b1", MAX_INCARNATION + 1), meta: { ...meta, state: "draining" } });
  h.gossip({ ...alive("b1", MAX_INCARNATION), status: "dead" });
  assert.equal(h.m.get("b1")?.incarnation, 10);
  assert.equal(h.m.get("b1")?.status, "alive");
  assert.equal(h.m.stats.incarnationJumps, 2);
  // An accusation about ourselves far above our incarnation is ignored too, so we are never pushed to the top.
  const own = h.m.get("a")!.incarnation;
  h.gossip({ ...alive("a", MAX_INCARNATION), status: "suspect", by: "x" });
  assert.equal(h.m.get("a")?.incarnation, own);
  // Honest steps still count: b1 suspected one above, then refuting.
  h.gossip({ ...alive("b1", 11), status: "dead" });
  assert.equal(h.m.get("b1")?.status, "suspect");
  h.gossip(alive("b1", 12));
  assert.equal(h.m.get("b1")?.status, "alive");
  h.m.stop();
});

test("a member that died may come back at a new address (a restart)", () => {
  const h = harness();
  h.m.start();
  h.gossip(alive("b1", 10, "127.0.0.1:7001"));
  h.said("b1", { ...alive("b1", 10), status: "left" });
  h.gossip(alive("b1", 11, "127.0.0.1:7801"));
  assert.equal(h.m.get("b1")?.addr, "127.0.0.1:7801");
  assert.equal(h.m.get("b1")?.status, "alive");
  h.m.stop();
});

test("gossip that a live member is dead only makes it suspect, so it can refute", () => {
  const h = harness();
  h.m.start();
  h.gossip(alive("b1", 10));
  h.gossip({ ...alive("b1", 10 + MAX_INCARNATION_STEP), status: "dead" });
  assert.equal(h.m.get("b1")?.status, "suspect");
  // b refutes one above the accusation: it is alive again.
  h.gossip(alive("b1", 11 + MAX_INCARNATION_STEP));
  assert.equal(h.m.get("b1")?.status, "alive");
  h.m.stop();
});

test("news of new members past maxMembers is dropped and counted", () => {
  const h = harness({ maxMembers: 5 });
  h.m.start();
  const state = Array.from({ length: 20 }, (_, i) => alive(`n${i}`, 1, `127.0.0.1:${8000 + i}`));
  h.m.handle({ t: "sync", from: "x", state, push: true }, () => {});
  assert.equal(h.m.list().length, 5);
  assert.equal(h.m.stats.overCap, 16);
  h.m.stop();
});

test("the state is answered in pages of at most MAX_UPDATES_PER_MESSAGE, the rest pushed to the asker", () => {
  const h = harness();
  h.m.start();
  for (let page = 0; page < 4; page++) {
    const state = Array.from({ length: 250 }, (_, i) => alive(`n${page * 250 + i}`, 1, `10.0.${page}.${i}:7000`));
    h.m.handle({ t: "sync", from: "x", state, push: true }, () => {});
  }
  h.gossip(alive("j1", 1, "127.0.0.1:7999"));
  let answer: SwimMessage | undefined;
  h.m.handle({ t: "sync", from: "j1", join: true, state: [alive("j1", 1, "127.0.0.1:7999")] }, (a) => (answer = a));
  assert.equal(answer?.t, "sync");
  const first = (answer as { state: Update[] }).state;
  assert.equal(first.length, MAX_UPDATES_PER_MESSAGE);
  assert.equal(first[0]!.id, "a", "self comes first");
  const pushes = h.sent.filter((s) => s.to === "127.0.0.1:7999" && s.message.t === "sync");
  const total = first.length + pushes.reduce((n, p) => n + (p.message as { state: Update[] }).state.length, 0);
  assert.equal(total, h.m.list().length);
  assert.ok(pushes.every((p) => (p.message as { state: Update[] }).state.length <= MAX_UPDATES_PER_MESSAGE));
  h.m.stop();
});

test("a ping-req for an unknown member or a foreign address pings only the known member's address", () => {
  const h = harness();
  h.m.start();
  h.gossip(alive("b1", 10, "127.0.0.1:7001"));
  const answers: string[] = [];
  h.m.handle({ t: "ping-req", from: "x", target: "nobody", addr: "10.9.9.9:22" }, (a) => answers.push(a.t));
  h.m.handle({ t: "ping-req", from: "x", target: "b1", addr: "10.9.9.9:22" }, (a) => answers.push(a.t));
  assert.deepEqual(answers, ["nack"]);
  const pings = h.requests.filter((r) => r.message.t === "ping" && (r.message as { target: string }).target === "b1");
  assert.deepEqual(pings.map((p) => p.to), ["127.0.0.1:7001"]);
  assert.ok(!h.requests.some((r) => r.to === "10.9.9.9:22"));
  h.m.stop();
});

test("a throwing event listener stalls neither gossip nor probes nor suspicion timers", () => {
  const h = harness({ probeIntervalMs: 100, probeTimeoutMs: 50, gossipIntervalMs: 50, suspicionMult: 1, indirectChecks: 0 });
  h.m.start();
  h.throwOnEvent();
  h.gossip(alive("b1", 10, "127.0.0.1:7001"));
  assert.ok(h.errors.length >= 1);
  // Requests go unanswered: b1 gets probed, suspected and declared dead, listener throwing all along.
  h.advance(5_000);
  assert.equal(h.m.get("b1")?.status, "dead");
  const probes = h.requests.filter((r) => r.message.t === "ping").length;
  assert.ok(probes >= 1, `${probes} probes`);
  h.m.stop();
});

test("a live member is not evicted by a third party's word that it left, or by a dead verdict about a suspect", () => {
  const h = harness();
  h.m.start();
  h.gossip(alive("b1", 10, "127.0.0.1:7001"));
  // Anyone may claim b1 left: it is only suspected, so it can refute; it never moves on the strength of it.
  h.gossip({ ...alive("b1", 10), status: "left" });
  assert.equal(h.m.get("b1")?.status, "suspect");
  h.gossip({ ...alive("b1", 10), status: "left" }, alive("b1", 11, "127.0.0.1:7790"));
  assert.equal(h.m.get("b1")?.addr, "127.0.0.1:7001");
  // A dead verdict about a suspect only shortens the suspicion.
  h.gossip({ ...alive("b1", 10), status: "dead" });
  assert.equal(h.m.get("b1")?.status, "suspect");
  // b1's own refutation at its own address makes it alive again.
  h.gossip(alive("b1", 12, "127.0.0.1:7001"));
  assert.equal(h.m.get("b1")?.status, "alive");
  // b1 saying it left is taken at once.
  h.said("b1", { ...alive("b1", 12), status: "left" });
  assert.equal(h.m.get("b1")?.status, "left");
  h.m.stop();
});

test("a dead verdict about a suspect counts as one more confirmation: it never cuts the suspicion short of the shortest timeout", () => {
  // Five members: Lifeguard's suspicion starts at 6 x 4 s and shrinks with confirmations (k = 2).
  const h = harness({}, { acks: true });
  h.m.start();
  for (let i = 1; i <= 4; i++) h.gossip(alive(`b${i}`, 10));
  h.said("c", { ...alive("b1", 10), status: "suspect", by: "c" });
  assert.equal(h.m.get("b1")?.status, "suspect");
  // Five seconds on, the isolated c's stale verdict arrives: b1 has seconds left to refute, not zero.
  h.advance(5_000);
  h.said("c2", { ...alive("b1", 10), status: "dead" });
  h.advance(1_000);
  assert.equal(h.m.get("b1")?.status, "suspect");
  h.gossip(alive("b1", 11));
  assert.equal(h.m.get("b1")?.status, "alive");
  assert.ok(!h.events.includes("dead b1"), h.events.join(", "));
  h.m.stop();
});

test("stale news a millisecond apart, suspect then dead, leaves a fresh suspicion its whole timeout", () => {
  const h = harness({}, { acks: true });
  h.m.start();
  h.gossip(alive("b1", 10));
  h.said("c", { ...alive("b1", 10), status: "suspect", by: "c" });
  h.advance(1);
  h.said("c", { ...alive("b1", 10), status: "dead" });
  // Three members or fewer: the shortest timeout, 4 x 1 s probe interval.
  h.advance(3_900);
  assert.equal(h.m.get("b1")?.status, "suspect");
  h.gossip(alive("b1", 11));
  assert.equal(h.m.get("b1")?.status, "alive");
  h.m.stop();
});

test("a member declared dead has its pooled connection closed, which may be stuck in retransmission back-off", () => {
  const h = harness({ probeIntervalMs: 100, probeTimeoutMs: 50, gossipIntervalMs: 50, suspicionMult: 1, indirectChecks: 0 });
  h.m.start();
  h.gossip(alive("b1", 10, "127.0.0.1:7001"));
  h.advance(5_000);
  assert.equal(h.m.get("b1")?.status, "dead");
  assert.deepEqual(h.forgotten, ["127.0.0.1:7001"]);
  h.m.stop();
});

test("a helper asked to probe gives up and nacks within 80% of the probe timeout, before the asker stops waiting", () => {
  const h = harness({ probeTimeoutMs: 500 });
  h.m.start();
  h.gossip(alive("b1", 10, "127.0.0.1:7001"));
  const answers: string[] = [];
  h.m.handle({ t: "ping-req", from: "x", target: "b1", addr: "127.0.0.1:7001" }, (a) => answers.push(a.t));
  const ping = h.requests.find((r) => r.message.t === "ping" && (r.message as { target: string }).target === "b1");
  assert.equal(ping?.timeoutMs, 400);
  h.advance(400);
  assert.deepEqual(answers, ["nack"]);
  h.m.stop();
});

test("a member we suspect that talks to us hears of the suspicion at once, at most once a probe interval, so it can refute", () => {
  const h = harness({}, { acks: true });
  h.m.start();
  h.gossip(alive("b1", 10, "127.0.0.1:7001"), alive("c", 10, "127.0.0.1:7009"));
  h.said("c", { ...alive("b1", 10), status: "suspect", by: "c" });
  const toB1 = () => h.sent.filter((s) => s.to === "127.0.0.1:7001" && s.message.t === "gossip" && s.message.u.some((u) => u.id === "b1" && u.status === "suspect"));
  const before = toB1().length;
  h.said("b1", alive("c", 10, "127.0.0.1:7009"));
  h.said("b1", alive("c", 10, "127.0.0.1:7009"));
  assert.equal(toB1().length, before + 1);
  // The telling (or the refutation it brought) may be lost: a probe interval later it is told again.
  h.advance(1_000);
  h.said("b1", alive("c", 10, "127.0.0.1:7009"));
  assert.ok(toB1().length >= before + 2);
  // Its refutation ends the suspicion.
  h.said("b1", alive("b1", 11, "127.0.0.1:7001"));
  assert.equal(h.m.get("b1")?.status, "alive");
  h.m.stop();
});

test("a member suspected by others lately holds its own verdicts: it is likely the lossy one, and a refutation may still be on its way", () => {
  const h = harness({}, { acks: true });
  h.m.start();
  h.gossip(alive("b1", 10));
  h.gossip(alive("c1", 10, "127.0.0.1:7003"));
  // c1 suspects us (we refute), and we suspect b1: on a healthy node b1 would be dead 4 s later.
  h.said("c1", { ...alive("a", h.m.get("a")!.incarnation), status: "suspect", by: "c1" });
  h.said("c1", { ...alive("b1", 10), status: "suspect", by: "c1" });
  h.advance(4_500);
  assert.equal(h.m.get("b1")?.status, "suspect", "held while we were accused lately");
  // b1's refutation arrives late, through our loss: it is alive, never declared dead.
  h.gossip(alive("b1", 11));
  assert.equal(h.m.get("b1")?.status, "alive");
  assert.ok(!h.events.includes("dead b1"));
  // A member that really died is still judged, once the longest suspicion has passed.
  h.said("c1", { ...alive("b1", 11), status: "suspect", by: "c1" });
  h.advance(60_000);
  assert.equal(h.m.get("b1")?.status, "dead");
  h.m.stop();
});

test("a suspect that has talked to us since we suspected it is not declared dead while its refutation may still be on its way", () => {
  const h = harness({}, { acks: true });
  h.m.start();
  h.gossip(alive("b1", 10));
  h.gossip(alive("c1", 10, "127.0.0.1:7003"));
  h.said("c1", { ...alive("b1", 10), status: "suspect", by: "c1" });
  // b1 talks to us (its gossip got through our lossy link; its refutation did not yet).
  h.said("b1", alive("c1", 10, "127.0.0.1:7003"));
  h.advance(4_500);
  assert.equal(h.m.get("b1")?.status, "suspect", "held: it lives");
  h.gossip(alive("b1", 11));
  assert.equal(h.m.get("b1")?.status, "alive");
  assert.ok(!h.events.includes("dead b1"));
  h.m.stop();
});

test("a member we hold dead that talks to us hears of its death at once, refutes, and is alive again", () => {
  const h = harness({ probeIntervalMs: 100, probeTimeoutMs: 50, gossipIntervalMs: 50, suspicionMult: 1, indirectChecks: 0 });
  h.m.start();
  h.gossip(alive("b1", 10, "127.0.0.1:7001"));
  h.advance(5_000);
  assert.equal(h.m.get("b1")?.status, "dead");
  h.sent.length = 0;
  // The partition heals: b1 talks to us. We tell it, once, what we hold.
  h.said("b1", alive("c1", 3, "127.0.0.1:7003"));
  h.said("b1", alive("c1", 3, "127.0.0.1:7003"));
  const told = h.sent.filter((s) => s.to === "127.0.0.1:7001" && s.message.t === "gossip" && s.message.u?.some((u) => u.id === "b1" && u.status === "dead"));
  assert.equal(told.length, 1);
  // b1 refutes above the verdict: alive again.
  h.said("b1", alive("b1", 11, "127.0.0.1:7001"));
  assert.equal(h.m.get("b1")?.status, "alive");
  h.m.stop();
});


test("a member whose helpers' nacks go missing (its own link is the lossy one) stretches the time from suspicion to verdict by its health score", () => {
  // Nothing answers us: not the probe, not the helper we ask to probe (no nack either).
  const h = harness();
  h.m.start();
  h.gossip(alive("b1", 10));
  h.gossip(alive("c1", 10, "127.0.0.1:7003"));
  let suspectedAt: number | undefined;
  let deadAt: number | undefined;
  for (let t = 0; t < 120_000 && deadAt === undefined; t += 100) {
    h.advance(100);
    const b1 = h.m.get("b1")?.status;
    if (b1 === "suspect" && suspectedAt === undefined) suspectedAt = t;
    if (h.events.some((e) => e.startsWith("dead "))) deadAt = t;
  }
  assert.ok(suspectedAt !== undefined, "a member that answers nothing is suspected");
  assert.ok(h.m.healthScore > 0, "missed nacks raised our score");
  // A healthy member (score 0) judges 4 s after suspicion (3 members: 4 x 1 s); we wait at least twice
  // that, and at most (8 + 1) x 4 s plus one stretched re-judging interval (9 s at score 8): seen from a
  // survivor whose peers all died, silence is the same, and it must still judge them.
  const took = deadAt === undefined ? Infinity : deadAt - suspectedAt;
  assert.ok(took >= 8_000 && took <= 9 * 4_000 + 9_000 + 500, `verdict ${took} ms after suspicion`);
  h.m.stop();
});
