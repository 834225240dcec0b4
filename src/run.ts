import { type Config, ConfigError, loadConfig } from "./config/load.ts";
import { closestName, readTogether, variablesHelp } from "./config/table.ts";
import { CONFIG_VARIABLES } from "./config/variables.ts";
import { readBenchSwitches } from "./demo/switches.ts";
import { EXIT_CODES, exitOnSignals } from "./lifecycle/signals.ts";
import { StartupError } from "./lifecycle/startup.ts";
import { createLogger, type Logger } from "./log.ts";
import { createNode, type EbbNode, VERSION } from "./node.ts";
import { detectRuntime } from "./runtime/detect.ts";
import type { Runtime } from "./runtime/types.ts";
import { errorText } from "./error-text.ts";

/** What `runNode`'s setup gets to register services and hooks with. */
export interface RunContext {
  config: Config;
  log: Logger;
  runtime: Runtime;
}

/** How `runNode` runs. */
export interface RunOptions {
  /** The runtime; default the one this process runs on. */
  runtime?: Runtime;
  /** The program's name and version, for `--help` and `--version`. */
  name?: string;
  version?: string;
  /** The command-line arguments; default the process's. A node takes only `--help` and `--version`: EBB_* variables configure it. */
  args?: readonly string[];
}

/** The exit codes of a node process, for `--help`. */
export const NODE_EXIT_CODES = `Exit codes: 0 drained cleanly, 1 drain timed out and work was cancelled,
2 bad configuration, 3 startup failed (a hook, or a port in use), 130/143 forced by a second SIGINT/SIGTERM.`;

/**
 * The whole life of a node process, as `ebb serve` lives it: configuration from
 * EBB_* variables (every bad one named, exit 2), logs (JSON lines, or readable
 * on a terminal), `setup` registering services and startup hooks, signals (the
 * first SIGTERM or SIGINT drains and exits with the drain's code, a second
 * exits at once), then start (a failed start exits 3). Resolves once the node is
 * ready; the process then ends through its signals. `--help` lists the EBB_*
 * variables and `--version` prints the version; any other argument exits 2.
 *
 *   await runNode((node) => node.register(greeter, { hello: ({ name }) => `Hello, ${name}` }));
 */
export async function runNode(setup: (node: EbbNode, context: RunContext) => void, options: RunOptions = {}): Promise<EbbNode> {
  const runtime = options.runtime ?? (await detectRuntime());
  answerArguments(runtime, options);
  let config: Config;
  let bench: ReturnType<typeof readBenchSwitches>;
  try {
    const env = runtime.env();
    [config, bench] = readTogether(() => loadConfig(env), () => readBenchSwitches(env));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    runtime.write("stderr", `${error.message}\n`);
    return runtime.exit(EXIT_CODES.badConfig);
  }
  const format = config.logFormat === "auto" ? (runtime.isTerminal("stdout") ? "pretty" : "json") : config.logFormat;
  const log = createLogger({ node: config.nodeId, level: config.logLevel, format });
  for (const warning of config.warnings) log.warn(warning);
  const node = createNode({ config, log, runtime });
  setup(node, { config, log, runtime });
  if (config.tls) reloadTlsOnHangup(runtime, node, log);
  // Signals first: one that arrives during the startup hooks aborts them.
  if (bench.plainShutdown) {
    // For `npm run bench:restart` only: a node that simply dies on SIGTERM, to show what ebb's drain saves.
    runtime.onSignal("SIGTERM", () => runtime.exit(EXIT_CODES.forcedTerm));
  } else {
    exitOnSignals(runtime, node, log);
  }
  try {
    await node.start();
  } catch (error) {
    // Aborted by a signal: the drain it started exits the process.
    if (error instanceof StartupError && error.aborted) return node;
    log.error(errorText(error), { hook: error instanceof StartupError ? error.hook : undefined });
    await node.shutdown("startup failed", EXIT_CODES.startupFailed);
    return runtime.exit(EXIT_CODES.startupFailed);
  }
  return node;
}

/** `--help` and `--version` print and exit 0; anything else is a mistake (exit 2) rather than a node started as if it were not there. */
function answerArguments(runtime: Runtime, options: RunOptions): void {
  const args = options.args ?? runtime.args();
  if (args.length === 0) return;
  const versions = `ebb ${VERSION}, ${runtime.name} ${runtime.version}`;
  const arg = args[0]!;
  if (arg === "--version" || arg === "-v") {
    const line = options.name || options.version ? `${[options.name, options.version].filter(Boolean).join(" ")} (${versions})` : `ebb ${VERSION} (${runtime.name} ${runtime.version})`;
    runtime.write("stdout", `${line}\n`);
    return runtime.exit(EXIT_CODES.ok);
  }
  if (arg === "--help" || arg === "-h") {
    const title = options.name ? `${options.name}${options.version ? ` ${options.version}` : ""}: an ebb node (${versions})` : `An ebb node (${versions})`;
    const usage = "Runs the node until SIGTERM or SIGINT, which drain it; takes no arguments but --help and --version.";
    runtime.write("stdout", `${title}\n\n${usage}\n\nConfigured by the environment only:\n${variablesHelp(CONFIG_VARIABLES)}\n\n${NODE_EXIT_CODES}\n`);
    return runtime.exit(EXIT_CODES.ok);
  }
  const meant = arg.startsWith("-") ? closestName(arg.replace(/^-+/, ""), ["help", "version"]) : undefined;
  runtime.write("stderr", `${options.name ?? "ebb node"}: unknown argument ${JSON.stringify(arg)}${meant ? ` (did you mean --${meant}?)` : ""}; a node takes its settings from EBB_* variables, listed by --help\n`);
  return runtime.exit(EXIT_CODES.badConfig);
}

/** SIGHUP reads EBB_TLS_* (the files) again: new connections use the new certificate and CA, open ones carry on; a bad file keeps the old ones. */
function reloadTlsOnHangup(runtime: Runtime, node: EbbNode, log: Logger): void {
  runtime.onSignal("SIGHUP", () => {
    let tls: Config["tls"];
    try {
      tls = loadConfig(runtime.env()).tls;
    } catch (error) {
      log.error(`TLS not reloaded, the current certificates stay: ${errorText(error)}`);
      return;
    }
    if (!tls) return log.error("TLS not reloaded: EBB_TLS_* are unset");
    node.reloadTls(tls).then(
      () => log.info("TLS reloaded: new connections use the new certificate and CA"),
      (error: unknown) => log.error(`TLS not reloaded, the current certificates stay: ${errorText(error)}`),
    );
  });
}
