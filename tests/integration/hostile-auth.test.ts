import { test } from "node:test";
import assert from "node:assert/strict";
import { createConnection } from "node:net";
import { encode } from "@msgpack/msgpack";
import type { EbbNode } from "../../src/node.ts";
import { AUTH_FAILURE_BURST, AUTH_FAILURES_PER_SECOND } from "../../src/rpc/auth-guard.ts";
import { AUTH_METHOD, DEFAULT_CLUSTER_ID, newNonce, proof, readNonce } from "../../src/rpc/auth.ts";
import { createClient } from "../../src/rpc/client.ts";
import { MessageDecoder } from "../../src/wire/decoder.ts";
import { connectChannel, memberJoined, runtime, startTestNode } from "../helpers/net.ts";
import { silentLogger } from "../../src/log.ts";
import { RpcSwimTransport } from "../../src/membership/transport.ts";
import { probe, probeHandlers } from "../helpers/services.ts";

const KEY = "q9Hn2V0d8mXbR4tLcW7yPz1sKfA6uJeG3oNvIhTgBkE=";
const OTHER_KEY = "Zx8Wc3Vb6Nm1Lk4Jh7Gf0Ds2Ap5Oi9Uy_Tr-Ee3Qw";
/** The attacker's own loopback address (Linux routes all of 127/8), so honest clients on 127.0.0.1 are another source. */
const ATTACKER = "127.0.0.2";

/** A raw msgpack-rpc connection from `localAddress`: what an attacker's script does. */
function attackerConnection(port: number, localAddress: string) {
  const socket = createConnection({ host: "127.0.0.1", port, localAddress });
  const decoder = new MessageDecoder(1 << 20);
  const messages: unknown[] = [];
  let bytes = 0;
  let wake: (() => void) | undefined;
  let closed = false;
  socket.on("data", (chunk: Uint8Array) => {
    bytes += chunk.byteLength;
    messages.push(...decoder.push(new Uint8Array(chunk)));
    wake?.();
  });
  socket.on("error", () => {});
  socket.on("close", () => {
    closed = true;
    wake?.();
  });
  return {
    send: (message: unknown) => socket.write(encode(message)),
    /** The next message, or undefined once the server closed without one. */
    async next(): Promise<unknown> {
      while (messages.length === 0 && !closed) await new Promise<void>((resolve) => (wake = resolve));
      return messages.shift();
    },
    get bytes() {
      return bytes;
    },
    destroy: () => socket.destroy(),
  };
}

type Answer = [number, number, { code: string; message: string } | null, Record<string, unknown> | null];

