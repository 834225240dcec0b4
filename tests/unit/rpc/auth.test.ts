import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { AUTH_CONTEXT, AUTH_METHOD, ClusterKeyCheck, type Keyring, keyringOf, MAX_CLUSTER_KEYS, NONCE_BYTES, newNonce, proof, proofMatches, proveClusterKey, readNonce } from "../../../src/rpc/auth.ts";
import { RpcError } from "../../../src/rpc/errors.ts";
import { AuthGuard, AuthThrottle } from "../../../src/rpc/auth-guard.ts";
import { sourceHost } from "../../../src/runtime/address.ts";
import { Dispatcher } from "../../../src/rpc/dispatch.ts";
import { Router } from "../../../src/rpc/router.ts";
import { RpcServer } from "../../../src/rpc/server.ts";
import { MessageDecoder } from "../../../src/wire/decoder.ts";
import { connectRaw, LogCapture, runtime } from "../../helpers/net.ts";

const KEY = "q9Hn2V0d8mXbR4tLcW7yPz1sKfA6uJeG3oNvIhTgBkE=";

test("cluster key proofs are bound to the key, the role, the cluster id and both nonces, and compared exactly", () => {
  const client = newNonce();
  const server = newNonce();
  assert.equal(client.byteLength, NONCE_BYTES);
  assert.notDeepEqual(client, server, "nonces are random");
  const mine = proof(KEY, "client", client, server, "ebb");
  assert.equal(mine.byteLength, 32, "HMAC-SHA256");
  assert.ok(AUTH_CONTEXT.startsWith("ebb-auth/"));
  assert.ok(proofMatches(proof(KEY, "client", client, server, "ebb"), mine));
  assert.ok(!proofMatches(proof(KEY.toLowerCase(), "client", client, server, "ebb"), mine), "another key");
  assert.ok(!proofMatches(proof(KEY, "client", client, server, "staging"), mine), "another cluster id");
  assert.ok(!proofMatches(proof(KEY, "client", client, server, "eb"), proof(KEY, "client", client, server, "ebb")), "a prefix of the cluster id");
  assert.ok(!proofMatches(proof(KEY, "server", client, server, "ebb"), mine), "the other role");
  assert.ok(!proofMatches(proof(KEY, "client", server, client, "ebb"), mine), "nonces swapped");
  assert.ok(!proofMatches(proof(KEY, "client", client, newNonce(), "ebb"), mine), "another server nonce");
  assert.ok(!proofMatches(mine, mine.subarray(0, 31)), "a prefix");
  assert.ok(!proofMatches(mine, "not bytes"));
  assert.ok(!proofMatches(mine, undefined));
  assert.equal(readNonce(new Uint8Array(15)), undefined);
  assert.equal(readNonce("x".repeat(16)), undefined);
  assert.equal(readNonce(client), client);
});

/** The first answer a keyed RpcServer gives to an `$auth` hello. */
async function helloAnswer(key: string): Promise<[number, number, unknown, Record<string, unknown>]> {
  const logs = new LogCapture();
  const server = new RpcServer(runtime, { dispatcher: new Dispatcher({ router: new Router(), log: logs.logger }), log: logs.logger, maxMessageBytes: 1 << 20, clusterKey: key });
  const listener = await server.listen("127.0.0.1", 0);
  try {
    const raw = await connectRaw(listener.port);
    // What a version 1 client sent first: its nonce, which used to buy the server's proof.
    raw.socket.write(encode([0, 1, AUTH_METHOD, [{ nonce: newNonce() }]]));
    const decoder = new MessageDecoder(1 << 20);
    for (let seen = 0; ; ) {
      const all = await raw.waitForBytes(seen + 1);
      const [answer] = decoder.push(all.subarray(seen));
      seen = all.byteLength;
      if (answer) return answer as [number, number, unknown, Record<string, unknown>];
    }
  } finally {
    await server.stopAccepting();
    server.closeAll();
  }
}

test("the server's answer to an $auth hello has nothing derived from the key: the same shape for two keys, only a fresh nonce", async () => {
  const [a, b] = await Promise.all([helloAnswer(KEY), helloAnswer("Zx8Wc3Vb6Nm1Lk4Jh7Gf0Ds2Ap5Oi9Uy_Tr-Ee3Qw")]);
  for (const answer of [a, b]) {
    assert.deepEqual(answer.slice(0, 3), [1, 1, null]);
    assert.deepEqual(Object.keys(answer[3]), ["nonce"], "no proof before the client proved the key");
    assert.ok(readNonce(answer[3].nonce));
  }
  assert.notDeepEqual(a[3].nonce, b[3].nonce);
});

