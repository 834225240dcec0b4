import type { Runtime } from "./types.ts";

/** A runtime, or a way to get one when first needed (the entry points pass the detecting one). */
export type RuntimeSource = Runtime | (() => Promise<Runtime>);

/** The runtime a source gives. */
export async function runtimeOf(source: RuntimeSource): Promise<Runtime> {
  return typeof source === "function" ? await source() : source;
}
