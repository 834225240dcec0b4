import { parseArgs } from "node:util";
import { z } from "zod";
import type { Runtime } from "../runtime/types.ts";
import { errorText } from "../error-text.ts";
import { closestName } from "../config/table.ts";

export { closestName };

/** A command-line mistake: printed with the command's usage, exit 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** One option of a command, as `--help` shows it. */
export interface OptionSpec {
  type: "string" | "boolean";
  /** Shown after the option name, e.g. `host:port`. */
  value?: string;
  description: string;
}

/** A subcommand of `ebb`. */
export interface Command<Flags> {
  name: string;
  /** One line for `ebb --help`. */
  summary: string;
  /** Usage lines, without the leading `ebb `. */
  usage: string[];
  options: Record<string, OptionSpec>;
  /** Validates the flags parseArgs found (all strings or booleans) into what `run` gets. */
  flags: z.ZodType<Flags>;
  /** Most arguments that are not options (`ebb call <method> [json]`: 2); more is a usage mistake. Default 0. */
  maxPositionals?: number;
  /** More text for `--help`, after the options. */
  details?: string;
  /** Runs the command; resolves with the process exit code. */
  run(runtime: Runtime, flags: Flags, positionals: string[]): Promise<number>;
}

/** Declares a command with its flag types inferred from the schema. */
export function defineCommand<Flags>(command: Command<Flags>): Command<Flags> {
  return command;
}

/** `ebb <command> --help`. */
export function commandHelp(command: Command<unknown>): string {
  const options = Object.entries(command.options).map(([name, spec]) => {
    const left = `--${name}${spec.value ? ` <${spec.value}>` : ""}`;
    return `  ${left.padEnd(26)}${spec.description}`;
  });
  options.push(`  ${"--help".padEnd(26)}this text`);
  const usage = command.usage.map((line, i) => `${i === 0 ? "Usage: " : "       "}ebb ${line}`);
  return [`ebb ${command.name}: ${command.summary}`, "", ...usage, "", "Options:", ...options, ...(command.details ? ["", command.details] : []), ""].join("\n");
}

/** Parses `argv` (after the command name) against the command's options and flag schema. */
export function parseCommand<Flags>(command: Command<Flags>, argv: string[]): { flags: Flags; positionals: string[] } {
  const options = Object.fromEntries(Object.entries(command.options).map(([name, spec]) => [name, { type: spec.type }]));
  const args = joinNegativeValues(command, argv);
  // A first, lenient pass finds unknown options, to name the one meant; the strict pass reports the rest.
  const { tokens } = parseArgs({ args, options, strict: false, allowPositionals: true, tokens: true });
  for (const token of tokens) {
    if (token.kind !== "option" || token.name in command.options) continue;
    const names = Object.keys(command.options);
    throw new UsageError(names.length > 0 ? unknownOption(token.rawName, names) : `Unknown option ${JSON.stringify(token.rawName)}: ebb ${command.name} takes no options`);
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (error) {
    // parseArgs' messages name the option; drop its advice about "--" which does not apply here.
    throw new UsageError(errorText(error).split(". To specify")[0]!);
  }
  const extra = parsed.positionals.slice(command.maxPositionals ?? 0);
  if (extra.length > 0) {
    const takes = command.maxPositionals ? `at most ${command.maxPositionals} arguments` : "no arguments, only options";
    throw new UsageError(`Unexpected argument ${JSON.stringify(extra[0])}: ebb ${command.name} takes ${takes}`);
  }
  const result = command.flags.safeParse(parsed.values);
  if (!result.success) {
    throw new UsageError(result.error.issues.map((issue) => `--${issue.path.join(".")} ${issue.message}`).join("; "));
  }
  return { flags: result.data, positionals: parsed.positionals };
}

/** `--rate -5` as `--rate=-5`: parseArgs takes a value starting with "-" for an option, and the schema then says what is wrong with it. */
function joinNegativeValues(command: Command<unknown>, argv: string[]): string[] {
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i]!.startsWith("--") ? argv[i]!.slice(2) : undefined;
    const next = argv[i + 1];
    if (name && command.options[name]?.type === "string" && next !== undefined && /^-\d/.test(next)) {
      args.push(`${argv[i]}=${next}`);
      i++;
    } else args.push(argv[i]!);
  }
  return args;
}

/** `Unknown option "--adr"; did you mean --addr?` */
export function unknownOption(given: string, known: readonly string[]): string {
  const name = given.replace(/^-+/, "");
  const closest = closestName(name, [...known, "help"]);
  return `Unknown option ${JSON.stringify(given)}${closest ? `; did you mean --${closest}?` : ""}`;
}

// ---- flag schemas shared by commands ------------------------------------------------------------

/** `host:port[,host:port...]`, the same schema as EBB_SEEDS. */
export { addressList } from "../config/variables.ts";

/** A whole number of at least `min`, from a flag's text; the value is quoted when it is wrong. */
export const wholeNumber = (min: number) => {
  const wanted = min === 1 ? "a positive whole number" : `a whole number of at least ${min}`;
  return z
    .string()
    .refine((text) => /^\d+$/.test(text) && Number(text) >= min, { error: (issue) => `must be ${wanted} (got ${JSON.stringify(issue.input)})` })
    .transform(Number);
};

const DURATION_UNITS_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

/** A duration: `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds. */
export const duration = z
  .string()
  .regex(/^\d+(\.\d+)?(ms|s|m|h)?$/, { error: "must be a duration such as 500ms, 10s, 2m or 1h" })
  .transform((text) => {
    const unit = (/[a-z]+$/.exec(text)?.[0] ?? "s") as keyof typeof DURATION_UNITS_MS;
    return Number.parseFloat(text) * DURATION_UNITS_MS[unit];
  })
  .refine((ms) => ms > 0, { error: "must be more than zero" });

/** A JSON text, parsed. */
export const jsonText = z.string().transform((text, ctx) => {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    ctx.addIssue({ code: "custom", message: `is not valid JSON (${errorText(error)})` });
    return z.NEVER;
  }
});