test("the failure throttle: a burst per host, refilled over time, only failures count, each host on its own", () => {
  let now = 0;
  const throttle = new AuthThrottle({ burst: 3, perSecond: 2, maxSources: 2 }, () => now);
  // [ms, action, host, expected throttled(host) after the action]
  const steps: [number, "fail" | "check", string, boolean][] = [
    [0, "check", "10.0.0.1", false], // never failed: not even remembered
    [0, "fail", "10.0.0.1", false],
    [0, "fail", "10.0.0.1", false],
    [0, "fail", "10.0.0.1", true], // burst of 3 used up
    [0, "check", "10.0.0.2", false], // another host is not affected
    [499, "check", "10.0.0.1", true], // 2 per second: 0.998 of a token
    [500, "check", "10.0.0.1", false], // one token back
    [500, "fail", "10.0.0.1", true],
    [2000, "check", "10.0.0.1", false],
    [2000, "fail", "10.0.0.1", false], // 3 tokens back (capped at the burst), one used
    [2000, "fail", "10.0.0.1", false],
    [2000, "fail", "10.0.0.1", true],
  ];
  for (const [ms, action, host, throttled] of steps) {
    now = ms;
    if (action === "fail") throttle.failed(host);
    assert.equal(throttle.throttled(host), throttled, `${action} ${host} at ${ms} ms`);
  }
  // Bounded: a third host makes the least recently seen one forgotten, with a full bucket next time.
  throttle.failed("10.0.0.3");
  throttle.failed("10.0.0.4");
  assert.equal(throttle.size, 2);
  assert.equal(throttle.throttled("10.0.0.1"), false);
});

test("sources are hosts, not host:port", () => {
  assert.deepEqual(["127.0.0.1:5000", "::1:5000", "[::1]:5000", "example"].map(sourceHost), ["127.0.0.1", "::1", "::1", "example"]);
});

test("thousands of failures from one host make one line as they start and one line with the count per window, not one each", () => {
  let now = 0;
  const logs = new LogCapture();
  const guard = new AuthGuard(logs.logger, { burst: 2, perSecond: 1, maxSources: 10 }, () => now, 10_000);
  try {
    guard.failed("127.0.0.1:4000", "Wrong cluster key");
    assert.deepEqual(logs.lines.map((l) => l.msg), ["closing connection from 127.0.0.1:4000: Wrong cluster key"]);
    guard.failed("127.0.0.1:4001", "Wrong cluster key");
    let turnedAway = 0;
    for (let i = 0; i < 4000; i++) if (guard.turnsAway(`127.0.0.1:${5000 + (i % 60000)}`)) turnedAway++;
    assert.equal(turnedAway, 4000);
    guard.failed("10.1.1.1:1", "Wrong cluster key");
    assert.equal(logs.lines.length, 2, "the first failure of each host, nothing else yet");
    now = 9_999;
    guard.flush();
    assert.equal(logs.lines.length, 2, "the window is not over");
    now = 10_000;
    guard.flush();
    assert.equal(logs.lines.length, 3);
    assert.equal(logs.lines[2]!.msg, 'refused 4001 cluster key handshakes from "127.0.0.1" in the last 10 s');
    assert.deepEqual([logs.lines[2]!.failed, logs.lines[2]!.turnedAway], [1, 4000]);
    assert.deepEqual(guard.stats, { failures: 3, throttled: 4000, secondary: 0, byReason: { unknown_key: 0, wrong_cluster: 0, handshake: 3 } });
    guard.flush();
    assert.equal(logs.lines.length, 3, "nothing new, nothing logged");
  } finally {
    guard.stop();
  }
});

test("once the server stops accepting, the guard arms no timer and logs what is left at once", () => {
  let now = 0;
  const logs = new LogCapture();
  const guard = new AuthGuard(logs.logger, { burst: 5, perSecond: 1, maxSources: 10 }, () => now, 10_000);
  guard.failed("10.0.0.1:1", "Wrong cluster key");
  guard.failed("10.0.0.1:2", "Wrong cluster key");
  guard.stop();
  assert.deepEqual(logs.lines.map((l) => l.msg), ["closing connection from 10.0.0.1:1: Wrong cluster key", "closing connection from 10.0.0.1:2: Wrong cluster key"]);
  now = 1_500;
  guard.failed("10.0.0.1:3", "Wrong cluster key");
  guard.failed("10.0.0.1:4", "Wrong cluster key");
  assert.equal(logs.lines.length, 4, "logged at once: no timer outlives the server");
  guard.stop();
});

