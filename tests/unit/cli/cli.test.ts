import { test } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { summaryTable, type BenchSummary } from "../../../src/cli/bench.ts";
import { addressList, closestName, defineCommand, duration, parseCommand, UsageError, wholeNumber } from "../../../src/cli/command.ts";
import { Histogram } from "../../../src/cli/histogram.ts";
import { membersTable } from "../../../src/cli/members.ts";
import { formatAge, renderTable } from "../../../src/cli/table.ts";
import { resolveTarget } from "../../../src/cli/target.ts";

test("the latency histogram keeps quantiles within 1.6% over microseconds to an hour, with the exact max", () => {
  const h = new Histogram();
  for (let i = 1; i <= 100_000; i++) h.record(i / 100); // 0.01 .. 1000 ms, uniform
  for (const [q, exact] of [[0.5, 500], [0.9, 900], [0.99, 990], [0.999, 999]] as const) {
    const got = h.quantile(q);
    assert.ok(Math.abs(got - exact) / exact < 0.016, `q${q}: ${got} vs ${exact}`);
  }
  assert.equal(h.max, 1000);
  assert.equal(h.count, 100_000);
  assert.ok(Math.abs(h.mean() - 500.005) < 1e-6);
  const wide = new Histogram();
  wide.record(0.001);
  wide.record(3_600_000);
  assert.equal(wide.quantile(1), 3_600_000);
  assert.equal(wide.quantile(0.5), 0.001);
  assert.equal(new Histogram().quantile(0.99), 0);
  const merged = new Histogram();
  merged.add(h);
  merged.add(wide);
  assert.equal(merged.count, 100_002);
  assert.equal(merged.max, 3_600_000);
});

test("flag schemas: durations, whole numbers and address lists, with the reason when wrong", () => {
  assert.equal(duration.parse("500ms"), 500);
  assert.equal(duration.parse("10s"), 10_000);
  assert.equal(duration.parse("1.5"), 1_500);
  assert.equal(duration.parse("2m"), 120_000);
  assert.equal(duration.parse("1h"), 3_600_000);
  assert.equal(duration.parse("0.5h"), 1_800_000);
  assert.equal(duration.safeParse("0s").success, false);
  assert.equal(duration.safeParse("soon").error?.issues[0]?.message, "must be a duration such as 500ms, 10s, 2m or 1h");
  assert.equal(duration.safeParse("1d").success, false);
  assert.equal(wholeNumber(1).parse("16"), 16);
  assert.equal(wholeNumber(1).safeParse("0").error?.issues[0]?.message, 'must be a positive whole number (got "0")');
  assert.equal(wholeNumber(1).safeParse("-5").error?.issues[0]?.message, 'must be a positive whole number (got "-5")');
  assert.equal(wholeNumber(1).safeParse("1.5").success, false);
  assert.equal(wholeNumber(10).safeParse("9").error?.issues[0]?.message, 'must be a whole number of at least 10 (got "9")');
  assert.deepEqual(addressList.parse("a:1,b.example:7400"), ["a:1", "b.example:7400"]);
  assert.equal(addressList.safeParse("a:1,").success, false);
  assert.equal(addressList.safeParse("nohost").success, false);
});

test("parseCommand reports unknown options and every invalid flag as a UsageError", () => {
  const command = defineCommand({
    name: "t",
    summary: "test",
    usage: ["t"],
    options: { rate: { type: "string", description: "" }, json: { type: "boolean", description: "" } },
    flags: z.object({ rate: wholeNumber(1).optional(), json: z.boolean().default(false) }),
    run: async () => 0,
  });
  const usage = (message: string | RegExp) => (e: unknown) => e instanceof UsageError && (typeof message === "string" ? e.message === message : message.test(e.message));
  assert.deepEqual(parseCommand({ ...command, maxPositionals: 2 }, ["x", "--rate", "5", "y"]), { flags: { rate: 5, json: false }, positionals: ["x", "y"] });
  assert.throws(() => parseCommand({ ...command, maxPositionals: 1 }, ["x", "y"]), usage('Unexpected argument "y": ebb t takes at most 1 arguments'));
  assert.throws(() => parseCommand(command, ["stray", "--json"]), usage('Unexpected argument "stray": ebb t takes no arguments, only options'));
  assert.throws(() => parseCommand(command, ["--nope"]), usage('Unknown option "--nope"'));
  assert.throws(() => parseCommand(command, ["--rtae", "5"]), usage('Unknown option "--rtae"; did you mean --rate?'));
  assert.throws(() => parseCommand(command, ["--jsn"]), usage('Unknown option "--jsn"; did you mean --json?'));
  assert.throws(() => parseCommand(command, ["--rate", "0"]), usage('--rate must be a positive whole number (got "0")'));
  // A negative number is the option's value (parseArgs alone would call it ambiguous), so the schema names the problem.
  assert.throws(() => parseCommand(command, ["--rate", "-5"]), usage('--rate must be a positive whole number (got "-5")'));
  assert.throws(() => parseCommand(command, ["--rate"]), usage(/--rate/));
});

