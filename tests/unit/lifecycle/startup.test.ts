import { test } from "node:test";
import assert from "node:assert/strict";
import { runStartupHooks, StartupError } from "../../../src/lifecycle/startup.ts";
import { silentLogger } from "../../../src/log.ts";

const log = silentLogger;

test("hooks run one after another in order", async () => {
  const order: string[] = [];
  await runStartupHooks(
    [
      { name: "a", run: async () => void order.push("a") },
      { name: "b", run: () => void order.push("b") },
    ],
    { timeoutMs: 1_000, abort: new AbortController().signal, log },
  );
  assert.deepEqual(order, ["a", "b"]);
});

test("a failing hook is named in the error", async () => {
  await assert.rejects(
    runStartupHooks([{ name: "warm-cache", run: () => Promise.reject(new Error("db down")) }], { timeoutMs: 1_000, abort: new AbortController().signal, log }),
    (error: unknown) => error instanceof StartupError && error.hook === "warm-cache" && !error.aborted && /Startup hook "warm-cache" failed: db down/.test(error.message),
  );
});

test("a hook that outlives the startup timeout fails, named, and sees its signal abort", async () => {
  let sawAbort = false;
  await assert.rejects(
    runStartupHooks(
      [
        {
          name: "slow",
          run: (signal) => new Promise<void>((resolve) => signal.addEventListener("abort", () => ((sawAbort = true), resolve()))),
        },
      ],
      { timeoutMs: 50, abort: new AbortController().signal, log },
    ),
    (error: unknown) => error instanceof StartupError && error.hook === "slow" && /timed out: startup took longer than 50 ms/.test(error.message),
  );
  assert.equal(sawAbort, true);
});

test("a hook that ignores its signal cannot hold startup past an abort", async () => {
  const abort = new AbortController();
  const running = runStartupHooks([{ name: "stubborn", run: () => new Promise<void>(() => {}) }], { timeoutMs: 60_000, abort: abort.signal, log });
  abort.abort();
  await assert.rejects(running, (error: unknown) => error instanceof StartupError && error.aborted && error.hook === "stubborn");
});
