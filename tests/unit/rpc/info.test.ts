import { test } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { checkInput, describedMethod, MAX_CHECKED_SCHEMA_DEPTH, MAX_CHECKED_SCHEMA_VALUES, parseInfo } from "../../../src/rpc/info.ts";

// `ebb call` checks an input against the method's input schema from $info before sending it (src/cli/call.ts).

/** A zod schema as a node's $info gives it. */
const jsonSchemaOf = (schema: z.ZodType) => z.toJSONSchema(schema, { io: "input", unrepresentable: "any" });

test("a $info whose schema has a $ref loop is skipped at once, not converted (zod's fromJSONSchema would hang on it)", () => {
  const loops: unknown[] = [
    { $ref: "#" },
    { $defs: { a: { $ref: "#/$defs/b" }, b: { $ref: "#/$defs/a" } }, $ref: "#/$defs/a" },
    { type: "object", properties: { self: { $ref: "#" } } },
    { type: "array", items: { anyOf: [{ $dynamicRef: "#node" }, { type: "null" }] } },
    { $recursiveRef: "#" },
  ];
  const started = performance.now();
  for (const schema of loops) {
    // Through the same path as ebb call: a $info answer, parsed, and the method's input.
    const info = parseInfo({ node: "hostile", services: { demo: [{ name: "demo.loop", idempotent: false, input: schema, output: {} }] } });
    const method = describedMethod(info, "demo.loop");
    assert.ok(method, "the $info answer is read");
    const check = checkInput(method.input, { anything: 1 });
    assert.equal(check.checked, false, JSON.stringify(schema));
    assert.match((check as { reason: string }).reason, /the schema has a \$(ref|dynamicRef|recursiveRef)/);
  }
  const ms = performance.now() - started;
  assert.ok(ms < 250, `skipped in ${ms.toFixed(1)} ms`);
});

test("a schema too big or too deep is skipped without walking it all, and nothing a node sends makes checkInput throw", () => {
  let deep: unknown = { type: "string" };
  for (let i = 0; i < 100_000; i++) deep = { type: "array", items: deep };
  const wide = { type: "object", properties: Object.fromEntries(Array.from({ length: MAX_CHECKED_SCHEMA_VALUES }, (_, i) => [`p${i}`, { type: "string" }])) };
  const started = performance.now();
  assert.deepEqual(checkInput(deep, []), { checked: false, reason: `the schema nests deeper than ${MAX_CHECKED_SCHEMA_DEPTH} levels` });
  assert.deepEqual(checkInput(wide, {}), { checked: false, reason: `the schema has more than ${MAX_CHECKED_SCHEMA_VALUES} values` });
  const ms = performance.now() - started;
  assert.ok(ms < 250, `skipped in ${ms.toFixed(1)} ms`);
  // Garbage, or what zod's converter refuses: left to the node, never thrown.
  for (const schema of [new Uint8Array(4), "a string", 5, null, [{ type: "string" }], { type: 5 }, { type: "string", not: { type: "number" } }, { if: { type: "string" }, then: { minLength: 2 } }, { type: "object", patternProperties: { "^a": { type: "string" } } }, { type: "object", properties: 5 }, { anyOf: "x" }]) {
    assert.doesNotThrow(() => checkInput(schema, "x"), JSON.stringify(schema));
  }
  assert.equal(checkInput({ type: "string", not: { type: "number" } }, "x").checked, false);
  // What would refuse everything (no branch, no value, no type) is left out; oneOf is loosened to "any one".
  for (const schema of [{ anyOf: [] }, { enum: [] }, { type: [] }, { oneOf: [{ type: "string", pattern: "^a" }, { type: "string" }] }]) {
    assert.deepEqual(checkInput(schema, "abc"), { checked: true, problems: [] }, JSON.stringify(schema));
  }
  assert.equal(checkInput({ type: "bogus" }, "x").checked, false);
});

