import { z } from "zod";
import { ConfigError, loadConfig } from "../config/load.ts";
import { DESCRIPTIONS } from "../config/schema.ts";
import { createDemoHandlers, demo, demoWarmup } from "../demo/demo.ts";
import { EXIT_CODES, exitOnSignals } from "../lifecycle/signals.ts";
import { StartupError } from "../lifecycle/startup.ts";
import { createLogger } from "../log.ts";
import { createNode } from "../node.ts";
import type { Runtime } from "../runtime/types.ts";
import { defineCommand, UsageError } from "./command.ts";

/** Every EBB_* variable with its meaning and default, for `--help`. */
export function environmentHelp(): string {
  return Object.entries(DESCRIPTIONS)
    .map(([name, text]) => `  ${name.padEnd(32)}${text}`)
    .join("\n");
}

/** The exit codes of `ebb serve`, for `--help`. */
export const SERVE_EXIT_CODES = `Exit codes: 0 drained cleanly, 1 drain timed out and work was cancelled,
2 bad configuration, 3 startup failed (a hook, or a port in use), 130/143 forced by a second SIGINT/SIGTERM.`;

/** `ebb serve`: a node hosting the demo service, configured by EBB_* variables. */
export const serveCommand = defineCommand({
  name: "serve",
  summary: "run a node hosting the demo service (the default command)",
  usage: ["serve                  (or just ebb)"],
  options: {},
  flags: z.object({}),
  details: `Configured by the environment only:\n${environmentHelp()}\n\n${SERVE_EXIT_CODES}`,
  async run(runtime, _flags, positionals) {
    if (positionals.length > 0) throw new UsageError(`Serve takes no arguments (got ${positionals.join(" ")}); configure it with EBB_* variables`);
    await serve(runtime);
    // The process ends through its signal handlers (or exits on failure above): keep serving.
    return new Promise<number>(() => {});
  },
});

async function serve(runtime: Runtime): Promise<void> {
  let config;
  try {
    config = loadConfig(runtime.env());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    runtime.exit(EXIT_CODES.badConfig);
  }
  const format = config.logFormat === "auto" ? (runtime.isTerminal("stdout") ? "pretty" : "json") : config.logFormat;
  const log = createLogger({ node: config.nodeId, level: config.logLevel, format });
  for (const warning of config.warnings) log.warn(warning);
  const executed = config.demoRecord ? ([] as string[]) : undefined;
  const node = createNode({ config, log, runtime }).register(demo, createDemoHandlers(executed));
  if (executed) node.onStateChange((state) => state === "stopped" && log.info("demo executed", { ids: executed }));
  if (config.demoWarmupMs > 0) node.onStartup("demo-warmup", demoWarmup(config.demoWarmupMs));
  // Signals first: one that arrives during the startup hooks aborts them.
  if (config.benchPlainShutdown) {
    // For `npm run bench:restart` only: a node that simply dies on SIGTERM, to show what ebb's drain saves.
    runtime.onSignal("SIGTERM", () => runtime.exit(EXIT_CODES.forcedTerm));
  } else {
    exitOnSignals(runtime, node, log);
  }
  try {
    await node.start();
  } catch (error) {
    // Aborted by a signal: the drain it started exits the process.
    if (error instanceof StartupError && error.aborted) return;
    log.error(error instanceof Error ? error.message : String(error), { hook: error instanceof StartupError ? error.hook : undefined });
    await node.shutdown("startup failed");
    runtime.exit(EXIT_CODES.startupFailed);
  }
}
