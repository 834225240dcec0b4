/**
 * The `ebb` binary: `bun src/main.ts`, `deno run src/main.ts`, or the compiled executable.
 */
import { ConfigError, loadConfig } from "./config/load.ts";
import { DESCRIPTIONS } from "./config/schema.ts";
import { createDemoHandlers, demo, demoWarmup } from "./demo/demo.ts";
import { EXIT_CODES, exitOnSignals } from "./lifecycle/signals.ts";
import { StartupError } from "./lifecycle/startup.ts";
import { createLogger } from "./log.ts";
import { createNode, VERSION } from "./node.ts";
import { detectRuntime } from "./runtime/detect.ts";
import type { Runtime } from "./runtime/types.ts";

function help(): string {
  const vars = Object.entries(DESCRIPTIONS)
    .map(([name, text]) => `  ${name.padEnd(26)}${text}`)
    .join("\n");
  return `ebb ${VERSION}: an RPC node that restarts without dropping a request

Usage: ebb [serve]        run a node hosting the demo service
       ebb --help | --version

Environment:
${vars}

Exit codes: 0 drained cleanly, 1 drain timed out and work was cancelled,
2 bad configuration, 3 a startup hook failed, 130/143 forced by a second SIGINT/SIGTERM.
`;
}

async function serve(runtime: Runtime): Promise<void> {
  let config;
  try {
    config = loadConfig(runtime.env());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    runtime.exit(EXIT_CODES.badConfig);
  }
  const format = config.logFormat === "auto" ? (runtime.stdoutIsTerminal() ? "pretty" : "json") : config.logFormat;
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

async function main(): Promise<void> {
  const runtime = await detectRuntime();
  const [command = "serve", ...rest] = runtime.args();
  if (command === "--help" || command === "-h" || rest.includes("--help")) {
    console.log(help());
    return;
  }
  if (command === "--version" || command === "-v") {
    console.log(`ebb ${VERSION} (${runtime.name} ${runtime.version})`);
    return;
  }
  if (command !== "serve") {
    console.error(`Unknown command "${command}"\n\n${help()}`);
    runtime.exit(EXIT_CODES.badConfig);
  }
  await serve(runtime);
}

await main();
