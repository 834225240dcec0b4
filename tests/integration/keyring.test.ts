import { createHmac } from "node:crypto";
import { test } from "node:test";
import assert from "node:assert/strict";
import { httpToken } from "../../src/rpc/auth.ts";
import { createClient } from "../../src/rpc/client.ts";
import { connectChannel, rejectsWith, startTestNode } from "../helpers/net.ts";
import { probe, probeHandlers } from "../helpers/services.ts";

const OLD = "q9Hn2V0d8mXbR4tLcW7yPz1sKfA6uJeG3oNvIhTgBkE=";
const NEW = "Zx8Wc3Vb6Nm1Lk4Jh7Gf0Ds2Ap5Oi9Uy_Tr-Ee3Qw";
const STRANGER = "Pm4tJ8eX1cR6vN0bL3wK7zH2yD9gS5fQaTuV_oIj-Ek";

/** One metric's value from Prometheus text. */
function metric(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return Number(line?.split(" ")[1]);
}

test("a node with the keyring NEW,OLD serves clients holding either key, in any order, and counts those that lack its primary", async () => {
  const server = await startTestNode((node) => node.register(probe, probeHandlers), { clusterKey: [NEW, OLD], httpPort: 0 });
  try {
    const rings = [[OLD], [NEW], [OLD, NEW], [NEW, OLD]];
    for (const keys of rings) {
      const channel = await connectChannel(server.port, { clusterKey: { keys, clusterId: "ebb" } });
      assert.equal(await createClient(probe, channel).add({ a: keys.length, b: 1 }), keys.length + 1, keys.join(","));
      channel.close();
    }
    const metrics = await (await fetch(`http://127.0.0.1:${server.node.httpAddress!.port}/metrics`)).text();
    // Only the client holding OLD alone shared no more than a secondary key: it is a rotation step behind.
    assert.equal(metric(metrics, "ebb_auth_secondary_total"), 1);
    assert.equal(metric(metrics, 'ebb_auth_failures_total{reason="unknown_key"}'), 0);
    const behind = server.logs.lines.filter((l) => String(l.msg).includes("proved only a secondary cluster key"));
    assert.equal(behind.length, 1, "said once, at info");
    assert.match(String(behind[0]!.msg), /^peer 127\.0\.0\.1:\d+ proved only a secondary cluster key: it does not hold this node's primary yet \(a rotation step behind\)$/);
    assert.equal(behind[0]!.level, "info");
  } finally {
    await server.close();
  }
});

test("a node whose keys share nothing with the client is refused, logged as a peer that proved an unknown key and counted, never as anything else", async () => {
  const server = await startTestNode((node) => node.register(probe, probeHandlers), { clusterKey: [OLD], httpPort: 0 });
  try {
    const refused = await rejectsWith(connectChannel(server.port, { clusterKey: { keys: [NEW, STRANGER], clusterId: "ebb" } }), "UNAUTHENTICATED");
    assert.equal(refused.message, `[UNAUTHENTICATED] 127.0.0.1:${server.port} does not hold any of our cluster keys`);
    const line = await server.logs.next((l) => String(l.msg).includes("proved an unknown key"));
    assert.match(String(line.msg), /^peer 127\.0\.0\.1:\d+ proved an unknown key: it shares none of this node's keys \(EBB_CLUSTER_KEY\); a rotation step skipped, or not a member$/);
    assert.equal(line.level, "warn");
    const metrics = await (await fetch(`http://127.0.0.1:${server.node.httpAddress!.port}/metrics`)).text();
    assert.equal(metric(metrics, 'ebb_auth_failures_total{reason="unknown_key"}'), 1);
    assert.equal(metric(metrics, 'ebb_auth_failures_total{reason="handshake"}'), 0);
  } finally {
    await server.close();
  }
});

test("the cluster id is part of every proof: a node of cluster staging with production's key cannot call, and is told why", async () => {
  const prod = await startTestNode((node) => node.register(probe, probeHandlers), { clusterKey: [OLD], clusterId: "prod", httpPort: 0 });
  try {
    const staging = await rejectsWith(connectChannel(prod.port, { clusterKey: { keys: [OLD], clusterId: "staging" } }), "UNAUTHENTICATED");
    assert.equal(staging.message, `[UNAUTHENTICATED] 127.0.0.1:${prod.port} is not of cluster "staging" (EBB_CLUSTER_ID)`);
    // The default id is another cluster too.
    await rejectsWith(connectChannel(prod.port, { clusterKey: OLD }), "UNAUTHENTICATED");
    const same = await connectChannel(prod.port, { clusterKey: { keys: [OLD], clusterId: "prod" } });
    assert.equal(await createClient(probe, same).add({ a: 1, b: 2 }), 3);
    same.close();
    const metrics = await (await fetch(`http://127.0.0.1:${prod.node.httpAddress!.port}/metrics`)).text();
    assert.equal(metric(metrics, 'ebb_auth_failures_total{reason="wrong_cluster"}'), 2);
  } finally {
    await prod.close();
  }
});

test("a member of another cluster id with the same key cannot join: neither side lists the other", async () => {
  const prod = await startTestNode(() => {}, { nodeId: "prod-1", clusterKey: [OLD], clusterId: "prod" });
  const staging = await startTestNode(() => {}, { nodeId: "staging-1", clusterKey: [OLD], clusterId: "staging", seeds: [`127.0.0.1:${prod.port}`] });
  try {
    await prod.logs.next((l) => String(l.msg).includes('Cluster id "staging" is not this node\'s'));
    await staging.logs.next((l) => String(l.msg).startsWith(`membership: peer 127.0.0.1:${prod.port} is not of cluster "staging"`));
    assert.deepEqual(prod.node.members().map((m) => m.id), ["prod-1"]);
    assert.deepEqual(staging.node.members().map((m) => m.id), ["staging-1"]);
  } finally {
    await Promise.all([prod.close(), staging.close()]);
  }
});

test("HTTP takes the token derived from any ring key and the cluster id, never the raw key", async () => {
  const server = await startTestNode((node) => node.register(probe, probeHandlers), { clusterKey: [NEW, OLD], clusterId: "prod", httpPort: 0 });
  try {
    const http = `http://127.0.0.1:${server.node.httpAddress!.port}`;
    const call = async (token: string) => {
      const response = await fetch(`${http}/rpc/probe.add`, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ a: 2, b: 3 }) });
      return { status: response.status, body: await response.json() };
    };
    assert.deepEqual(await call(httpToken(NEW, "prod")), { status: 200, body: { result: 5 } });
    assert.deepEqual(await call(httpToken(OLD, "prod")), { status: 200, body: { result: 5 } });
    for (const wrong of [NEW, OLD, httpToken(NEW, "ebb"), httpToken(STRANGER, "prod")]) assert.equal((await call(wrong)).status, 401, wrong);
    assert.match(httpToken(NEW, "prod"), /^[A-Za-z0-9_-]{43}$/, "32 bytes in base64url");
    // The formula README "HTTP token" gives, computed apart.
    assert.equal(httpToken(NEW, "prod"), createHmac("sha256", NEW).update("ebb-http-token/1/4:prod").digest("base64url"));
    assert.notEqual(httpToken(NEW, "prod"), httpToken(OLD, "prod"));
  } finally {
    await server.close();
  }
});

