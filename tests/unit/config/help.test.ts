import { test } from "node:test";
import assert from "node:assert/strict";
import { environmentHelp } from "../../../src/cli/serve.ts";
import { loadConfig } from "../../../src/config/load.ts";
import { defaultValue, variablesHelp } from "../../../src/config/table.ts";
import { DEFAULT_WARMUP_MS } from "../../../src/cluster/balancer.ts";
import { CONFIG_VARIABLES, LIMIT_VARIABLES, MAIN_VARIABLES } from "../../../src/config/variables.ts";
import { BENCH_SWITCHES, DEMO_SWITCHES } from "../../../src/demo/switches.ts";
import { DEFAULT_SWIM_CONFIG } from "../../../src/membership/types.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../../../src/rpc/channel.ts";
import { DEFAULT_CONNECTION_LIMITS } from "../../../src/rpc/server.ts";

test("--help shows each of the node's variables once, with the table's default, then the demo's switches apart; not the bench's", () => {
  const help = environmentHelp();
  for (const row of CONFIG_VARIABLES) assert.equal(help.split("\n").filter((line) => line.startsWith(`  ${row.name} `)).length, 1, row.name);
  assert.match(help, /^ {2}EBB_RPC_PORT +msgpack-rpc TCP port, 0 picks a free one \(default 7400\)$/m);
  assert.match(help, /^ {2}EBB_MAX_CONNECTIONS +.* \(default 10000\)$/m);
  assert.match(help, /^ {2}EBB_NODE_ID +.* \(default: random n-xxxxxx\)$/m);
  assert.match(help, /\(ebb call, members, bench and token read EBB_SEEDS, EBB_CLUSTER_KEY, EBB_CLUSTER_ID, EBB_TLS_CERT, EBB_TLS_KEY, EBB_TLS_CA and EBB_TLS_SERVER_NAME too\)/);
  const [node, demo] = help.split("The demo service (ebb serve) reads:");
  for (const row of Object.values(DEMO_SWITCHES)) {
    assert.doesNotMatch(node!, new RegExp(row.name));
    assert.match(demo!, new RegExp(`^ {2}${row.name} `, "m"));
  }
  for (const row of Object.values(BENCH_SWITCHES)) assert.doesNotMatch(help, new RegExp(row.name));
});

test("a help line is the row's name, meaning and default", () => {
  assert.equal(variablesHelp([MAIN_VARIABLES.host]), "  EBB_HOST                        address both listeners bind (default 127.0.0.1)");
});

test("defaults that belong to a part are that part's own constants: connection limits, SWIM timings, message size", () => {
  const config = loadConfig({});
  assert.deepEqual(config.limits, DEFAULT_CONNECTION_LIMITS);
  for (const [key, value] of Object.entries(config.swim)) assert.equal(value, DEFAULT_SWIM_CONFIG[key as keyof typeof DEFAULT_SWIM_CONFIG], key);
  assert.equal(config.maxMessageBytes, DEFAULT_MAX_MESSAGE_BYTES);
  assert.equal(defaultValue(MAIN_VARIABLES.warmupMs), DEFAULT_WARMUP_MS);
  assert.match(variablesHelp([LIMIT_VARIABLES.maxInflightPerConnection]), new RegExp(`\\(default ${DEFAULT_CONNECTION_LIMITS.maxInflightPerConnection}\\)$`));
});
