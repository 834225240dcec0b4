import { test } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { defineService } from "../../../src/rpc/contract.ts";
import { Dispatcher, type IncomingCall } from "../../../src/rpc/dispatch.ts";
import { RpcError } from "../../../src/rpc/errors.ts";
import { Router } from "../../../src/rpc/router.ts";
import { silentLogger } from "../../../src/log.ts";

const math = defineService("math", {
  add: { input: z.object({ a: z.number(), b: z.number() }), output: z.number() },
  fail: { input: z.string(), output: z.never() },
  broken: { input: z.unknown(), output: z.string() },
  wait: { input: z.unknown(), output: z.string() },
});

/** A dispatcher of its own for each test: counters, admission switch and leave hook start fresh. */
function fixture() {
  const state = { entered: 0, left: 0, baffled: false, onLeave: undefined as (() => void) | undefined };
  const router = new Router().register(math, {
    add: ({ a, b }) => a + b,
    fail: (kind) => {
      if (kind === "app") throw new RpcError("insufficient funds", "APPLICATION", { data: { balance: 3 } });
      throw new Error("bug in handler");
    },
    broken: () => 42 as unknown as string,
    wait: (_input, ctx) =>
      new Promise((_resolve, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason))),
  });
  const dispatcher = new Dispatcher({
    router,
    log: silentLogger,
    hooks: {
      admit: () => (state.baffled ? new RpcError("draining", "SHUTTING_DOWN") : undefined),
      enter: () => state.entered++,
      leave: () => {
        state.left++;
        state.onLeave?.();
      },
    },
    builtins: { $ping: () => "pong" },
  });
  const call = (method: string, params: unknown[], meta?: IncomingCall["meta"]): Promise<{ error: RpcError | null; result: unknown }> =>
    new Promise((resolve) => {
      dispatcher.dispatch({ method, params, meta, peer: "test", reply: (error, result) => resolve({ error, result }) });
    });
  return { state, dispatcher, call };
}

test("dispatch runs a handler with its parsed input", async () => {
  const { call } = fixture();
  assert.deepEqual(await call("math.add", [{ a: 2, b: 3 }]), { error: null, result: 5 });
});

test("dispatch answers METHOD_NOT_FOUND for an unknown method", async () => {
  const { call } = fixture();
  const { error } = await call("math.mul", [{}]);
  assert.equal(error?.code, "METHOD_NOT_FOUND");
  assert.equal(error?.rawMessage, 'Unknown method "math.mul"');
  assert.equal((await call("$nope", [])).error?.code, "METHOD_NOT_FOUND");
});

test("dispatch answers INVALID_PARAMS with the zod issues", async () => {
  const { call } = fixture();
  const { error } = await call("math.add", [{ a: "2" }]);
  assert.equal(error?.code, "INVALID_PARAMS");
  assert.match(error!.rawMessage, /Invalid input for "math.add": a: /);
  const issues = error!.data as { path: string[] }[];
  assert.deepEqual(issues.map((i) => i.path), [["a"], ["b"]]);
  assert.equal((await call("math.add", [{ a: 1, b: 2 }, 3])).error?.code, "INVALID_PARAMS");
});

test("dispatch passes an application error through and hides nothing else", async () => {
  const { call } = fixture();
  const app = await call("math.fail", ["app"]);
  assert.equal(app.error?.code, "APPLICATION");
  assert.deepEqual(app.error?.data, { balance: 3 });
  const bug = await call("math.fail", ["bug"]);
  assert.equal(bug.error?.code, "INTERNAL");
  assert.equal(bug.error?.rawMessage, "bug in handler");
});

test("dispatch answers INTERNAL when a handler breaks its output contract", async () => {
  const { call } = fixture();
  const { error } = await call("math.broken", [null]);
  assert.equal(error?.code, "INTERNAL");
  assert.match(error!.rawMessage, /returned an invalid result/);
});

test("dispatch enforces the deadline and aborts the handler's signal", async () => {
  const { call } = fixture();
  const started = Date.now();
  const { error } = await call("math.wait", [null], { deadline: 30 });
  assert.equal(error?.code, "DEADLINE_EXCEEDED");
  assert.ok(Date.now() - started >= 25);
  assert.equal((await call("math.wait", [null], { deadline: 0 })).error?.code, "DEADLINE_EXCEEDED");
});

test("the admission hook answers without entering a handler", async () => {
  const { call, state } = fixture();
  const before = state.entered;
  state.baffled = true;
  try {
    const { error } = await call("math.add", [{ a: 1, b: 1 }]);
    assert.equal(error?.code, "SHUTTING_DOWN");
    assert.equal(error?.processed, false);
    assert.equal(state.entered, before);
    assert.deepEqual(await call("$ping", []), { error: null, result: "pong" });
  } finally {
    state.baffled = false;
  }
});

