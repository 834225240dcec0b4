import { test } from "node:test";
import assert from "node:assert/strict";
import { BroadcastQueue } from "../../../src/membership/broadcast-queue.ts";

test("each broadcast is sent up to the limit, least-sent first", () => {
  const queue = new BroadcastQueue<string>(() => 2);
  queue.push({ key: "a", item: "a1", bytes: 10 });
  queue.push({ key: "b", item: "b1", bytes: 10 });
  assert.deepEqual(queue.take(15), ["a1"]);
  assert.deepEqual(queue.take(15), ["b1"]);
  assert.deepEqual(queue.take(100), ["a1", "b1"]);
  assert.deepEqual(queue.take(100), []);
  assert.equal(queue.size, 0);
});

test("newer news about a member replaces older, and starts its count again", () => {
  const queue = new BroadcastQueue<string>(() => 3);
  queue.push({ key: "a", item: "a-alive", bytes: 10 });
  queue.take(100);
  queue.push({ key: "a", item: "a-suspect", bytes: 10 });
  assert.equal(queue.size, 1);
  assert.deepEqual(queue.take(100), ["a-suspect"]);
  assert.deepEqual(queue.take(100), ["a-suspect"]);
  assert.deepEqual(queue.take(100), ["a-suspect"]);
  assert.deepEqual(queue.take(100), []);
});

test("a message carries no more than its byte budget", () => {
  const queue = new BroadcastQueue<number>(() => 10);
  for (let i = 0; i < 100; i++) queue.push({ key: `m${i}`, item: i, bytes: 100 });
  assert.equal(queue.take(1_000).length, 10);
  assert.equal(queue.take(50).length, 0);
});
