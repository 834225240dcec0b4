import { z } from "zod";
import { loadConfig } from "../config/load.ts";
import { ConfigError, readTogether, variablesHelp } from "../config/table.ts";
import { CONFIG_VARIABLES } from "../config/variables.ts";
import { createDemoHandlers, demo, demoFailure, demoWarmup } from "../demo/demo.ts";
import { DEMO_SWITCHES, readBenchSwitches, readDemoSwitches } from "../demo/switches.ts";
import { EXIT_CODES } from "../lifecycle/signals.ts";
import { NODE_EXIT_CODES, runNode } from "../run.ts";
import type { Runtime } from "../runtime/types.ts";
import { defineCommand, UsageError } from "./command.ts";

/** Every EBB_* variable of the node with its meaning and default, those the client commands read too, then the demo's switches, for `--help`. */
export function environmentHelp(): string {
  const alsoCli = CONFIG_VARIABLES.filter((row) => row.readers.includes("cli")).map((row) => row.name);
  const demo = variablesHelp(Object.values(DEMO_SWITCHES));
  return `${variablesHelp(CONFIG_VARIABLES)}\n  (ebb call, members, bench and token read ${alsoCli.slice(0, -1).join(", ")} and ${alsoCli.at(-1)} too)\n\nThe demo service (ebb serve) reads:\n${demo}`;
}

/** The exit codes of `ebb serve`, for `--help`. */
export const SERVE_EXIT_CODES = NODE_EXIT_CODES;

/** `ebb serve`: a node hosting the demo service, configured by EBB_* variables. */
export const serveCommand = defineCommand({
  name: "serve",
  summary: "run a node hosting the demo service (the default command)",
  usage: ["serve                  (or just ebb)"],
  options: {},
  flags: z.object({}),
  // Checked in run, which can say how a node is configured instead.
  maxPositionals: Number.POSITIVE_INFINITY,
  details: `Configured by the environment only:\n${environmentHelp()}\n\n${SERVE_EXIT_CODES}`,
  async run(runtime, _flags, positionals) {
    if (positionals.length > 0) throw new UsageError(`Serve takes no arguments (got ${positionals.join(" ")}); configure it with EBB_* variables`);
    await serve(runtime);
    // The process ends through its signal handlers (or exits on failure above): keep serving.
    return new Promise<number>(() => {});
  },
});

/** The reference node: the demo service through `runNode`, as any service of your own would be. */
async function serve(runtime: Runtime): Promise<void> {
  let switches: ReturnType<typeof readDemoSwitches>;
  try {
    // The node's variables too, so one message names every bad one; runNode reads them again.
    const env = runtime.env();
    [, switches] = readTogether(() => loadConfig(env), () => readDemoSwitches(env), () => readBenchSwitches(env));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    runtime.write("stderr", `${error.message}\n`);
    return runtime.exit(EXIT_CODES.badConfig);
  }
  await runNode(
    (node, { log }) => {
      const executed = switches.record ? ([] as string[]) : undefined;
      node.register(demo, createDemoHandlers(executed));
      if (executed) node.onStateChange((state) => state === "stopped" && log.info("demo executed", { ids: executed }));
      if (switches.warmupMs > 0) node.onStartup("demo-warmup", demoWarmup(switches.warmupMs));
      if (switches.fail !== "none") node.use(demoFailure(switches.fail));
    },
    // The arguments were ebb's, read by main.ts: the node has none of its own.
    { runtime, args: [] },
  );
}
