/**
 * The `ebb` binary: `bun src/main.ts`, `deno run src/main.ts`, or the compiled executable.
 *
 *   ebb [serve]            a node hosting the demo service
 *   ebb call <method>      one call, the result as JSON
 *   ebb members            the cluster as a node sees it
 *   ebb bench              load through the cluster client
 *   ebb keygen             a new random cluster key
 *   ebb token              the HTTP bearer token of EBB_CLUSTER_KEY
 */
import { benchCommand } from "./cli/bench.ts";
import { callCommand } from "./cli/call.ts";
import { describeCommand } from "./cli/describe.ts";
import { closestName, type Command, commandHelp, parseCommand, UsageError } from "./cli/command.ts";
import { keygenCommand } from "./cli/keygen.ts";
import { tokenCommand } from "./cli/token.ts";
import { membersCommand } from "./cli/members.ts";
import { environmentHelp, SERVE_EXIT_CODES, serveCommand } from "./cli/serve.ts";
import { EXIT_CODES } from "./lifecycle/signals.ts";
import { VERSION } from "./node.ts";
import { detectRuntime } from "./runtime/detect.ts";

const COMMANDS = [serveCommand, callCommand, describeCommand, membersCommand, benchCommand, keygenCommand, tokenCommand] as Command<unknown>[];

function help(): string {
  const commands = COMMANDS.map((c) => `  ${c.name.padEnd(10)}${c.summary}`).join("\n");
  return `ebb ${VERSION}: an RPC node that restarts without dropping a request

Usage: ebb [command] [options]
       ebb <command> --help
       ebb --help | --version

Commands:
${commands}

Environment of "ebb serve":
${environmentHelp()}

${SERVE_EXIT_CODES}
`;
}

async function main(): Promise<void> {
  const runtime = await detectRuntime();
  const args = runtime.args();
  const first = args[0];
  if (first === "--help" || first === "-h" || first === "help") {
    runtime.write("stdout", help());
    return;
  }
  if (first === "--version" || first === "-v" || first === "version") {
    runtime.write("stdout", `ebb ${VERSION} (${runtime.name} ${runtime.version})\n`);
    return;
  }
  const named = first !== undefined && !first.startsWith("-");
  const meant = !named && first !== undefined ? closestName(first.replace(/^-+/, ""), ["help", "version"]) : undefined;
  if (meant) {
    runtime.write("stderr", `ebb: unknown option "${first}" (did you mean --${meant}?)\nRun "ebb --help" for usage.\n`);
    return runtime.exit(EXIT_CODES.badConfig);
  }
  const command = named ? COMMANDS.find((c) => c.name === first) : serveCommand;
  if (!command) {
    const names = COMMANDS.map((c) => c.name);
    const closest = closestName(first ?? "", names);
    runtime.write("stderr", `ebb: unknown command "${first}"${closest ? ` (did you mean ${closest}?)` : ""}; the commands are ${names.join(", ")}\nRun "ebb --help" for usage.\n`);
    return runtime.exit(EXIT_CODES.badConfig);
  }
  const rest = named ? args.slice(1) : args;
  if (rest.includes("--help") || rest.includes("-h")) {
    runtime.write("stdout", commandHelp(command));
    return;
  }
  let code: number;
  try {
    const { flags, positionals } = parseCommand(command, rest);
    code = await command.run(runtime, flags, positionals);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    runtime.write("stderr", `ebb ${command.name}: ${error.message}\nRun "ebb ${command.name} --help" for usage.\n`);
    code = EXIT_CODES.badConfig;
  }
  runtime.exit(code);
}

await main();
