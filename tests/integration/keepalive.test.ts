// Keep-alive pings and the connect timeout of a channel, over real loopback TCP.
import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { Channel } from "../../src/rpc/channel.ts";
import { KEEPALIVE_GRACE } from "../../src/rpc/server.ts";
import type { Runtime, Socket } from "../../src/runtime/types.ts";
import { connectChannel, connectRaw, messagesOf, rejectsWith, runtime, startSilentServer, startTestNode, until } from "../helpers/net.ts";
import { probe, probeHandlers } from "../helpers/services.ts";

test("a connection whose server stops answering is closed by the keep-alive ping, and its calls fail UNAVAILABLE naming it", async () => {
  const silent = await startSilentServer();
  try {
    const keepaliveMs = 100;
    const channel = await connectChannel(silent.port, { keepaliveMs });
    const started = Date.now();
    const call = rejectsWith(channel.call("probe.echo", 1, { timeoutMs: 30_000 }), "UNAVAILABLE");
    const error = await call;
    const tookMs = Date.now() - started;
    assert.match(error.rawMessage, /outcome unknown: no answer to a keep-alive ping within 100 ms/);
    assert.equal(channel.closed, true);
    // Silence for one interval, then a ping with one interval to answer: found after two to three.
    assert.ok(tookMs >= 2 * keepaliveMs - 10, `closed after ${tookMs} ms, not before two intervals`);
    assert.ok(tookMs < 30_000, "long before the call's own deadline");
  } finally {
    await silent.stop();
  }
});

test("a call that runs longer than the keep-alive interval keeps its connection: the server answers the pings", async () => {
  const { port, close } = await startTestNode((node) => node.register(probe, probeHandlers));
  try {
    // Counts what arrives from the server: once the channel is idle, that is only the answers to its pings.
    let received = 0;
    const counting: Runtime = {
      ...runtime,
      connect: (options) =>
        runtime.connect({
          ...options,
          open: (socket) => {
            const handlers = options.open(socket);
            return { ...handlers, data: (chunk) => (received++, handlers.data(chunk)) };
          },
        }),
    };
    const channel = await Channel.connect(counting, { host: "127.0.0.1", port, keepaliveMs: 300 });
    assert.equal(await channel.call("probe.wait", { ms: 1_500, tag: "keepalive-long" }), "keepalive-long");
    assert.equal(channel.closed, false);
    // Idle, it keeps pinging, the server answers, and it stays open: wait for three answered pings.
    const idleFrom = received;
    await until(() => received >= idleFrom + 3 || channel.closed, "three keep-alive pings answered while idle");
    assert.equal(channel.closed, false);
    assert.equal(await channel.call("probe.add", { a: 1, b: 2 }), 3);
    channel.close();
    await channel.whenClosed();
  } finally {
    await close();
  }
});

test("a connection that does not open within connectTimeoutMs fails UNAVAILABLE, processed false; at most 3 such attempts are pending per address; one that opens later is closed at once", async () => {
  const silent = await startSilentServer();
  try {
    // A runtime whose connect is held back, as a SYN to a vanished host is: the real socket opens only when released.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let opened: Promise<Socket> | undefined;
    const slow: Runtime = {
      ...runtime,
      connect: (options) => {
        opened = held.then(() => runtime.connect(options));
        return opened;
      },
    };
    const started = Date.now();
    const error = await rejectsWith(Channel.connect(slow, { host: "127.0.0.1", port: silent.port, connectTimeoutMs: 100 }), "UNAVAILABLE");
    assert.equal(error.processed, false);
    assert.match(error.rawMessage, /^Cannot connect to 127\.0\.0\.1:\d+: no answer within 100 ms$/);
    assert.ok(Date.now() - started >= 90);
    // Two more may go while it is pending (a healed host is dialled afresh at once), then no more: a vanished host costs a few sockets.
    const attempts: Promise<Socket>[] = [opened!];
    for (let i = 0; i < 2; i++) {
      await rejectsWith(Channel.connect(slow, { host: "127.0.0.1", port: silent.port, connectTimeoutMs: 100 }), "UNAVAILABLE");
      attempts.push(opened!);
    }
    const refused = await rejectsWith(Channel.connect(slow, { host: "127.0.0.1", port: silent.port, connectTimeoutMs: 100 }), "UNAVAILABLE");
    assert.match(refused.rawMessage, /3 earlier attempts are still unanswered$/);
    release();
    await Promise.all(attempts);
    // The late connection is closed by the client: the server sees its close.
    await until(() => silent.closedByPeer === 3, "the connections that opened late are closed");
    // Once it has ended, the address may be dialled again.
    const channel = await Channel.connect(slow, { host: "127.0.0.1", port: silent.port, connectTimeoutMs: 1_000 });
    channel.close();
  } finally {
    await silent.stop();
  }
});

