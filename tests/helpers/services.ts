import { z } from "zod";
import { defineService, type Implementation } from "../../src/rpc/contract.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { ErrorCodes } from "../../src/wire/codes.ts";

/** A service for tests: each method exercises one path of the server. */
export const probe = defineService("probe", {
  echo: { input: z.unknown(), output: z.unknown() },
  add: { input: z.object({ a: z.number(), b: z.number() }), output: z.number() },
  /** Waits until aborted or `ms` passes; records how it ended in `probeEvents`. */
  wait: { input: z.object({ ms: z.number(), tag: z.string() }), output: z.string() },
  raise: { input: z.object({ code: z.enum(ErrorCodes) }), output: z.never() },
  crash: { input: z.unknown(), output: z.never() },
  bytes: { input: z.object({ size: z.number().int().min(0) }), output: z.instanceof(Uint8Array) },
  /** Returns `levels` arrays nested in each other: deeper than the wire allows, it cannot be encoded. */
  nest: { input: z.object({ levels: z.number().int().min(0) }), output: z.unknown() },
  /** Returns a value msgpack has no type for. */
  unencodable: { input: z.unknown(), output: z.unknown() },
});

/** What the probe's handlers saw, keyed by tag. */
export const probeEvents = new Map<string, "started" | "aborted" | "finished">();
const waiters = new Map<string, () => void>();

/** Resolves when the handler tagged `tag` reaches `state`. */
export function probeReached(tag: string, state: "started" | "aborted" | "finished"): Promise<void> {
  if (probeEvents.get(tag) === state) return Promise.resolve();
  return new Promise((resolve) => waiters.set(`${tag}:${state}`, resolve));
}

function record(tag: string, state: "started" | "aborted" | "finished"): void {
  probeEvents.set(tag, state);
  waiters.get(`${tag}:${state}`)?.();
}

export const probeHandlers: Implementation<typeof probe> = {
  echo: (input) => input,
  add: ({ a, b }) => a + b,
  wait: ({ ms, tag }, ctx) =>
    new Promise((resolve) => {
      record(tag, "started");
      const timer = setTimeout(() => {
        record(tag, "finished");
        resolve(tag);
      }, ms);
      ctx.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        record(tag, "aborted");
        resolve(tag);
      });
    }),
  raise: ({ code }) => {
    throw new RpcError(`raised ${code}`, code, { data: { code } });
  },
  crash: () => {
    throw new Error("unexpected failure");
  },
  bytes: ({ size }) => new Uint8Array(size).map((_, i) => i & 0xff),
  nest: ({ levels }) => nested(levels),
  unencodable: () => ({ symbol: Symbol("not msgpack") }),
};

/** `levels` arrays nested in each other, innermost holding 0. */
export function nested(levels: number): unknown {
  let value: unknown = 0;
  for (let i = 0; i < levels; i++) value = [value];
  return value;
}
