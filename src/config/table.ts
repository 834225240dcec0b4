import { z } from "zod";

/** Who reads a variable: the node (`ebb serve`, `runNode`), the client commands, the demo service, a bench. */
export type Reader = "node" | "cli" | "demo" | "bench";

/** The environment, as `Runtime.env()` gives it. */
export type Env = Record<string, string | undefined>;

/** One EBB_* variable, everything about it written once: help, schema, type and README row all come from here. */
export interface Variable<T = unknown> {
  /** The environment variable. */
  readonly name: `EBB_${string}`;
  /** Reads the variable's text (undefined when unset) into its value, the default applied. */
  readonly schema: z.ZodType<T>;
  /** The documented default: a value, or what leaving the variable unset means (markdown, as the README shows it). */
  readonly default: { readonly value: string | number } | { readonly unset: string };
  /** Its meaning, for `--help` (which adds the default). */
  readonly description: string;
  /** Who reads it. */
  readonly readers: readonly Reader[];
  /** A secret is described in errors, never echoed. */
  readonly secret: boolean;
}

/** Variables keyed by the name of the value they become. */
export type VariableTable = Readonly<Record<string, Variable>>;

/** The values a table's variables become, keyed as the table is. */
export type ValuesOf<T extends VariableTable> = { -readonly [K in keyof T]: T[K] extends Variable<infer V> ? V : never };

interface RowSpec {
  name: `EBB_${string}`;
  description: string;
  /** Default: the node only. */
  readers?: readonly Reader[];
  secret?: boolean;
}

/** A variable with a default value; `map` turns the parsed value into what the program reads. */
export function variable<S extends z.ZodType, R = z.output<S>>(spec: RowSpec & { schema: S; default: z.output<S> & (string | number); map?: (value: z.output<S>) => R }): Variable<R>;
/** A variable without a default value; `unset` says what leaving it unset means, `map` what the program reads then. */
export function variable<S extends z.ZodType, R = z.output<S> | undefined>(spec: RowSpec & { schema: S; unset: string; map?: (value: z.output<S> | undefined) => R }): Variable<R>;
export function variable(spec: RowSpec & { schema: z.ZodType; default?: string | number; unset?: string; map?: (value: unknown) => unknown }): Variable {
  const given = spec.default === undefined ? spec.schema.optional() : spec.schema.default(spec.default);
  return {
    name: spec.name,
    schema: spec.map ? given.transform(spec.map) : given,
    default: spec.default === undefined ? { unset: spec.unset ?? "none" } : { value: spec.default },
    description: spec.description,
    readers: spec.readers ?? ["node"],
    secret: spec.secret ?? false,
  };
}

/** What a variable's value is when it is unset. */
export function defaultValue<T>(row: Variable<T>): T {
  return row.schema.parse(undefined);
}

/** A whole number from `min` to `max`, from a variable's text. */
export const integer = (min: number, max: number, unit = "") =>
  z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be a whole number" })
    .min(min, { error: `must be between ${min} and ${max}${unit}` })
    .max(max, { error: `must be between ${min} and ${max}${unit}` });

/** A duration in milliseconds, from 0 to `max`. */
export const milliseconds = (max: number) => integer(0, max, " ms");

/** Every bad EBB_* variable at once, named with the reason. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`Invalid configuration: ${problems.join("; ")}`);
  }
}

/** Parses `rows` from `env` in one pass, by variable name; throws `ConfigError` naming every bad variable in row order. */
export function parseVariables(rows: readonly Variable[], env: Env): Record<string, unknown> {
  const relevant: Record<string, string> = {};
  for (const { name } of rows) {
    const value = env[name];
    // An empty variable is unset, as shells and orchestrators often leave them.
    if (value !== undefined && value !== "") relevant[name] = value;
  }
  const parsed = z.object(Object.fromEntries(rows.map((row) => [row.name, row.schema]))).safeParse(relevant);
  if (parsed.success) return parsed.data;
  const secret = new Set<string>(rows.filter((row) => row.secret).map((row) => row.name));
  const seen = new Set<string>();
  const problems: string[] = [];
  for (const issue of parsed.error.issues) {
    const name = String(issue.path[0]);
    if (seen.has(name)) continue;
    seen.add(name);
    const shown = secret.has(name) ? `(${(relevant[name] ?? "").length} characters, not shown)` : JSON.stringify(relevant[name] ?? "");
    problems.push(`${name}=${shown} ${issue.message}`);
  }
  throw new ConfigError(problems);
}

/** Runs every read, then throws one `ConfigError` naming the problems of all of them: an operator fixes every bad variable in one go. */
export function readTogether<const T extends readonly (() => unknown)[]>(...reads: T): { [K in keyof T]: T[K] extends () => infer R ? R : never } {
  const problems: string[] = [];
  const values: unknown[] = [];
  for (const read of reads) {
    try {
      values.push(read());
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return values as { [K in keyof T]: T[K] extends () => infer R ? R : never };
}

/** The values of `table`'s variables, taken from what `parseVariables` returned. */
export function valuesOf<T extends VariableTable>(table: T, parsed: Record<string, unknown>): ValuesOf<T> {
  return Object.fromEntries(Object.entries(table).map(([key, row]) => [key, parsed[row.name]])) as ValuesOf<T>;
}

/** Reads one table's variables from `env`; throws `ConfigError` naming every bad one. */
export function readVariables<T extends VariableTable>(table: T, env: Env): ValuesOf<T> {
  return valuesOf(table, parseVariables(Object.values(table), env));
}

/** `--help` lines: each variable, its meaning and its default. */
export function variablesHelp(rows: readonly Variable[]): string {
  return rows.map((row) => `  ${row.name.padEnd(32)}${row.description} (${defaultHelp(row)})`).join("\n");
}

function defaultHelp(row: Variable): string {
  return "value" in row.default ? `default ${row.default.value}` : `default: ${row.default.unset.replaceAll("`", "")}`;
}

/** Warnings for EBB_* variables in `env` that none of `known` names: a typo should not pass silently. */
export function unknownVariables(env: Env, known: readonly string[]): string[] {
  return Object.keys(env)
    .filter((name) => name.startsWith("EBB_") && !known.includes(name))
    .sort()
    .map((name) => {
      const closest = known.reduce((best, k) => (distance(name, k) < distance(name, best) ? k : best), known[0]!);
      const hint = distance(name, closest) <= 3 ? `; did you mean ${closest}?` : "";
      return `Unknown variable ${name} is ignored${hint}`;
    });
}

/** The name in `known` nearest to `given` (a typo: at most half of it wrong, or a prefix of one), if any. */
export function closestName(given: string, known: readonly string[]): string | undefined {
  const prefixed = known.filter((k) => given.length >= 2 && k.startsWith(given));
  if (prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.ceil(given.length / 2));
  for (const k of known) {
    const d = distance(given, k);
    if (d <= bestDistance && (best === undefined || d < bestDistance)) [best, bestDistance] = [k, d];
  }
  return best;
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}
