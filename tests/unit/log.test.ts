import { test } from "node:test";
import assert from "node:assert/strict";
import { createLogger, WarningWindow } from "../../src/log.ts";

test("the logger writes one JSON object a line with time, level, node, message and fields", () => {
  const lines: string[] = [];
  const log = createLogger({ node: "n1", write: (line) => lines.push(line) });
  log.info("listening", { rpc: "127.0.0.1:7400", error: new Error("boom") });
  const line = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(line.level, "info");
  assert.equal(line.node, "n1");
  assert.equal(line.msg, "listening");
  assert.equal(line.rpc, "127.0.0.1:7400");
  assert.equal((line.error as { message: string }).message, "boom");
  assert.ok(!Number.isNaN(Date.parse(String(line.time))));
});

test("the logger drops lines below its level and writes readable text when pretty", () => {
  const lines: string[] = [];
  const log = createLogger({ node: "n1", level: "warn", format: "pretty", write: (line) => lines.push(line) });
  log.debug("hidden");
  log.info("hidden too");
  log.warn("careful", { member: "n2" });
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT[\d:.]+Z WARN  n1 careful member=n2$/);
});

test("a warning window logs its burst, holds back the rest, and counts them in its next line", () => {
  const lines: string[] = [];
  const log = createLogger({ node: "t", write: (line) => lines.push(JSON.parse(line).msg) });
  let now = 0;
  const window = new WarningWindow(log, 10_000, () => now, 2);
  for (let i = 0; i < 50; i++) window.warn(`refused ${i}`);
  assert.deepEqual(lines, ["refused 0", "refused 1"]);
  now = 10_000;
  window.warn("refused 50");
  assert.deepEqual(lines.at(-1), "refused 50 (and 48 more like it in the last 10 s)");
});
