import { test } from "node:test";
import assert from "node:assert/strict";
import { InflightCounter } from "../../../src/lifecycle/inflight.ts";

test("idle() resolves at once when nothing is in flight", async () => {
  await new InflightCounter().idle();
});

test("idle() resolves the moment the count reaches zero, not before", async () => {
  const counter = new InflightCounter();
  counter.enter();
  counter.enter();
  let idle = false;
  const waiting = counter.idle().then(() => (idle = true));
  counter.leave();
  await Promise.resolve();
  assert.equal(idle, false);
  counter.leave();
  await waiting;
  assert.equal(idle, true);
  assert.equal(counter.entered, 2);
});

test("leave() without enter() is a bug and says so", () => {
  assert.throws(() => new InflightCounter().leave(), /without a matching enter/);
});
