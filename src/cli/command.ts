import { parseArgs } from "node:util";
import { z } from "zod";
import type { Runtime } from "../runtime/types.ts";
import { errorText } from "../error-text.ts";

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
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (error) {
    // parseArgs' messages name the option; drop its advice about "--" which does not apply here.
    throw new UsageError(errorText(error).split(". To specify")[0]!);
  }
  const result = command.flags.safeParse(parsed.values);
  if (!result.success) {
    throw new UsageError(result.error.issues.map((issue) => `--${issue.path.join(".")} ${issue.message}`).join("; "));
  }
  return { flags: result.data, positionals: parsed.positionals };
}

// ---- flag schemas shared by commands ------------------------------------------------------------

/** `host:port[,host:port...]`, the same schema as EBB_SEEDS. */
export { addressList } from "../config/variables.ts";

/** A whole number of at least `min`, from a flag's text. */
export const wholeNumber = (min: number) =>
  z
    .string()
    .regex(/^\d+$/, { error: `must be a whole number of at least ${min}` })
    .transform(Number)
    .refine((n) => n >= min, { error: `must be at least ${min}` });

/** A duration: `500ms`, `10s`, `2m`, or a bare number of seconds. */
export const duration = z
  .string()
  .regex(/^\d+(\.\d+)?(ms|s|m)?$/, { error: "must be a duration such as 500ms, 10s or 2m" })
  .transform((text) => {
    const value = Number.parseFloat(text);
    if (text.endsWith("ms")) return value;
    if (text.endsWith("m")) return value * 60_000;
    return value * 1_000;
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
