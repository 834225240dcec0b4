import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_INCARNATION, MAX_UPDATES_PER_MESSAGE, parseSwimMessage, SwimGate } from "../../../src/membership/schema.ts";
import { MAX_META_BYTES } from "../../../src/membership/types.ts";
import { LogCapture } from "../../helpers/net.ts";

const meta = { state: "ready", services: ["demo"], version: "0.1.0", http: null };
const alive = (over: Record<string, unknown> = {}) => ({ id: "b", addr: "127.0.0.1:7001", inc: 5, status: "alive", meta, ...over });
const gossip = (u: unknown[]) => ({ t: "gossip", from: "x", u });

function refused(value: unknown): string {
  const { message, error } = parseSwimMessage(value);
  assert.equal(message, undefined, `accepted ${JSON.stringify(value)}`);
  return error!;
}

test("every valid membership message parses", () => {
  for (const value of [
    { t: "ping", from: "a", target: "b", u: [alive()] },
    { t: "ack", from: "a" },
    { t: "nack", from: "a" },
    { t: "ping-req", from: "a", target: "b", addr: "[::1]:7001" },
    gossip([alive(), { id: "c", addr: "host.example:1", inc: 0, status: "suspect", by: "a" }]),
    { t: "sync", from: "a", digest: 123, state: [alive()], join: true },
    { t: "sync", from: "a", same: true },
  ]) {
    assert.ok(parseSwimMessage(value).message, JSON.stringify(value));
  }
});

test("an update with a numeric or missing addr is refused", () => {
  refused(gossip([alive({ addr: 7001 })]));
  refused(gossip([{ id: "b", inc: 1, status: "alive", meta }]));
  refused(gossip([alive({ addr: "no-port" })]));
  refused(gossip([alive({ addr: "127.0.0.1:0" })]));
  refused(gossip([alive({ addr: "127.0.0.1:65536" })]));
  refused({ t: "ping-req", from: "a", target: "b", addr: 5 });
});

test("incarnations of 1e300, NaN, Infinity, negative or fractional are refused", () => {
  for (const inc of [1e300, Number.NaN, Number.POSITIVE_INFINITY, -1, 1.5, "5"]) {
    refused(gossip([alive({ inc, status: "dead" })]));
    refused(gossip([alive({ inc })]));
  }
});

test("an accusation stops at MAX_INCARNATION and an alive claim one above, so a refutation always wins", () => {
  assert.ok(parseSwimMessage(gossip([alive({ inc: MAX_INCARNATION, status: "dead" })])).message);
  refused(gossip([alive({ inc: MAX_INCARNATION + 1, status: "dead" })]));
  refused(gossip([alive({ inc: MAX_INCARNATION + 1, status: "suspect" })]));
  assert.ok(parseSwimMessage(gossip([alive({ inc: MAX_INCARNATION + 1 })])).message);
  refused(gossip([alive({ inc: MAX_INCARNATION + 2 })]));
  assert.equal(MAX_INCARNATION + 2 - 1, MAX_INCARNATION + 1, "inc + 1 stays exact");
});

test("meta.services: 5, an unknown status and oversized metadata are refused", () => {
  refused(gossip([alive({ meta: { ...meta, services: 5 } })]));
  refused(gossip([alive({ status: "zombie" })]));
  refused(gossip([alive({ meta: { ...meta, version: "x".repeat(100), services: Array.from({ length: 40 }, (_, i) => `service-${i}`) } })]));
  const big = { ...meta, services: ["s".repeat(MAX_META_BYTES)] };
  refused(gossip([alive({ meta: big })]));
});

test("more than MAX_UPDATES_PER_MESSAGE updates in one message are refused", () => {
  const many = Array.from({ length: MAX_UPDATES_PER_MESSAGE + 1 }, (_, i) => alive({ id: `m${i}` }));
  refused({ t: "sync", from: "a", state: many, push: true });
  assert.ok(parseSwimMessage({ t: "sync", from: "a", state: many.slice(1), push: true }).message);
});

test("the gate counts every refused message and logs once per peer", () => {
  const logs = new LogCapture();
  const gate = new SwimGate(logs.logger);
  for (let i = 0; i < 5; i++) assert.equal(gate.admit(gossip([alive({ addr: 1 })]), `10.0.0.1:${5000 + i}`), undefined);
  assert.equal(gate.admit("nonsense", "10.0.0.2:5000"), undefined);
  assert.ok(gate.admit(gossip([alive()]), "10.0.0.1:5000"));
  assert.equal(gate.rejected, 6);
  assert.equal(logs.lines.filter((l) => l.level === "warn").length, 2);
});