test("did you mean: the nearest name for a typo or a prefix, none for something unrelated", () => {
  const names = ["addr", "seeds", "method", "input", "rate", "concurrency", "duration", "timeout", "json", "help"];
  assert.equal(closestName("adr", names), "addr");
  assert.equal(closestName("seed", names), "seeds");
  assert.equal(closestName("concurency", names), "concurrency");
  assert.equal(closestName("durration", names), "duration");
  assert.equal(closestName("time", names), "timeout");
  assert.equal(closestName("port", names), undefined);
  assert.equal(closestName("x", names), undefined);
  assert.equal(closestName("memebrs", ["serve", "call", "members", "bench", "keygen", "token"]), "members");
});

test("the target: --addr, else --seeds, else EBB_SEEDS, else this machine's default port; never both flags", () => {
  assert.deepEqual(resolveTarget({ addr: ["h:1"] }, {}), { mode: "addr", addresses: ["h:1"], label: "addr h:1" });
  assert.deepEqual(resolveTarget({ seeds: ["h:1", "h:2"] }, { EBB_SEEDS: "x:9" }), { mode: "seeds", addresses: ["h:1", "h:2"], label: "seeds h:1,h:2" });
  assert.deepEqual(resolveTarget({}, { EBB_SEEDS: "x:9" }), { mode: "seeds", addresses: ["x:9"], label: "seeds x:9" });
  assert.deepEqual(resolveTarget({}, {}), { mode: "addr", addresses: ["127.0.0.1:7400"], label: "addr 127.0.0.1:7400" });
  assert.throws(() => resolveTarget({ addr: ["h:1"], seeds: ["h:2"] }, {}), UsageError);
  assert.throws(() => resolveTarget({}, { EBB_SEEDS: "bad" }), /EBB_SEEDS="bad"/);
});

test("tables align their columns; ages read as people say them", () => {
  assert.equal(renderTable(["A", "LONG"], [["xyz", "1"], ["", "22"]]), "A    LONG\nxyz  1\n     22");
  assert.deepEqual(["0", "850", "12000", "185000", "7800000", "360000000"].map((ms) => formatAge(Number(ms))), ["0ms", "850ms", "12s", "3m05s", "2h10m", "4d4h"]);
  const members = [
    { id: "b", addr: "10.0.0.2:7400", incarnation: 7, status: "suspect" as const, since: 1_000, meta: { state: "draining", services: ["demo", "x"], version: "0.1.0", http: null } },
    { id: "a", addr: "10.0.0.1:7400", incarnation: 3, status: "alive" as const, since: 5_000, meta: { state: "ready", services: [], version: "0.1.0", http: 7401 } },
  ];
  assert.equal(
    membersTable(members, 65_000),
    [
      "ID  ADDRESS        STATUS   LIFECYCLE  SERVICES  INCARNATION  AGE",
      "a   10.0.0.1:7400  alive    ready      -         3            1m00s",
      "b   10.0.0.2:7400  suspect  draining   demo,x    7            1m04s",
    ].join("\n"),
  );
});

test("the bench summary shows totals, errors, retries and each node's share", () => {
  const summary: BenchSummary = {
    method: "demo.echo",
    target: "seeds h:1",
    mode: "rate",
    rate: 1000,
    durationMs: 10_000,
    calls: 10_000,
    ok: 9_998,
    errors: { UNAVAILABLE: 2 },
    skipped: 0,
    callsPerSecond: 1_000,
    latencyMs: { p50: 0.5, p90: 1.25, p99: 12.5, max: 250, mean: 0.7 },
    retries: { baffled: 4 },
    nodes: { a: 7_500, b: 2_500 },
    interrupted: false,
  };
  assert.equal(
    summaryTable(summary),
    [
      "ebb bench: demo.echo, rate 1,000/s, 10.0 s, seeds h:1",
      "",
      "calls   ok     errors  calls/s  p50      p90      p99      max",
      "10,000  9,998  2       1,000    0.50 ms  1.25 ms  12.5 ms  250 ms",
      "",
      "errors   UNAVAILABLE 2",
      "retries  baffled 4",
      "nodes    a 7,500 (75.0%), b 2,500 (25.0%)",
    ].join("\n"),
  );
});