test("one unauthenticated $auth exchange gives an attacker nothing to test key guesses against offline", async () => {
  const a = await startTestNode(() => {}, { clusterKey: [KEY] });
  const b = await startTestNode(() => {}, { clusterKey: [OTHER_KEY] });
  try {
    const answers: Answer[] = [];
    for (const node of [a, b]) {
      const attacker = attackerConnection(node.port, ATTACKER);
      const c = newNonce();
      // The version 1 client's opening: a nonce, which used to buy HMAC(key, "server" + c + s).
      attacker.send([0, 1, AUTH_METHOD, [{ nonce: c }]]);
      const answer = (await attacker.next()) as Answer;
      answers.push(answer);
      // Offline: a candidate key matches when its server proof equals what was sent. There is none to compare.
      const s = readNonce(answer[3]?.nonce)!;
      assert.ok(s, "a 16-byte server nonce");
      assert.equal(answer[3]?.proof, undefined, "no proof before the client proved the key");
      assert.ok(!Object.values(answer[3]!).some((v) => v instanceof Uint8Array && v.byteLength === 32 && Buffer.from(v).equals(proof(KEY, "server", c, s, DEFAULT_CLUSTER_ID))));
      attacker.destroy();
    }
    assert.deepEqual(answers.map((x) => Object.keys(x[3]!)), [["nonce"], ["nonce"]], "the same answer whatever the key");
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("200 wrong cluster key handshakes from one host in a burst are mostly turned away unheard, logged in at most 3 lines, and honest clients and members are still served", async () => {
  const a = await startTestNode((node) => node.register(probe, probeHandlers), { nodeId: "a", clusterKey: [KEY], httpPort: 0 });
  let b: Awaited<ReturnType<typeof startTestNode>> | undefined;
  try {
    const started = performance.now();
    let wrongKey = 0;
    let turnedAway = 0;
    const attempt = async () => {
      const attacker = attackerConnection(a.port, ATTACKER);
      const c = newNonce();
      attacker.send([0, 1, AUTH_METHOD, [{ nonce: c }]]);
      const hello = (await attacker.next()) as Answer | undefined;
      if (hello === undefined) {
        assert.equal(attacker.bytes, 0, "closed before any handshake work: not even a nonce");
        turnedAway++;
        return;
      }
      const s = readNonce(hello[3]?.nonce)!;
      attacker.send([0, 2, AUTH_METHOD, [{ nonce: c, cluster: DEFAULT_CLUSTER_ID, proofs: [proof(OTHER_KEY, "client", c, s, DEFAULT_CLUSTER_ID)] }]]);
      const verdict = (await attacker.next()) as Answer | undefined;
      assert.equal(verdict?.[2]?.code, "UNAUTHENTICATED");
      if (verdict?.[2]?.message === "Proved an unknown cluster key") wrongKey++;
      else turnedAway++;
      attacker.destroy();
    };
    for (let sent = 0; sent < 200; sent += 20) await Promise.all(Array.from({ length: 20 }, attempt));
    const seconds = (performance.now() - started) / 1000;

    // Guesses get the burst and the refill rate, not the thousands per second of before.
    assert.ok(wrongKey <= AUTH_FAILURE_BURST + Math.ceil(seconds * AUTH_FAILURES_PER_SECOND) + 1, `${wrongKey} guesses checked in ${seconds.toFixed(2)} s`);
    assert.equal(wrongKey + turnedAway, 200);
    assert.ok(turnedAway >= 150, `${turnedAway} turned away`);
    const lines = a.logs.lines.filter((l) => String(l.msg).includes(ATTACKER));
    assert.ok(lines.length >= 1 && lines.length <= 3, JSON.stringify(lines.map((l) => l.msg)));
    // Counted for /metrics.
    const metrics = await (await fetch(`http://127.0.0.1:${a.node.httpAddress!.port}/metrics`)).text();
    assert.equal(Number(/^ebb_auth_failures_total\{reason="unknown_key"\} (\d+)$/m.exec(metrics)?.[1]), wrongKey);
    assert.equal(Number(/^ebb_auth_throttled_total (\d+)$/m.exec(metrics)?.[1]), turnedAway);
    // Still turned away: the next connection from that host is closed before it can say anything.
    const again = attackerConnection(a.port, ATTACKER);
    assert.equal(await again.next(), undefined);
    assert.equal(again.bytes, 0);

    // An honest keyed client on another host is served right after, and a burst of successful handshakes
    // from one host (members and clients on the same machine) never throttles it.
    const channels = await Promise.all(Array.from({ length: 3 * AUTH_FAILURE_BURST }, () => connectChannel(a.port, { clusterKey: KEY })));
    assert.deepEqual(await Promise.all(channels.map((ch, i) => createClient(probe, ch).add({ a: i, b: 1 }))), channels.map((_, i) => i + 1));
    for (const channel of channels) channel.close();

    // And a keyed member joins: a cluster of two forms.
    b = await startTestNode((node) => node.register(probe, probeHandlers), { nodeId: "b", clusterKey: [KEY], seeds: [`127.0.0.1:${a.port}`] });
    await Promise.all([memberJoined(a.node, "b"), memberJoined(b.node, "a")]);
    assert.deepEqual(b.node.members().map((m) => m.id).sort(), ["a", "b"]);
  } finally {
    await Promise.all([a.close(), b?.close()]);
  }
});

test("membership leaves a member that refused its key alone for a while, so it cannot spend its own host's handshake budget", async () => {
  const keyed = await startTestNode((node) => node.register(probe, probeHandlers), { clusterKey: [KEY], httpPort: 0 });
  const transport = new RpcSwimTransport(runtime, silentLogger, 1 << 20, OTHER_KEY);
  try {
    const address = `127.0.0.1:${keyed.port}`;
    const ping = () => new Promise((resolve) => transport.request(address, { t: "ping", from: "x", target: "test-node" }, 1_000, resolve));
    // Before the back-off: 20 failed handshakes and 31 connections throttled, from one member's probes.
    for (let i = 0; i < 51; i++) assert.equal(await ping(), undefined);
    const metrics = await (await fetch(`http://127.0.0.1:${keyed.node.httpAddress!.port}/metrics`)).text();
    assert.match(metrics, /^ebb_auth_failures_total\{reason="unknown_key"\} 1$/m);
    assert.match(metrics, /^ebb_auth_throttled_total 0$/m);
  } finally {
    transport.close();
    await keyed.close();
  }
});
