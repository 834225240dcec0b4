import { type Config, ConfigError, loadConfig } from "./config/load.ts";
import { readTogether } from "./config/table.ts";
import { readBenchSwitches } from "./demo/switches.ts";
import { EXIT_CODES, exitOnSignals } from "./lifecycle/signals.ts";
import { StartupError } from "./lifecycle/startup.ts";
import { createLogger, type Logger } from "./log.ts";
import { createNode, type EbbNode } from "./node.ts";
import { detectRuntime } from "./runtime/detect.ts";
import type { Runtime } from "./runtime/types.ts";
import { errorText } from "./error-text.ts";

/** What `runNode`'s setup gets to register services and hooks with. */
export interface RunContext {
  config: Config;
  log: Logger;
  runtime: Runtime;
}

/**
 * The whole life of a node process, as `ebb serve` lives it: configuration from
 * EBB_* variables (every bad one named, exit 2), logs (JSON lines, or readable
 * on a terminal), `setup` registering services and startup hooks, signals (the
 * first SIGTERM or SIGINT drains and exits with the drain's code, a second
 * exits at once), then start (a failed start exits 3). Resolves once the node is
 * ready; the process then ends through its signals.
 *
 *   await runNode((node) => node.register(greeter, { hello: ({ name }) => `Hello, ${name}` }));
 */
export async function runNode(setup: (node: EbbNode, context: RunContext) => void, options: { runtime?: Runtime } = {}): Promise<EbbNode> {
  const runtime = options.runtime ?? (await detectRuntime());
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
