import { z } from "zod";
import { type Env, milliseconds, readVariables, type ValuesOf, variable } from "../config/table.ts";

/*
 * Switches for tests and benches, read by the code they steer and kept out of
 * the node's `Config`, its `--help` and the README's configuration table (the
 * README lists them apart). Bad values are a `ConfigError`, as for any EBB_*.
 */

/** The demo service's switches, read by `ebb serve`. */
export const DEMO_SWITCHES = {
  /** Record and log the request ids the demo service executed, for at-most-once checks. */
  record: variable({
    name: "EBB_DEMO_RECORD",
    schema: z.enum(["0", "1", "true", "false"], { error: "must be 1, 0, true or false" }),
    default: "0",
    map: (value) => value === "1" || value === "true",
    description: "1: the demo service logs the request ids it executed when the node stops, for at-most-once checks",
    readers: ["demo"],
  }),
  warmupMs: variable({
    name: "EBB_DEMO_WARMUP_MS",
    schema: milliseconds(3_600_000),
    default: 0,
    description: "above 0, the demo's startup hook makes 100 warm-up calls to demo.echo, then waits until this long has passed, a stand-in for warming caches",
    readers: ["demo"],
  }),
  fail: variable({
    name: "EBB_DEMO_FAIL",
    schema: z.enum(["none", "internal", "overloaded"], { error: "must be none, internal or overloaded" }),
    default: "none",
    description: "internal: every demo call fails INTERNAL (a node alive but broken); overloaded: every demo call is refused OVERLOADED, processed false (a node shedding load)",
    readers: ["demo"],
  }),
};

/** The restart bench's switch, read where a node process installs its signal handlers (`runNode`). */
export const BENCH_SWITCHES = {
  /** Die at once on SIGTERM, to show what the drain saves. */
  plainShutdown: variable({
    name: "EBB_BENCH_PLAIN_SHUTDOWN",
    schema: z.enum(["0", "1"], { error: "must be 0 or 1" }),
    default: "0",
    map: (value) => value === "1",
    description: "1: die at once on SIGTERM, no drain; only for npm run bench:restart's comparison",
    readers: ["bench"],
  }),
};

/** The demo's switches, from the environment `Runtime.env()` gives; throws `ConfigError`. */
export function readDemoSwitches(env: Env): ValuesOf<typeof DEMO_SWITCHES> {
  return readVariables(DEMO_SWITCHES, env);
}

/** The restart bench's switch, from the environment `Runtime.env()` gives; throws `ConfigError`. */
export function readBenchSwitches(env: Env): ValuesOf<typeof BENCH_SWITCHES> {
  return readVariables(BENCH_SWITCHES, env);
}
