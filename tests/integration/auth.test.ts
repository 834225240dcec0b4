import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { createClusterClient } from "../../src/cluster/client.ts";
import { AUTH_METHOD, DEFAULT_CLUSTER_ID, httpToken, newNonce, proof } from "../../src/rpc/auth.ts";
import { createClient } from "../../src/rpc/client.ts";
import { Dispatcher } from "../../src/rpc/dispatch.ts";
import { Router } from "../../src/rpc/router.ts";
import { RpcServer } from "../../src/rpc/server.ts";
import { MessageDecoder } from "../../src/wire/decoder.ts";
import { connectChannel, connectRaw, LogCapture, rejectsWith, runtime, startTestNode } from "../helpers/net.ts";
import { probe, probeHandlers } from "../helpers/services.ts";

const KEY = "q9Hn2V0d8mXbR4tLcW7yPz1sKfA6uJeG3oNvIhTgBkE=";

test("with a cluster key, only clients that prove it are served; everyone else gets UNAUTHENTICATED and is disconnected", async () => {
  const server = await startTestNode((node) => node.register(probe, probeHandlers), { clusterKey: [KEY], httpPort: 0 });
  const plain = await startTestNode((node) => node.register(probe, probeHandlers), { nodeId: "no-key" });
  try {
    const keyed = await connectChannel(server.port, { clusterKey: KEY });
    assert.equal(await createClient(probe, keyed).add({ a: 1, b: 2 }), 3);

    const wrong = await rejectsWith(connectChannel(server.port, { clusterKey: "Zx8Wc3Vb6Nm1Lk4Jh7Gf0Ds2Ap5Oi9Uy_Tr-Ee3Qw" }));
    assert.equal(wrong.code, "UNAUTHENTICATED");
    assert.match(wrong.message, /does not hold any of our cluster keys/);

    const keyless = await connectChannel(server.port);
    const refused = await rejectsWith(createClient(probe, keyless).add({ a: 1, b: 1 }));
    assert.equal(refused.code, "UNAUTHENTICATED");
    assert.match(refused.message, /requires the cluster key \(EBB_CLUSTER_KEY\)/);
    await keyless.whenClosed();

    // A raw msgpack-rpc client: the answer, then the end of the connection.
    const raw = await connectRaw(server.port);
    raw.socket.write(encode([0, 7, "probe.add", [{ a: 1, b: 1 }]]));
    await raw.closed;
    const [reply] = new MessageDecoder(1 << 20).push(raw.received()) as [number, number, { code: string }, unknown][];
    assert.deepEqual([reply![0], reply![1], reply![2].code], [1, 7, "UNAUTHENTICATED"]);

    // A client that knows the protocol but not the key: its proof is refused.
    const guesser = await connectRaw(server.port);
    const nonce = newNonce();
    guesser.socket.write(encode([0, 1, AUTH_METHOD, [{ nonce }]]));
    const decoder = new MessageDecoder(1 << 20);
    let answers: unknown[] = [];
    for (let seen = 0; answers.length === 0; ) {
      const all = await guesser.waitForBytes(seen + 1);
      answers = decoder.push(all.subarray(seen));
      seen = all.byteLength;
    }
    const challenge = answers[0] as [number, number, null, { nonce: Uint8Array }];
    const before = guesser.received().byteLength;
    guesser.socket.write(encode([0, 2, AUTH_METHOD, [{ nonce, cluster: DEFAULT_CLUSTER_ID, proofs: [proof("a-guess-0123456789", "client", nonce, challenge[3].nonce, DEFAULT_CLUSTER_ID)] }]]));
    await guesser.closed;
    const [verdict] = new MessageDecoder(1 << 20).push(guesser.received().subarray(before)) as [number, number, { code: string; message: string }, unknown][];
    assert.deepEqual([verdict![2].code, verdict![2].message], ["UNAUTHENTICATED", "Proved an unknown cluster key"]);
    assert.ok(server.logs.lines.some((l) => /^peer 127\.0\.0\.1:\d+ proved an unknown key/.test(String(l.msg))), "the refusal is logged");

    // A keyed client of a node without a key is told so.
    const mismatch = await rejectsWith(connectChannel(plain.port, { clusterKey: KEY }));
    assert.equal(mismatch.code, "UNAUTHENTICATED");
    assert.match(mismatch.message, /has no cluster key, but EBB_CLUSTER_KEY is set here/);

    // The cluster client fails with the key error at once rather than trying every node.
    const cluster = createClusterClient({ runtime, seeds: [`127.0.0.1:${server.port}`] });
    const viaCluster = await rejectsWith(cluster.call("probe.add", { a: 1, b: 1 }));
    assert.equal(viaCluster.code, "UNAUTHENTICATED");
    cluster.close();

    // Through all of that, the authenticated connection kept working.
    assert.equal(await createClient(probe, keyed).add({ a: 20, b: 22 }), 42);
    keyed.close();

    // HTTP: the gateway and /cluster need the token derived from the key, not the key; probes and metrics do not.
    const http = `http://127.0.0.1:${server.node.httpAddress!.port}`;
    const call = (headers: Record<string, string>) => fetch(`${http}/rpc/probe.add`, { method: "POST", headers, body: JSON.stringify({ a: 2, b: 3 }) });
    const none = await call({});
    assert.equal(none.status, 401);
    assert.equal(((await none.json()) as { error: { code: string } }).error.code, "UNAUTHENTICATED");
    const bad = await call({ authorization: "Bearer not-the-key" });
    assert.equal(bad.status, 401);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /^Wrong cluster token/);
    const rawKey = await call({ authorization: `Bearer ${KEY}` });
    assert.equal(rawKey.status, 401, "the raw key is not a token: it never needs to cross the wire");
    await rawKey.body?.cancel();
    const token = httpToken(KEY, DEFAULT_CLUSTER_ID);
    const good = await call({ authorization: `Bearer ${token}` });
    assert.deepEqual(await good.json(), { result: 5 });
    assert.equal((await fetch(`${http}/cluster`)).status, 401);
    assert.equal((await fetch(`${http}/cluster`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
    for (const open of ["/healthz", "/readyz", "/metrics"]) {
      const response = await fetch(`${http}${open}`);
      assert.equal(response.status, 200, open);
      await response.body?.cancel();
    }
  } finally {
    await Promise.all([server.close(), plain.close()]);
  }
});

test("a connection to a keyed server that never authenticates is closed after the handshake timeout", async () => {
  const logs = new LogCapture();
  const server = new RpcServer(runtime, { dispatcher: new Dispatcher({ router: new Router(), log: logs.logger }), log: logs.logger, maxMessageBytes: 1 << 20, clusterKey: KEY, authTimeoutMs: 200 });
  const listener = await server.listen("127.0.0.1", 0);
  try {
    const idle = await connectRaw(listener.port);
    await idle.closed;
    assert.equal(server.stats.rejected, 1);
    assert.ok(logs.lines.some((l) => String(l.msg).endsWith("no cluster key handshake within 200 ms")));
  } finally {
    await server.stopAccepting();
    server.closeAll();
  }
});