test("every entered call leaves, whatever its outcome", async () => {
  const { call, dispatcher, state } = fixture();
  await call("math.add", [{ a: 1, b: 1 }]);
  await call("math.fail", ["bug"]);
  await call("math.wait", [null], { deadline: 5 });
  // The aborted handler settles in a later tick: wait for its leave.
  if (dispatcher.activeCount > 0) await new Promise<void>((resolve) => (state.onLeave = () => dispatcher.activeCount === 0 && resolve()));
  assert.equal(state.entered, 3);
  assert.equal(state.entered, state.left);
});

test("abortAll answers every running call and aborts its handler", async () => {
  const { call, dispatcher } = fixture();
  const pending = [call("math.wait", [1]), call("math.wait", [2])];
  assert.equal(dispatcher.activeCount, 2);
  dispatcher.abortAll(new RpcError("shutdown timed out", "CANCELLED"));
  for (const { error } of await Promise.all(pending)) assert.equal(error?.code, "CANCELLED");
});

test("a z.unknown() schema is not parsed, but a refined one is: input and output alike", async () => {
  const loose = defineService("loose", {
    any: { input: z.unknown(), output: z.unknown() },
    odd: { input: z.unknown().refine((value) => typeof value === "number" && value % 2 === 1, "must be odd"), output: z.any() },
    even: { input: z.unknown(), output: z.unknown().refine((value) => value === 2, "must be 2") },
  });
  const router = new Router().register(loose, { any: (input) => input, odd: (input) => input, even: (input) => input });
  const routes = ["loose.any", "loose.odd", "loose.even"].map((name) => router.route(name)!);
  assert.deepEqual(routes.map((r) => [r.checksInput, r.checksOutput]), [[false, false], [true, false], [false, true]]);
  const dispatcher = new Dispatcher({ router, log: silentLogger });
  const call = (method: string, input: unknown) =>
    new Promise<{ error: RpcError | null; result: unknown }>((resolve) => dispatcher.dispatch({ method, params: [input], meta: undefined, peer: "test", reply: (error, result) => resolve({ error, result }) }));
  // Not parsed: the very object comes back, not a copy.
  const value = { nested: [1, { deep: true }] };
  assert.equal((await call("loose.any", value)).result, value);
  assert.equal((await call("loose.odd", 3)).result, 3);
  const even = await call("loose.odd", 4);
  assert.equal(even.error?.code, "INVALID_PARAMS");
  assert.match(even.error!.message, /must be odd/);
  assert.equal((await call("loose.even", 2)).result, 2);
  assert.equal((await call("loose.even", 3)).error?.code, "INTERNAL");
  // Every answer is counted, refusals included.
  const stats = dispatcher.stats.methods;
  assert.deepEqual([...stats.get("loose.odd")!.codes], [["OK", 1], ["INVALID_PARAMS", 1]]);
  assert.deepEqual([...stats.get("loose.even")!.codes], [["OK", 1], ["INTERNAL", 1]]);
});

test("calls answered within timeTogether are timed once, when the outermost span ends: the same duration for each", () => {
  const { dispatcher } = fixture();
  const replies: (RpcError | null)[] = [];
  const call = (method: string, params: unknown[], receivedAt: number): IncomingCall => ({ method, params, meta: undefined, peer: "test", receivedAt, reply: (error) => replies.push(error) });
  const receivedAt = performance.now();
  const stats = () => dispatcher.stats.methods.get("math.add");
  dispatcher.timeTogether(() => {
    dispatcher.dispatch(call("math.add", [{ a: 1, b: 2 }], receivedAt));
    dispatcher.timeTogether(() => dispatcher.dispatch(call("math.add", [{ a: 3, b: 4 }], receivedAt)));
    dispatcher.dispatch(call("math.nope", [], receivedAt));
    // A run of one method and outcome, then another outcome, then the first again.
    dispatcher.dispatch(call("math.add", [{ a: "x" }], receivedAt));
    dispatcher.dispatch(call("math.add", [{ a: 0, b: 0 }], receivedAt - 1));
    // Answered, and not counted until the outermost span ends.
    assert.deepEqual(replies.map((error) => error?.code ?? null), [null, null, "METHOD_NOT_FOUND", "INVALID_PARAMS", null]);
    assert.equal(stats(), undefined);
  });
  const after = performance.now();
  const add = stats()!;
  assert.equal(add.count, 4);
  assert.deepEqual([...add.codes], [["OK", 3], ["INVALID_PARAMS", 1]]);
  assert.equal(dispatcher.stats.methods.get("unknown")?.codes.get("METHOD_NOT_FOUND"), 1);
  // Both took the span's time: from the read to its end, never more than the whole test.
  assert.ok(add.sumSeconds >= 0 && add.sumSeconds <= (4 * (after - receivedAt + 1)) / 1_000);
  // Outside a span, a call is counted as it is answered.
  dispatcher.dispatch(call("math.add", [{ a: 5, b: 6 }], performance.now()));
  assert.equal(stats()!.count, 5);
});