/** One handshake between a client ring and a server ring, without sockets: the client's `call` feeds the server's check. */
async function handshake(client: Keyring, server: Keyring): Promise<{ outcome: string; secondary: boolean }> {
  const check = new ClusterKeyCheck(server);
  let secondary = false;
  let failure: string | false = false;
  try {
    await proveClusterKey(client, "node:7400", (params) => {
      const step = check.step({ method: AUTH_METHOD, params }, () => false);
      if (step.kind === "refuse") {
        failure = step.failure;
        return Promise.reject(new RpcError(step.message, "UNAUTHENTICATED", { data: step.data }));
      }
      secondary = step.secondary ?? false;
      return Promise.resolve(step.result);
    });
    return { outcome: "ok", secondary };
  } catch (error) {
    return { outcome: `${failure}: ${(error as RpcError).rawMessage}`, secondary };
  }
}

test("keyrings: two rings connect when they share a key, whatever the order; the server prefers its primary and counts a peer without it", async () => {
  const [A, B, C] = [KEY, "Zx8Wc3Vb6Nm1Lk4Jh7Gf0Ds2Ap5Oi9Uy_Tr-Ee3Qw", "Pm4tJ8eX1cR6vN0bL3wK7zH2yD9gS5fQaTuV_oIj-Ek"];
  const ring = (keys: string[], clusterId = "ebb"): Keyring => ({ keys, clusterId });
  // [client ring, server ring, outcome, the server's primary was not shared]
  const table: [Keyring, Keyring, string, boolean][] = [
    [ring([A]), ring([A]), "ok", false],
    [ring([A, B]), ring([A]), "ok", false], // step 1 client, step 0 server
    [ring([B, A]), ring([A]), "ok", false], // the client's primary is one the server does not hold yet
    [ring([A]), ring([B, A]), "ok", true], // the client is a step behind: counted
    [ring([B]), ring([A, B]), "ok", true],
    [ring([B, A]), ring([A, B]), "ok", false], // the server's primary A is found among the client's proofs
    [ring([A]), ring([B]), "unknown_key: node:7400 does not hold any of our cluster keys", false], // two steps apart
    [ring([C, B]), ring([A]), "unknown_key: node:7400 does not hold any of our cluster keys", false],
    [ring([A], "staging"), ring([A], "prod"), 'wrong_cluster: node:7400 is not of cluster "staging" (EBB_CLUSTER_ID)', false],
  ];
  for (const [client, server, outcome, secondary] of table) {
    const what = `client ${client.keys.map((k) => k[0]).join(",")}@${client.clusterId}, server ${server.keys.map((k) => k[0]).join(",")}@${server.clusterId}`;
    assert.deepEqual(await handshake(client, server), { outcome, secondary }, what);
  }
  // A plain key is a ring of one in the default cluster.
  assert.deepEqual(await handshake(ring([A]), keyringOf(A)), { outcome: "ok", secondary: false });
});

test("keyrings: a second $auth with more proofs than a ring may hold, or without the cluster id, is malformed", () => {
  const check = new ClusterKeyCheck(KEY);
  assert.equal(check.step({ method: AUTH_METHOD, params: [{}] }, () => false).kind, "answer");
  const nonce = newNonce();
  const tooMany = check.step({ method: AUTH_METHOD, params: [{ nonce, cluster: "ebb", proofs: Array.from({ length: MAX_CLUSTER_KEYS + 1 }, () => new Uint8Array(32)) }] }, () => false);
  assert.deepEqual(tooMany.kind === "refuse" && [tooMany.failure, tooMany.message], ["handshake", "The second $auth must carry a 16-byte nonce, the cluster id and 1 to 4 proofs"]);
  const noId = new ClusterKeyCheck(KEY);
  noId.step({ method: AUTH_METHOD, params: [{}] }, () => false);
  assert.equal(noId.step({ method: AUTH_METHOD, params: [{ nonce, proofs: [new Uint8Array(32)] }] }, () => false).kind, "refuse");
  assert.throws(() => keyringOf({ keys: [], clusterId: "ebb" }), /A keyring holds 1 to 4 keys, got 0/);
});

test("a server that accepts any proof but cannot prove a key itself is refused by the client: it proved an unknown key", async () => {
  const answers: unknown[] = [{ nonce: newNonce() }, { ok: true, key: 0, proof: new Uint8Array(32) }];
  const refused = await proveClusterKey(KEY, "impostor:7400", () => Promise.resolve(answers.shift())).then(
    () => undefined,
    (error: RpcError) => error,
  );
  assert.equal(refused?.message, "[UNAUTHENTICATED] impostor:7400 proved an unknown key");
  const outOfRange = [{ nonce: newNonce() }, { ok: true, key: 3, proof: new Uint8Array(32) }];
  await assert.rejects(proveClusterKey(KEY, "impostor:7400", () => Promise.resolve(outOfRange.shift())), /impostor:7400 proved an unknown key/);
});
