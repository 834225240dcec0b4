import { z } from "zod";

/**
 * A `$info` answer as clients read it (see `nodeBuiltins` and `Router.describe`), bounded: it comes
 * from a node, and a node's word is checked like any other input.
 */
const InfoSchema = z.object({
  node: z.string().max(128).optional(),
  services: z.record(
    z.string().max(128),
    z.array(z.object({ name: z.string().max(300), idempotent: z.boolean(), timeoutMs: z.number().optional(), input: z.unknown(), output: z.unknown() }).loose()).max(1_000),
  ),
}).loose();

/** A node's description of itself, as `$info` answers it. */
export type NodeInfo = z.output<typeof InfoSchema>;
/** One method in it. */
export type MethodDescription = NodeInfo["services"][string][number];

/** Reads a `$info` answer; undefined when it is not one. */
export function parseInfo(value: unknown): NodeInfo | undefined {
  const parsed = InfoSchema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

/** The description of `method` (`service.method`) in a `$info` answer, if it has one. */
export function describedMethod(info: NodeInfo | undefined, method: string): MethodDescription | undefined {
  const service = method.slice(0, method.indexOf("."));
  return info?.services[service]?.find((m) => m.name === method);
}

// ---- checking an input against a method's input schema, before sending it ------------------------

/** Most values (objects, arrays and scalars together) a schema may hold for `checkInput` to use it. */
export const MAX_CHECKED_SCHEMA_VALUES = 2_000;
/** Deepest nesting of a schema `checkInput` uses. */
export const MAX_CHECKED_SCHEMA_DEPTH = 32;
/** Most problems `checkInput` names; one more line says how many were left out. */
const MAX_PROBLEMS = 20;

/** What `checkInput` found: the input's problems (none when it matches), or why the schema was left unused. */
export type InputCheck = { checked: true; problems: string[] } | { checked: false; reason: string };

/** Why a schema is left unused. */
class Unusable extends Error {}

/** Keys that refer to other parts of a schema: following them could loop (`{"$ref":"#"}`), so a schema holding one is not used. */
const REFERENCES = new Set(["$ref", "$dynamicRef", "$recursiveRef"]);
/** Keywords zod's `fromJSONSchema` refuses, or that loosening the schema around them would make stricter. */
const UNUSABLE = ["if", "then", "else", "dependentSchemas", "dependentRequired", "dependencies", "unevaluatedItems", "unevaluatedProperties", "patternProperties"];
/** Keywords whose value is one schema. */
const ONE_SCHEMA = ["additionalItems", "additionalProperties", "propertyNames", "contains"];
/**
 * Keywords whose value is a number (the two exclusive bounds may also be draft-4 booleans). Not
 * maxContains: more items may match a loosened `contains`.
 */
const NUMBERS = ["minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems", "minProperties", "maxProperties", "minContains"];

/**
 * Checks `input` against a method's input schema from a node's `$info`, before it is sent (`ebb call`).
 * The node stays the judge; this only saves a round trip and shows what is wrong. A node's schema is
 * input like any other, so it is used only when it is safe to: no `$ref` anywhere (a loop of them hangs
 * zod's `fromJSONSchema`), at most MAX_CHECKED_SCHEMA_VALUES values and MAX_CHECKED_SCHEMA_DEPTH levels,
 * and only keywords it understands; otherwise, or when the conversion fails, nothing is checked.
 *
 * JSON Schema says less than zod, so the schema is loosened first, never tightened, to refuse only what
 * the node refuses too: `pattern` and `format` are dropped (a regex's flags and a custom format's own
 * pattern are lost, and no regex from a node is ever compiled), a subschema with a `default` accepts
 * anything and is not required (zod's `.catch()` shows as one), `oneOf` becomes `anyOf`. What the
 * schema cannot show at all, a coercion or a preprocess, can still make it refuse an input the node
 * would accept: `ebb call --no-check` sends it anyway.
 */
export function checkInput(schema: unknown, input: unknown): InputCheck {
  try {
    scan(schema, 1, { values: 0 });
    const check = z.fromJSONSchema(loosened(schema) as Parameters<typeof z.fromJSONSchema>[0], { registry: z.registry() });
    const parsed = check.safeParse(input);
    return { checked: true, problems: parsed.success ? [] : problemsOf(parsed.error.issues) };
  } catch (error) {
    return { checked: false, reason: error instanceof Unusable ? error.message : `the schema could not be converted (${error instanceof Error ? error.message : String(error)})` };
  }
}

/** `path: message` of each issue (zod's own wording, as a node's INVALID_PARAMS has it), without repeats, at most MAX_PROBLEMS. */
function problemsOf(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string[] {
  const problems = [...new Set(issues.map((issue) => (issue.path.length ? `${issue.path.map(String).join(".")}: ${issue.message}` : issue.message)))];
  if (problems.length <= MAX_PROBLEMS) return problems;
  return [...problems.slice(0, MAX_PROBLEMS), `(${problems.length - MAX_PROBLEMS} more)`];
}

/** A plain object (what msgpack and JSON give), not an array, bytes or a date. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Throws Unusable when `value` (at nesting `depth`) holds a reference, is too big or too deep, or is not JSON. */
function scan(value: unknown, depth: number, seen: { values: number }): void {
  if (++seen.values > MAX_CHECKED_SCHEMA_VALUES) throw new Unusable(`the schema has more than ${MAX_CHECKED_SCHEMA_VALUES} values`);
  if (value === null || typeof value === "string" || typeof value === "boolean" || typeof value === "number") return;
  if (depth > MAX_CHECKED_SCHEMA_DEPTH) throw new Unusable(`the schema nests deeper than ${MAX_CHECKED_SCHEMA_DEPTH} levels`);
  if (Array.isArray(value)) {
    for (const item of value) scan(item, depth + 1, seen);
    return;
  }
  if (!isPlainObject(value)) throw new Unusable("the schema is not JSON");
  for (const [key, item] of Object.entries(value)) {
    if (REFERENCES.has(key)) throw new Unusable(`the schema has a ${key}`);
    scan(item, depth + 1, seen);
  }
}

/** A scalar JSON value: what `const` and `enum` are checked with (zod compares objects by identity). */
function isScalar(value: unknown): boolean {
  return value === null || typeof value === "string" || typeof value === "boolean" || typeof value === "number";
}

/** A copy of a (scanned) schema that accepts at least what it accepts, in the keywords `fromJSONSchema` reads; see `checkInput`. */
function loosened(schema: unknown): unknown {
  if (typeof schema === "boolean") return schema;
  if (!isPlainObject(schema)) throw new Unusable("a part of the schema is not a schema");
  if (Object.hasOwn(schema, "default")) return {};
  for (const key of UNUSABLE) if (Object.hasOwn(schema, key)) throw new Unusable(`the schema uses ${key}`);
  const out: Record<string, unknown> = {};
  const { type, not, properties, required, items } = schema;
  if (typeof type === "string") {
    out.type = type;
  } else if (Array.isArray(type) && type.every((t) => typeof t === "string")) {
    // Each name once (zod's fromJSONSchema converts the whole schema again for each), and none at all is no type.
    if (type.length > 0) out.type = [...new Set(type)];
  } else if (type !== undefined) {
    throw new Unusable("the schema has a type that is not a name");
  }
  // Only { not: {} } (never) is read; loosening what a `not` holds would tighten the schema.
  if (not !== undefined) {
    if (!isPlainObject(not) || Object.keys(not).length > 0) throw new Unusable("the schema uses not");
    out.not = {};
  }
  // An empty enum would refuse everything.
  if (Array.isArray(schema.enum) && schema.enum.length > 0 && schema.enum.every(isScalar)) out.enum = schema.enum;
  if (isScalar(schema.const)) out.const = schema.const;
  for (const key of NUMBERS) {
    const value = schema[key];
    if ((typeof value === "number" && Number.isFinite(value) && (key !== "multipleOf" || value > 0)) || (typeof value === "boolean" && key.startsWith("exclusive"))) out[key] = value;
  }
  if (typeof schema.uniqueItems === "boolean") out.uniqueItems = schema.uniqueItems;
  for (const key of ONE_SCHEMA) if (schema[key] !== undefined) out[key] = loosened(schema[key]);
  if (items !== undefined) out.items = Array.isArray(items) ? items.map(loosened) : loosened(items);
  if (Array.isArray(schema.prefixItems)) out.prefixItems = schema.prefixItems.map(loosened);
  // Without any branch, anyOf would refuse everything.
  if (Array.isArray(schema.anyOf) && schema.anyOf.length > 0) out.anyOf = schema.anyOf.map(loosened);
  const allOf = Array.isArray(schema.allOf) ? schema.allOf.map(loosened) : [];
  // oneOf wants exactly one branch to match, which loosened branches could break: any one is enough.
  if (Array.isArray(schema.oneOf) && schema.oneOf.length > 0) allOf.push({ anyOf: schema.oneOf.map(loosened) });
  if (allOf.length > 0) out.allOf = allOf;
  if (isPlainObject(properties)) {
    // fromEntries: a property named __proto__ stays a property.
    out.properties = Object.fromEntries(Object.entries(properties).map(([name, sub]) => [name, loosened(sub)]));
    const defaulted = (name: string) => isPlainObject(properties[name]) && Object.hasOwn(properties[name], "default");
    if (Array.isArray(required) && required.every((name) => typeof name === "string")) out.required = required.filter((name) => !Object.hasOwn(properties, name) || !defaulted(name));
  } else if (Array.isArray(required) && required.every((name) => typeof name === "string")) out.required = required;
  return out;
}
