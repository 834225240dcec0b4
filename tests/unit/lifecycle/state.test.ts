import { test } from "node:test";
import assert from "node:assert/strict";
import { Lifecycle, type LifecycleState } from "../../../src/lifecycle/state.ts";

test("states only move forward, and listeners hear each move", () => {
  const lifecycle = new Lifecycle("n1");
  const seen: [LifecycleState, LifecycleState][] = [];
  lifecycle.onChange((state, previous) => seen.push([previous, state]));
  assert.equal(lifecycle.advance("ready"), true);
  assert.equal(lifecycle.advance("starting"), false);
  assert.equal(lifecycle.advance("ready"), false);
  assert.equal(lifecycle.advance("draining"), true);
  assert.equal(lifecycle.advance("stopped"), true);
  assert.deepEqual(seen, [
    ["starting", "ready"],
    ["ready", "draining"],
    ["draining", "stopped"],
  ]);
});

test("the baffle refuses before ready, admits when ready and while the drain delay runs, refuses after", () => {
  const lifecycle = new Lifecycle("n1");
  const starting = lifecycle.admit();
  assert.equal(starting?.code, "UNAVAILABLE");
  assert.equal(starting?.processed, false);
  assert.match(starting!.message, /Node n1 is starting and not ready yet/);
  lifecycle.advance("ready");
  assert.equal(lifecycle.admit(), undefined);
  lifecycle.advance("draining");
  assert.equal(lifecycle.admit(), undefined, "draining with the baffle open still serves (drain delay)");
  lifecycle.closeBaffle();
  const draining = lifecycle.admit();
  assert.equal(draining?.code, "SHUTTING_DOWN");
  assert.equal(draining?.processed, false);
  assert.equal(lifecycle.notReadyCount, 1);
  assert.equal(lifecycle.baffledCount, 1);
});

test("a throwing state listener is reported and the others still hear the change", () => {
  const errors: unknown[] = [];
  const lifecycle = new Lifecycle("n1", (error) => errors.push(error));
  const seen: LifecycleState[] = [];
  lifecycle.onChange(() => {
    throw new Error("listener failed");
  });
  lifecycle.onChange((state) => seen.push(state));
  assert.equal(lifecycle.advance("ready"), true);
  assert.equal(lifecycle.advance("draining"), true);
  assert.equal(lifecycle.advance("stopped"), true);
  assert.deepEqual(seen, ["ready", "draining", "stopped"]);
  assert.equal(errors.length, 3);
});
