import { test } from "node:test";
import assert from "node:assert/strict";
import { InflightCounter } from "../../../src/lifecycle/inflight.ts";
import { type ShutdownSummary, type StopParts, StopSequence } from "../../../src/lifecycle/shutdown.ts";
import { Lifecycle } from "../../../src/lifecycle/state.ts";
import { silentLogger } from "../../../src/log.ts";
import type { RpcError } from "../../../src/rpc/errors.ts";
import { ManualClock, settle } from "../../helpers/clock.ts";

/** A stop sequence over a real lifecycle and in-flight counter; the server, membership and HTTP record what was done to them, and when. */
function rig(options: { drainDelayMs?: number; shutdownTimeoutMs?: number; closes?: "at once" | "never"; server?: boolean; failing?: boolean } = {}) {
  const clock = new ManualClock();
  const lifecycle = new Lifecycle("n1");
  lifecycle.advance("ready");
  const inflight = new InflightCounter();
  const steps: string[] = [];
  const at = (step: string) => steps.push(`${clock.now()} ${step}`);
  lifecycle.onChange((state) => at(`state ${state}`));
  const aborted: RpcError[] = [];
  const parts: StopParts = {
    lifecycle,
    inflight,
    server: () =>
      options.server === false
        ? undefined
        : {
            broadcastGoaway: (goaway) => at(`goaway ${goaway.node} ${goaway.reason}`),
            stopAccepting: async () => {
              at("stop accepting");
              if (options.failing) throw new Error("listener stop failed");
            },
            endAll: () => at("end connections"),
            whenAllClosed: () => (options.closes === "never" ? new Promise<void>(() => {}) : Promise.resolve()),
            closeAll: () => at("close connections"),
          },
    abortAll: (error) => {
      at("abort all");
      aborted.push(error);
    },
    leave: async () => {
      at("leave");
      if (options.failing) throw new Error("leave failed");
    },
    stopHttp: async () => void at("stop http"),
    closeClients: () => at("close clients"),
  };
  const stop = new StopSequence(parts, {
    nodeId: "n1",
    drainDelayMs: options.drainDelayMs ?? 0,
    shutdownTimeoutMs: options.shutdownTimeoutMs ?? 10_000,
    clock,
    log: silentLogger,
  });
  let summary: ShutdownSummary | undefined;
  const run = () => stop.run("SIGTERM").then((s) => (summary = s));
  return { clock, lifecycle, inflight, steps, aborted, stop, run, summary: () => summary };
}

test("the steps run in DESIGN §4 order: draining and $goaway, baffle, stop accepting, wait, leave, end, close, HTTP, clients, stopped", async () => {
  const r = rig();
  void r.run();
  await r.clock.advance(0);
  assert.deepEqual(r.steps, [
    "0 state draining",
    "0 goaway n1 draining",
    "0 stop accepting",
    "0 leave",
    "0 end connections",
    "0 close connections",
    "0 stop http",
    "0 close clients",
    "0 state stopped",
  ]);
  assert.deepEqual(r.summary(), { reason: "SIGTERM", drainMs: 0, completed: 0, baffled: 0, cancelled: 0, timedOut: false, handled: 0, exitCode: 0 });
});

test("the drain delay serves normally, then the baffle closes; a request admitted during the delay is counted completed", async () => {
  const r = rig({ drainDelayMs: 1_000 });
  void r.run();
  await r.clock.advance(999);
  assert.equal(r.lifecycle.admit(), undefined, "still admitted at 999 ms");
  r.inflight.enter();
  assert.ok(!r.steps.some((s) => s.includes("stop accepting")));
  await r.clock.advance(1);
  assert.equal(r.lifecycle.admit()?.code, "SHUTTING_DOWN", "baffled at 1000 ms");
  assert.ok(r.steps.includes("1000 stop accepting"));
  assert.ok(!r.steps.some((s) => s.includes("leave")), "waits for the request in flight");
  await r.clock.advance(250);
  r.inflight.leave();
  await settle();
  assert.ok(r.steps.includes("1250 leave"));
  assert.deepEqual({ ...r.summary(), handled: undefined }, { reason: "SIGTERM", drainMs: 1250, completed: 1, baffled: 1, cancelled: 0, timedOut: false, handled: undefined, exitCode: 0 });
});

test("at the shutdown timeout what is still in flight is aborted CANCELLED, and the exit code is 1", async () => {
  const r = rig({ shutdownTimeoutMs: 5_000 });
  r.inflight.enter();
  r.inflight.enter();
  r.inflight.enter();
  void r.run();
  await r.clock.advance(1_000);
  r.inflight.leave();
  await r.clock.advance(3_999);
  assert.equal(r.aborted.length, 0, "nothing aborted before the timeout");
  await r.clock.advance(1);
  assert.equal(r.aborted.length, 1);
  assert.equal(r.aborted[0]!.code, "CANCELLED");
  assert.match(r.aborted[0]!.message, /shutdown timeout 5000 ms/);
  assert.ok(r.steps.indexOf("5000 abort all") < r.steps.indexOf("5000 leave"));
  const summary = r.summary()!;
  assert.equal(summary.timedOut, true);
  assert.equal(summary.cancelled, 2);
  assert.equal(summary.completed, 1);
  assert.equal(summary.exitCode, 1);
  assert.equal(summary.drainMs, 5_000);
});

test("connections that do not close within the linger are closed for them", async () => {
  const r = rig({ closes: "never" });
  void r.run();
  await r.clock.advance(499);
  assert.ok(r.steps.includes("0 end connections"));
  assert.ok(!r.steps.some((s) => s.includes("close connections")));
  await r.clock.advance(1);
  assert.ok(r.steps.includes("500 close connections"));
  assert.equal(r.summary()?.drainMs, 500);
  assert.equal(r.clock.pending, 0, "no timer outlives the sequence");
});

test("a node that never listened only becomes stopped", async () => {
  const r = rig({ server: false });
  await r.run();
  assert.deepEqual(r.steps, ["0 state stopped"]);
  assert.equal(r.summary()?.exitCode, 0);
});

test("drainSeconds is 0 before the drain and counts on the sequence's clock after", async () => {
  const r = rig({ drainDelayMs: 2_000 });
  assert.equal(r.stop.drainSeconds(), 0);
  void r.run();
  await r.clock.advance(1_500);
  assert.equal(r.stop.drainSeconds(), 1.5);
});

test("a step that fails is logged and the sequence still reaches stopped", async () => {
  const r = rig({ failing: true });
  void r.run();
  await r.clock.advance(0);
  assert.deepEqual(r.steps.at(-1), "0 state stopped");
  assert.ok(r.steps.includes("0 close connections"));
  assert.equal(r.summary()?.exitCode, 0);
});