test("checkInput names each problem as path: message, in zod's words, and passes a good input", () => {
  const sleep = jsonSchemaOf(z.object({ ms: z.number().int().min(0).max(3_600_000) }));
  assert.deepEqual(checkInput(sleep, { ms: 5 }), { checked: true, problems: [] });
  assert.deepEqual(checkInput(sleep, { ms: "soon" }), { checked: true, problems: ["ms: Invalid input: expected number, received string"] });
  assert.deepEqual(checkInput(sleep, undefined), { checked: true, problems: ["Invalid input: expected object, received undefined"] });
  const order = jsonSchemaOf(z.object({ item: z.string(), qty: z.int().min(1), tags: z.array(z.string()).max(2) }));
  assert.deepEqual(checkInput(order, { qty: 0, tags: ["a", 1] }), {
    checked: true,
    problems: ["item: Invalid input: expected string, received undefined", "qty: Too small: expected number to be >=1", "tags.1: Invalid input: expected string, received number"],
  });
  assert.deepEqual(checkInput(order, { item: "x", qty: 1, tags: ["a", "b", "c"] }), { checked: true, problems: ["tags: Too big: expected array to have <=2 items"] });
  // Many problems: the first 20, and how many more.
  const many = jsonSchemaOf(z.object(Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`k${i}`, z.string()]))));
  const problems = (checkInput(many, {}) as { problems: string[] }).problems;
  assert.equal(problems.length, 21);
  assert.equal(problems.at(-1), "(5 more)");
});

test("the check refuses only what the node refuses: what JSON Schema loses (regex flags, custom formats, .catch, oneOf) is loosened, never tightened", () => {
  const cases: [string, z.ZodType, unknown[]][] = [
    ["a regex with a flag", z.object({ code: z.string().regex(/^abc$/i) }), [{ code: "ABC" }, { code: "abc" }]],
    ["an email with its own pattern", z.email({ pattern: /^[a-z]+@local$/ }), ["me@local"]],
    ["a startsWith (a pattern)", z.string().startsWith("x"), ["xy"]],
    [".catch accepts anything", z.object({ mode: z.enum(["a", "b"]).catch("a") }), [{}, { mode: 7 }, { mode: "b" }]],
    [".default", z.object({ n: z.number().default(1) }), [{}, { n: 2 }]],
    ["a discriminated union (oneOf)", z.discriminatedUnion("kind", [z.object({ kind: z.literal("a"), x: z.number() }), z.object({ kind: z.literal("b") })]), [{ kind: "a", x: 1 }, { kind: "b" }]],
    ["a union", z.union([z.string().regex(/^A/i), z.string().regex(/^B/i)]), ["a1", "b1"]],
    ["a record", z.record(z.string().regex(/^k/i), z.number()), [{ K1: 1 }]],
    ["a tuple", z.tuple([z.string(), z.number().optional()]), [["a"], ["a", 1]]],
    ["a nullable", z.object({ v: z.string().nullable().optional() }), [{}, { v: null }, { v: "s" }]],
    ["bytes (no JSON form)", z.object({ b: z.instanceof(Uint8Array) }), [{ b: new Uint8Array(2) }]],
  ];
  for (const [name, schema, inputs] of cases) {
    for (const input of inputs) {
      assert.ok(schema.safeParse(input).success, `${name}: the node accepts ${JSON.stringify(input)}`);
      assert.deepEqual(checkInput(jsonSchemaOf(schema), input), { checked: true, problems: [] }, `${name}: ${JSON.stringify(input)}`);
    }
  }
  // What the node refuses for plain reasons is still refused.
  assert.equal((checkInput(jsonSchemaOf(z.object({ code: z.string().regex(/^abc$/i) })), { code: 1 }) as { problems: string[] }).problems.length, 1);
  assert.equal((checkInput(jsonSchemaOf(z.strictObject({ a: z.string() })), { a: "x", b: 1 }) as { problems: string[] }).problems.length, 1);
  assert.equal((checkInput(jsonSchemaOf(z.discriminatedUnion("kind", [z.object({ kind: z.literal("a") })])), { kind: "c" }) as { problems: string[] }).problems.length, 1);
  // A coercion leaves no trace in the schema: the check refuses what the node would coerce, and `ebb call --no-check` sends it.
  const coerced = z.object({ n: z.coerce.number() });
  assert.ok(coerced.safeParse({ n: "5" }).success);
  assert.deepEqual(checkInput(jsonSchemaOf(coerced), { n: "5" }), { checked: true, problems: ["n: Invalid input: expected number, received string"] });
});
