import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeMulti, encode } from "@msgpack/msgpack";
import { silentLogger } from "../../../src/log.ts";
import { RpcSwimTransport, SWIM_CONNECT_TIMEOUT_MS } from "../../../src/membership/transport.ts";
import type { SwimMessage } from "../../../src/membership/types.ts";
import type { Listener, Socket } from "../../../src/runtime/types.ts";
import { runtime, startSilentServer } from "../../helpers/net.ts";

const ping: SwimMessage = { t: "ping", from: "a", target: "b" };

/** Resolves with the reply a request gets (undefined: none), and how long it took. */
function ask(transport: RpcSwimTransport, to: string, timeoutMs: number): Promise<{ reply: SwimMessage | undefined; tookMs: number }> {
  const started = Date.now();
  return new Promise((resolve) => transport.request(to, ping, timeoutMs, (reply) => resolve({ reply, tookMs: Date.now() - started })));
}

/**
 * A member's port whose first connection swallows every request, as a connection stuck in
 * TCP retransmission back-off does after a partition; later connections answer pings with acks.
 */
async function stuckFirstConnection(): Promise<{ listener: Listener; accepted: () => number; sockets: Set<Socket> }> {
  let accepted = 0;
  const sockets = new Set<Socket>();
  const listener = await runtime.listen({
    host: "127.0.0.1",
    port: 0,
    accept: (socket) => {
      const stuck = accepted++ === 0;
      sockets.add(socket);
      return {
        data(chunk) {
          if (stuck) return;
          // Loopback delivers these small requests whole: one chunk, whole messages.
          for (const message of decodeMulti(chunk) as Iterable<unknown[]>) {
            if (message[0] === 0) socket.write(encode([1, message[1], null, { t: "ack", from: "b" }]));
          }
        },
        end: () => socket.close(),
        close: () => sockets.delete(socket),
      };
    },
  });
  return { listener, accepted: () => accepted, sockets };
}

test("a membership request that got no answer retires its pooled connection: the next goes on a fresh one", async () => {
  const peer = await stuckFirstConnection();
  const transport = new RpcSwimTransport(runtime, silentLogger, 1 << 20);
  const to = `127.0.0.1:${peer.listener.port}`;
  try {
    const first = await ask(transport, to, 200);
    assert.equal(first.reply, undefined, "the stuck connection answers nothing");
    const second = await ask(transport, to, 2_000);
    assert.equal(second.reply?.t, "ack");
    assert.equal(peer.accepted(), 2, "the second request opened a new connection");
    // An answered request keeps its connection.
    const third = await ask(transport, to, 2_000);
    assert.equal(third.reply?.t, "ack");
    assert.equal(peer.accepted(), 2);
    assert.equal(transport.pooled, 1);
  } finally {
    transport.close();
    for (const socket of peer.sockets) socket.close();
    await peer.listener.stop();
  }
});

test("a connection that never completes its handshake fails the request within its timeout, and is tried once at a time", async () => {
  // The peer accepts TCP but never answers the cluster-key handshake: connect would wait AUTH_TIMEOUT_MS (10 s).
  const peer = await startSilentServer();
  const transport = new RpcSwimTransport(runtime, silentLogger, 1 << 20, "a-cluster-key-of-enough-length-0123456789");
  const to = `127.0.0.1:${peer.port}`;
  try {
    const first = await ask(transport, to, 300);
    assert.equal(first.reply, undefined);
    assert.ok(first.tookMs < 300 + 2_000, `gave up after ${first.tookMs} ms`);
    // The first attempt is still open (it may yet complete): a second request does not open another.
    const second = await ask(transport, to, 300);
    assert.equal(second.reply, undefined);
    assert.ok(second.tookMs < 1_000, `refused without waiting out its timeout, after ${second.tookMs} ms`);
    assert.equal(peer.accepted, 1, "one connection attempt at a time per address");
    assert.ok(SWIM_CONNECT_TIMEOUT_MS <= 1_000);
  } finally {
    transport.close();
    await peer.stop();
  }
});
