import { z } from "zod";
import type { StartupHook } from "../lifecycle/startup.ts";
import { defineService, type Implementation, type ServerInterceptor } from "../rpc/contract.ts";
import { RpcError } from "../rpc/errors.ts";

/** The demo service the reference binary hosts. */
export const demo = defineService("demo", {
  /** Returns its input unchanged. */
  echo: { input: z.unknown(), output: z.unknown(), idempotent: true },
  /** Waits `ms` milliseconds, or less when the call is aborted; returns how long it waited. */
  sleep: {
    input: z.object({ ms: z.number().int().min(0).max(3_600_000) }),
    output: z.object({ sleptMs: z.number() }),
    idempotent: true,
  },
  /**
   * Works `ms` milliseconds of CPU in 1 ms slices, yielding between them (a handler that computes
   * and awaits): under concurrency its calls share the CPU and each takes longer. For the
   * adaptive-concurrency tests and bench.
   */
  work: {
    input: z.object({ ms: z.number().min(0).max(1_000) }),
    output: z.object({ tookMs: z.number() }),
    idempotent: true,
  },
});

/**
 * Handlers of the demo service. With `executed`, each call that runs records
 * its request id there, so tests can prove every request ran at most once.
 */
export function createDemoHandlers(executed?: string[]): Implementation<typeof demo> {
  const record = (id: string | undefined) => {
    if (executed && id !== undefined) executed.push(id);
  };
  return {
    echo: (input, ctx) => {
      record(ctx.requestId);
      return input;
    },
    sleep: ({ ms }, ctx) => {
      record(ctx.requestId);
      return new Promise((resolve) => {
        const started = Date.now();
        const done = () => {
          clearTimeout(timer);
          ctx.signal.removeEventListener("abort", done);
          resolve({ sleptMs: Date.now() - started });
        };
        const timer = setTimeout(done, ms);
        ctx.signal.addEventListener("abort", done);
      });
    },
    work: async ({ ms }, ctx) => {
      record(ctx.requestId);
      const started = performance.now();
      let worked = 0;
      while (worked < ms && !ctx.signal.aborted) {
        const slice = performance.now();
        while (performance.now() - slice < Math.min(1, ms - worked));
        worked += performance.now() - slice;
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      return { tookMs: performance.now() - started };
    },
  };
}

/** Handlers of the demo service, recording nothing. */
export const demoHandlers: Implementation<typeof demo> = createDemoHandlers();

/** Warm-up calls the demo's startup hook makes to its own `demo.echo` before waiting. */
export const DEMO_WARMUP_CALLS = 100;

/**
 * The demo's startup hook: DEMO_WARMUP_CALLS in-process calls of `demo.echo`
 * (what warms a JIT), then a wait until `ms` have passed (a stand-in for
 * filling caches); it stops early if aborted.
 */
export function demoWarmup(ms: number): StartupHook {
  return async (signal, { call }) => {
    const started = Date.now();
    for (let i = 0; i < DEMO_WARMUP_CALLS && !signal.aborted; i++) await call("demo.echo", { warmup: i });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, Math.max(0, ms - (Date.now() - started)));
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(signal.reason);
      });
    });
  };
}

/**
 * EBB_DEMO_FAIL: every call fails before its handler runs, as a node alive in gossip but broken
 * (`internal`) or shedding all load (`overloaded`, processed false), for the tail tests and benches.
 */
export function demoFailure(mode: "internal" | "overloaded"): ServerInterceptor {
  const failure = mode === "internal"
    ? () => new RpcError("EBB_DEMO_FAIL=internal: this node fails every call", "INTERNAL")
    : () => new RpcError("EBB_DEMO_FAIL=overloaded: this node refuses every call", "OVERLOADED", { processed: false });
  return () => () => {
    throw failure();
  };
}