test("a peer that announced keep-alive pings and fell silent is closed by the server after KEEPALIVE_GRACE intervals; a silent peer that announced none is left to the idle timeout", async () => {
  const { node, port, close } = await startTestNode((n) => n.register(probe, probeHandlers), { httpPort: 0 });
  try {
    const announcing = await connectRaw(port);
    const quiet = await connectRaw(port);
    let quietClosed = false;
    void quiet.closed.then(() => (quietClosed = true));
    announcing.socket.write(encode([0, 1, "$ping", [{ keepaliveMs: 100 }]]));
    quiet.socket.write(encode([0, 1, "$ping", []]));
    await Promise.all([announcing.waitForBytes(1), quiet.waitForBytes(1)]);
    const pinged = Date.now();
    // Both fall silent without closing: to the server, peers behind a link that went half-open.
    await announcing.closed;
    const silentMs = Date.now() - pinged;
    assert.ok(silentMs >= KEEPALIVE_GRACE * 100 - 10, `closed after ${silentMs} ms of silence, not before ${KEEPALIVE_GRACE} intervals`);
    const metrics = await (await fetch(`http://127.0.0.1:${node.httpAddress!.port}/metrics`)).text();
    assert.match(metrics, /^ebb_connections_timed_out_total\{kind="silent"\} 1$/m);
    assert.equal(quietClosed, false);
    quiet.socket.write(encode([0, 2, "$ping", []]));
    await until(() => messagesOf(quiet).length === 2, "the quiet peer is still answered");
    quiet.socket.close();
  } finally {
    await close();
  }
});

test("a hostile keep-alive announcement cannot make the server close a peer sooner than 4 x 100 ms, and one that is not a number announces nothing", async () => {
  const { port, close } = await startTestNode((n) => n.register(probe, probeHandlers));
  try {
    const tiny = await connectRaw(port);
    const negative = await connectRaw(port);
    const words = await connectRaw(port);
    tiny.socket.write(encode([0, 1, "$ping", [{ keepaliveMs: 1 }]]));
    negative.socket.write(encode([0, 1, "$ping", [{ keepaliveMs: -5 }]]));
    words.socket.write(encode([0, 1, "$ping", [{ keepaliveMs: "soon" }]]));
    words.socket.write(encode([0, 2, "$ping", [7]]));
    await Promise.all([tiny.waitForBytes(1), negative.waitForBytes(1), until(() => messagesOf(words).length === 2, "two answers")]);
    const pinged = Date.now();
    // Both held to the 100 ms floor: closed after 4 silent intervals of 100 ms, not 4 ms.
    await Promise.all([tiny.closed, negative.closed]);
    assert.ok(Date.now() - pinged >= 4 * 100 - 10, `closed after ${Date.now() - pinged} ms`);
    // A string, or a number instead of the map, announced nothing: that peer is still served.
    words.socket.write(encode([0, 3, "$ping", []]));
    await until(() => messagesOf(words).length === 3, "the peer that announced nothing is still answered");
    words.socket.close();
  } finally {
    await close();
  }
});
