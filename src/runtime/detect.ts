import type { Runtime } from "./types.ts";

let current: Promise<Runtime> | undefined;

/** The runtime this process runs on; the one place that tells Bun from Deno. */
export function detectRuntime(): Promise<Runtime> {
  current ??= load();
  return current;
}

async function load(): Promise<Runtime> {
  const globals = globalThis as { Bun?: unknown; Deno?: unknown };
  if (globals.Bun !== undefined) return (await import("../adapter/bun/index.ts")).createBunRuntime();
  if (globals.Deno !== undefined) return (await import("../adapter/deno/index.ts")).createDenoRuntime();
  throw new Error("ebb runs on Bun or Deno, and this runtime is neither");
}
