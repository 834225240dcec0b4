import { test } from "node:test";
import assert from "node:assert/strict";
import { InflightCounter } from "../../../src/lifecycle/inflight.ts";

/** Whether `promise` has resolved once already-queued microtasks ran: a check that cannot hang. */
async function resolvedNow(promise: Promise<unknown>): Promise<boolean> {
  let resolved = false;
  promise.then(() => (resolved = true));
  for (let i = 0; i < 3; i++) await Promise.resolve();
  return resolved;
}

test("idle() resolves at once when nothing is in flight", async () => {
  assert.equal(await resolvedNow(new InflightCounter().idle()), true);
});

test("idle() resolves the moment the count reaches zero, not before", async () => {
  const counter = new InflightCounter();
  counter.enter();
  counter.enter();
  const waiting = counter.idle();
  counter.leave();
  assert.equal(await resolvedNow(waiting), false);
  counter.leave();
  assert.equal(await resolvedNow(waiting), true);
  assert.equal(counter.entered, 2);
});

test("leave() without enter() is a bug and says so", () => {
  assert.throws(() => new InflightCounter().leave(), /without a matching enter/);
});
