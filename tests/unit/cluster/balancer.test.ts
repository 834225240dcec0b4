import { test } from "node:test";
import assert from "node:assert/strict";
import { pickTwoChoices, warmupWeight } from "../../../src/cluster/balancer.ts";
import { seededRandom } from "../../sim/sim.ts";

test("warm-up weight rises linearly from the floor to 1 over the window", () => {
  assert.equal(warmupWeight(1_000, 1_000, 10_000, 0.1), 0.1);
  assert.ok(Math.abs(warmupWeight(1_000, 6_000, 10_000, 0.1) - 0.55) < 1e-9);
  assert.equal(warmupWeight(1_000, 11_000, 10_000, 0.1), 1);
  assert.equal(warmupWeight(1_000, 99_000, 10_000, 0.1), 1);
  assert.equal(warmupWeight(1_000, 1_000, 0, 0.1), 1);
});

test("with nothing in flight, a node's share is its weight over the sum of weights", () => {
  const nodes = [
    { id: "a", inflight: 0, readySince: 0, w: 1 },
    { id: "b", inflight: 0, readySince: 0, w: 1 },
    { id: "c", inflight: 0, readySince: 0, w: 0.25 },
  ];
  const random = seededRandom(3);
  const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
  for (let i = 0; i < 60_000; i++) counts[pickTwoChoices(nodes, (n) => n.w, random)!.id]!++;
  const share = counts.c! / 60_000;
  assert.ok(Math.abs(share - 0.25 / 2.25) < 0.01, `share ${share.toFixed(3)} vs ${(0.25 / 2.25).toFixed(3)}`);
});

test("under load the node with fewer calls in flight per unit of weight wins", () => {
  const busy = { id: "busy", inflight: 10, readySince: 0 };
  const idle = { id: "idle", inflight: 1, readySince: 0 };
  const random = seededRandom(4);
  for (let i = 0; i < 100; i++) assert.equal(pickTwoChoices([busy, idle], () => 1, random)!.id, "idle");
  assert.equal(pickTwoChoices([], () => 1), undefined);
  assert.equal(pickTwoChoices([busy], () => 1), busy);
});

test("a node in warm-up with nothing in flight does not win over a warm one with a few calls, only over one far behind", () => {
  const fresh = { id: "fresh", inflight: 0, readySince: 0, w: 0.1 };
  const warm = { id: "warm", inflight: 2, readySince: 0, w: 1 };
  const swamped = { id: "swamped", inflight: 20, readySince: 0, w: 1 };
  const random = seededRandom(5);
  for (let i = 0; i < 100; i++) {
    assert.equal(pickTwoChoices([fresh, warm], (n) => n.w, random)!.id, "warm", "(0+1)/0.1 = 10 > (2+1)/1 = 3");
    assert.equal(pickTwoChoices([fresh, swamped], (n) => n.w, random)!.id, "fresh", "(0+1)/0.1 = 10 < (20+1)/1 = 21");
  }
});
