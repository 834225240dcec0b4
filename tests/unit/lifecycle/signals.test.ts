// The signal rules of a node process, on the in-memory runtime and a manual clock.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DUPLICATE_SIGNAL_MS, EXIT_CODES, exitOnSignals } from "../../../src/lifecycle/signals.ts";
import { silentLogger } from "../../../src/log.ts";
import { createMemoryRuntime, MemoryExit } from "../../../src/runtime/memory.ts";
import { ManualClock } from "../../helpers/clock.ts";

/** A node whose drain never ends on its own: only a forced exit ends the process. */
function drainingForever() {
  const reasons: string[] = [];
  return { reasons, shutdown: (reason: string) => (reasons.push(reason), new Promise<{ exitCode: number }>(() => {})) };
}

/** Delivers a signal; the in-memory exit throws, as a real exit never returns. */
function deliver(runtime: ReturnType<typeof createMemoryRuntime>, signal: "SIGINT" | "SIGTERM"): void {
  try {
    runtime.signal(signal);
  } catch (error) {
    if (!(error instanceof MemoryExit)) throw error;
  }
}

test("one Ctrl-C delivered twice (terminal and launcher, a millisecond apart) drains once; a second one later forces exit 130", () => {
  const runtime = createMemoryRuntime();
  const clock = new ManualClock();
  const node = drainingForever();
  exitOnSignals(runtime, node, silentLogger, clock);
  deliver(runtime, "SIGINT");
  clock.tick(1);
  deliver(runtime, "SIGINT");
  clock.tick(DUPLICATE_SIGNAL_MS - 2);
  deliver(runtime, "SIGTERM");
  assert.deepEqual(node.reasons, ["SIGINT"]);
  assert.deepEqual(runtime.exitCodes, []);
  clock.tick(1);
  deliver(runtime, "SIGINT");
  assert.deepEqual(runtime.exitCodes, [EXIT_CODES.forcedInt]);
});

test("a second SIGTERM DUPLICATE_SIGNAL_MS after the first forces exit 143", () => {
  const runtime = createMemoryRuntime();
  const clock = new ManualClock();
  exitOnSignals(runtime, drainingForever(), silentLogger, clock);
  deliver(runtime, "SIGTERM");
  clock.tick(DUPLICATE_SIGNAL_MS);
  deliver(runtime, "SIGTERM");
  assert.deepEqual(runtime.exitCodes, [EXIT_CODES.forcedTerm]);
});
