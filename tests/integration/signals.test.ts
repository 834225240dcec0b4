import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { demo } from "../../src/demo/demo.ts";
import { DUPLICATE_SIGNAL_MS } from "../../src/lifecycle/signals.ts";
import type { Channel } from "../../src/rpc/channel.ts";
import { createClient } from "../../src/rpc/client.ts";
import { MessageDecoder } from "../../src/wire/decoder.ts";
import { connectChannel, connectRaw, type RawConnection, rejectsWith } from "../helpers/net.ts";
import { type NodeProcess, RUNNER_NAMES, sendSignal, startNodeProcess, stopProcess } from "../helpers/process.ts";

/** A channel that records the $goaway it hears. */
async function watchedChannel(port: number): Promise<{ channel: Channel; goaway: Promise<unknown> }> {
  let heard!: (info: unknown) => void;
  const goaway = new Promise<unknown>((resolve) => (heard = resolve));
  const channel = await connectChannel(port, { onNotification: (method, params) => method === "$goaway" && heard(params[0]) });
  return { channel, goaway };
}

/**
 * Sends `demo.sleep` and resolves once the node has dispatched it: a $ping
 * behind it on the same connection comes back after. (The call is wrapped:
 * an async function returning a promise would wait for it.)
 */
async function sleepStarted(channel: Channel, ms: number): Promise<{ call: Promise<unknown> }> {
  const call = createClient(demo, channel).sleep({ ms });
  call.catch(() => undefined); // observed later by the test
  await channel.call("$ping", undefined);
  return { call };
}

/** Reads msgpack-rpc messages from a raw connection as they arrive. */
function rawReader(raw: RawConnection): (count: number) => Promise<unknown[]> {
  const decoder = new MessageDecoder(1 << 20);
  const messages: unknown[] = [];
  let offset = 0;
  return async (count) => {
    while (messages.length < count) {
      const all = await raw.waitForBytes(offset + 1);
      messages.push(...decoder.push(all.subarray(offset)));
      offset = all.byteLength;
    }
    return messages.slice(0, count);
  };
}

function summaryOf(proc: NodeProcess): Promise<Record<string, unknown>> {
  return proc.waitForLine((l) => String(l.msg).startsWith("stopped:"));
}

