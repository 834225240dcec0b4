/**
 * The `ebb` binary: `bun src/main.ts`, `deno run src/main.ts`, or the compiled executable.
 */
import { ConfigError, loadConfig } from "./config/load.ts";
import { DESCRIPTIONS } from "./config/schema.ts";
import { demo, demoHandlers } from "./demo/demo.ts";
import { createLogger } from "./log.ts";
import { createNode, VERSION } from "./node.ts";
import { detectRuntime } from "./runtime/detect.ts";
import type { Runtime } from "./runtime/types.ts";

/** Exit codes of the binary. */
export const EXIT = { ok: 0, drainTimeout: 1, badConfig: 2 } as const;

function help(): string {
  const vars = Object.entries(DESCRIPTIONS)
    .map(([name, text]) => `  ${name.padEnd(24)}${text}`)
    .join("\n");
  return `ebb ${VERSION}: an RPC node that restarts without dropping a request

Usage: ebb [serve]        run a node hosting the demo service
       ebb --help | --version

Environment:
${vars}
`;
}

async function serve(runtime: Runtime): Promise<void> {
  let config;
  try {
    config = loadConfig(runtime.env());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    runtime.exit(EXIT.badConfig);
  }
  const log = createLogger({ node: config.nodeId });
  const node = createNode({ config, log, runtime }).register(demo, demoHandlers);
  await node.start();
  const { host, port } = node.rpcAddress;
  log.info(`listening on ${host}:${port}`, { rpc: `${host}:${port}`, runtime: runtime.name, pid: processId() });

  let signals = 0;
  const stop = (signal: "SIGTERM" | "SIGINT") => {
    signals++;
    if (signals > 1) runtime.exit(signal === "SIGINT" ? 130 : 143);
    log.info(`${signal} received, shutting down`);
    void node.shutdown().then(() => runtime.exit(EXIT.ok));
  };
  runtime.onSignal("SIGTERM", () => stop("SIGTERM"));
  runtime.onSignal("SIGINT", () => stop("SIGINT"));
}

function processId(): number | undefined {
  return (globalThis as { process?: { pid?: number } }).process?.pid;
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
    runtime.exit(EXIT.badConfig);
  }
  await serve(runtime);
}

await main();