test("a member restarted with a key the cluster does not hold is reported as proving an unknown key, and was left, never suspected or dead", async () => {
  const fast = { swim: { probeIntervalMs: 100, probeTimeoutMs: 50, gossipIntervalMs: 25, suspicionMult: 2, pushPullIntervalMs: 1_000, indirectChecks: 3, gossipNodes: 3, maxMembers: 100 } };
  const a = await startTestNode(() => {}, { nodeId: "a", clusterKey: [OLD], ...fast });
  const events: string[] = [];
  let seen: ((event: string) => void) | undefined;
  a.node.onMemberEvent((event) => {
    if (event.member.id !== "b") return;
    events.push(event.type);
    seen?.(event.type);
  });
  const next = (type: string) => (events.includes(type) ? Promise.resolve() : new Promise<void>((resolve) => (seen = (t) => t === type && resolve())));
  let b = await startTestNode(() => {}, { nodeId: "b", clusterKey: [OLD], seeds: [`127.0.0.1:${a.port}`], ...fast });
  try {
    await next("join");
    const left = next("left");
    await b.close();
    await left;
    // (Under load a probe may time out while the first b drains, so a suspect before its left is no concern here.)
    const afterLeft = events.length;
    // Restarted with only a key that no member holds (a rotation done out of order).
    b = await startTestNode(() => {}, { nodeId: "b", clusterKey: [STRANGER], seeds: [`127.0.0.1:${a.port}`], ...fast });
    await a.logs.next((l) => /^peer 127\.0\.0\.1:\d+ proved an unknown key/.test(String(l.msg)));
    await b.logs.next((l) => String(l.msg) === `membership: peer 127.0.0.1:${a.port} does not hold any of our cluster keys`);
    assert.equal(events[0], "join");
    assert.equal(events.at(afterLeft - 1), "left");
    assert.deepEqual(events.slice(afterLeft), [], "its successor, holding a stranger key, never joined, nor was suspected or declared dead");
    assert.deepEqual(b.node.members().map((m) => m.id), ["b"]);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});