for (const runner of RUNNER_NAMES) {
  test(`${runner}: SIGTERM lets the call in flight finish, tells every client $goaway, baffles late calls, exits 0`, async () => {
    const proc = await startNodeProcess(runner);
    try {
      const busy = await watchedChannel(proc.port);
      const idle = [await watchedChannel(proc.port), await watchedChannel(proc.port)];
      const raw = await connectRaw(proc.port);
      const read = rawReader(raw);
      const { call: inflight } = await sleepStarted(busy.channel, 400);
      sendSignal(proc, "SIGTERM");
      for (const { goaway } of [busy, ...idle]) assert.deepEqual(await goaway, { node: proc.lines[0]!.node, reason: "draining" });
      const [goaway] = await read(1);
      assert.deepEqual(goaway, [2, "$goaway", [{ node: proc.lines[0]!.node, reason: "draining" }]]);
      // A plain msgpack-rpc client that sends anyway is answered by the baffle.
      raw.socket.write(encode([0, 5, "demo.echo", ["late"]]));
      const [, reply] = (await read(2)) as [unknown, [number, number, { code: string; processed: boolean }, unknown]];
      assert.equal(reply[1], 5);
      assert.equal(reply[2].code, "SHUTTING_DOWN");
      assert.equal(reply[2].processed, false);
      const { sleptMs } = (await inflight) as { sleptMs: number };
      assert.ok(sleptMs >= 399, `slept ${sleptMs} ms`);
      assert.equal(await proc.exited, 0);
      const summary = await summaryOf(proc);
      assert.equal(summary.completed, 1);
      assert.equal(summary.baffled, 1);
      assert.equal(summary.cancelled, 0);
      assert.equal(summary.handled, 1, "only the sleep entered a handler; the baffled call never did");
      raw.socket.close();
    } finally {
      await stopProcess(proc);
    }
  });

  test(`${runner}: while draining, /readyz is 503 and /healthz 200, and a connection opened during the drain delay hears $goaway`, async () => {
    const proc = await startNodeProcess(runner, { EBB_DRAIN_DELAY_MS: "400" });
    try {
      const http = `http://127.0.0.1:${proc.httpPort}`;
      assert.equal((await fetch(`${http}/readyz`)).status, 200);
      const watched = await watchedChannel(proc.port);
      sendSignal(proc, "SIGTERM");
      await watched.goaway;
      const ready = await fetch(`${http}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal(ready.headers.get("connection"), "close");
      await ready.body?.cancel();
      const health = await fetch(`${http}/healthz`);
      assert.equal(health.status, 200);
      await health.body?.cancel();
      const late = await watchedChannel(proc.port);
      assert.deepEqual(await late.goaway, { node: proc.lines[0]!.node, reason: "draining" });
      assert.equal(await proc.exited, 0);
    } finally {
      await stopProcess(proc);
    }
  });

  test(`${runner}: a handler that outlives the shutdown timeout is cancelled; exit 1 within timeout + 1 s`, async () => {
    const proc = await startNodeProcess(runner, { EBB_SHUTDOWN_TIMEOUT_MS: "300" });
    try {
      const { channel } = await watchedChannel(proc.port);
      const { call: stuck } = await sleepStarted(channel, 60_000);
      const signalled = Date.now();
      sendSignal(proc, "SIGTERM");
      const error = await rejectsWith(stuck);
      assert.equal(error.code, "CANCELLED");
      assert.equal(await proc.exited, 1);
      const elapsed = Date.now() - signalled;
      assert.ok(elapsed < 300 + 1_000, `exited ${elapsed} ms after SIGTERM`);
      const summary = await summaryOf(proc);
      assert.equal(summary.cancelled, 1);
      assert.equal(summary.timedOut, true);
    } finally {
      await stopProcess(proc);
    }
  });

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    test(`${runner}: a second ${signal} exits at once with ${signal === "SIGINT" ? 130 : 143}`, async () => {
      const proc = await startNodeProcess(runner);
      try {
        const { channel } = await watchedChannel(proc.port);
        const { call: stuck } = await sleepStarted(channel, 60_000);
        sendSignal(proc, signal);
        await proc.waitForLine((l) => l.msg === "draining");
        // A person's second press, not the same one delivered twice: that is ignored (DUPLICATE_SIGNAL_MS).
        await new Promise<void>((resolve) => setTimeout(resolve, DUPLICATE_SIGNAL_MS));
        sendSignal(proc, signal);
        assert.equal(await proc.exited, signal === "SIGINT" ? 130 : 143);
        assert.equal((await rejectsWith(stuck)).code, "UNAVAILABLE");
      } finally {
        await stopProcess(proc);
      }
    });
  }

  test(`${runner}: a signal during the startup hooks aborts them; never ready, prompt exit`, async () => {
    const proc = await startNodeProcess(runner, { EBB_DEMO_WARMUP_MS: "60000" });
    try {
      await proc.waitForLine((l) => l.msg === 'startup hook "demo-warmup" running');
      const http = `http://127.0.0.1:${proc.httpPort}`;
      const ready = await fetch(`${http}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { state: string }).state, "starting");
      const channel = await connectChannel(proc.port);
      const notReady = await rejectsWith(channel.call("demo.echo", 1));
      assert.equal(notReady.code, "UNAVAILABLE");
      assert.equal(notReady.processed, false);
      const signalled = Date.now();
      sendSignal(proc, "SIGTERM");
      assert.equal(await proc.exited, 0);
      assert.ok(Date.now() - signalled < 2_000, `exited ${Date.now() - signalled} ms after SIGTERM`);
      assert.ok(!proc.lines.some((l) => l.state === "ready"), "the node never became ready");
    } finally {
      await stopProcess(proc);
    }
  });

  test(`${runner}: an idle connection and one that sent half a message do not hold shutdown up`, async () => {
    const proc = await startNodeProcess(runner);
    try {
      const idle = await connectRaw(proc.port);
      const half = await connectRaw(proc.port);
      half.socket.write(encode([0, 1, "demo.echo", ["x".repeat(100)]]).subarray(0, 20));
      const signalled = Date.now();
      sendSignal(proc, "SIGTERM");
      assert.equal(await proc.exited, 0);
      // Far below the 10 s shutdown timeout: nothing waited on them.
      assert.ok(Date.now() - signalled < 2_000, `exited ${Date.now() - signalled} ms after SIGTERM`);
      idle.socket.close();
      half.socket.close();
    } finally {
      await stopProcess(proc);
    }
  });

  test(`${runner}: a client that disconnects mid-call during the drain still lets the counter reach zero`, async () => {
    const proc = await startNodeProcess(runner);
    try {
      const raw = await connectRaw(proc.port);
      const read = rawReader(raw);
      raw.socket.write(encode([0, 1, "demo.sleep", [{ ms: 300 }]]));
      raw.socket.write(encode([0, 2, "$ping", []]));
      await read(1); // the $ping answer: the sleep is running
      sendSignal(proc, "SIGTERM");
      await read(2); // $goaway
      raw.socket.close();
      assert.equal(await proc.exited, 0);
      const summary = await summaryOf(proc);
      assert.equal(summary.cancelled, 0);
      assert.equal(summary.timedOut, false);
    } finally {
      await stopProcess(proc);
    }
  });
}
