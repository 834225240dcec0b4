import { z } from "zod";
import { defineService, type Implementation } from "../rpc/contract.ts";

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
  };
}

/** Handlers of the demo service, recording nothing. */
export const demoHandlers: Implementation<typeof demo> = createDemoHandlers();

/** The demo's startup hook: waits `ms` (a stand-in for warming caches), stopping early if aborted. */
export function demoWarmup(ms: number): (signal: AbortSignal) => Promise<void> {
  return (signal) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(signal.reason);
      });
    });
}
