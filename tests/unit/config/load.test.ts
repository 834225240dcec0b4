import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../../src/config/load.ts";
import { clusterKeyProblem, newClusterKey } from "../../../src/config/cluster-key.ts";
import { checkExposure, isLoopback } from "../../../src/config/secure.ts";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { ROOT } from "../../helpers/process.ts";
import { defaultValue, type Variable } from "../../../src/config/table.ts";
import { CONFIG_VARIABLES, MAIN_VARIABLES } from "../../../src/config/variables.ts";
import { BENCH_SWITCHES, DEMO_SWITCHES, readBenchSwitches, readDemoSwitches } from "../../../src/demo/switches.ts";

test("loadConfig takes the documented defaults when nothing is set", () => {
  const config = loadConfig({});
  assert.equal(config.host, defaultValue(MAIN_VARIABLES.host));
  assert.equal(config.rpcPort, 7400);
  assert.equal(config.maxMessageBytes, 8 * 1024 * 1024);
  assert.equal(config.warmupMs, 10_000);
  assert.equal(config.maxInflight, 10_000);
  assert.equal(config.httpIdleTimeoutMs, 10_000);
  assert.match(config.nodeId, /^n-[0-9a-f]{6}$/);
});

test("loadConfig reads every variable", () => {
  const config = loadConfig({
    EBB_NODE_ID: "a1",
    EBB_HOST: "0.0.0.0",
    EBB_RPC_PORT: "9000",
    EBB_HTTP_PORT: "9001",
    EBB_HTTP_IDLE_TIMEOUT_MS: "3000",
    EBB_MAX_MESSAGE_BYTES: "4096",
    EBB_SHUTDOWN_TIMEOUT_MS: "2500",
    EBB_DRAIN_DELAY_MS: "100",
    EBB_STARTUP_TIMEOUT_MS: "5000",
    EBB_DEMO_WARMUP_MS: "10",
    EBB_WARMUP_MS: "30000",
    EBB_MAX_INFLIGHT: "0",
    EBB_ADAPTIVE_CONCURRENCY: "1",
    EBB_MAX_CONNECTIONS: "500",
    EBB_MAX_INFLIGHT_PER_CONNECTION: "64",
    EBB_READ_TIMEOUT_MS: "2000",
    EBB_IDLE_TIMEOUT_MS: "0",
    EBB_MAX_BUFFERED_BYTES: "1048576",
    EBB_MAX_MESSAGE_ELEMENTS: "5000",
    EBB_MAX_DEPTH: "16",
    EBB_TCP_KEEPALIVE_MS: "10000",
    EBB_CLUSTER_ID: "prod",
    EBB_INSECURE: "1",
    EBB_METRICS_ADDR: "127.0.0.1:9400",
    EBB_KEEPALIVE_MS: "2500",
  });
  const { seeds, advertise, swim, ...rest } = config;
  assert.deepEqual(seeds, []);
  assert.equal(advertise, undefined);
  assert.equal(swim.probeIntervalMs, 1_000);
  assert.deepEqual(rest, {
    nodeId: "a1",
    host: "0.0.0.0",
    rpcPort: 9000,
    httpPort: 9001,
    httpIdleTimeoutMs: 3000,
    maxMessageBytes: 4096,
    shutdownTimeoutMs: 2500,
    drainDelayMs: 100,
    startupTimeoutMs: 5000,
    warmupMs: 30_000,
    maxInflight: 0,
    adaptiveConcurrency: true,
    limits: {
      maxConnections: 500,
      maxInflightPerConnection: 64,
      readTimeoutMs: 2000,
      idleTimeoutMs: 0,
      maxBufferedBytes: 1_048_576,
      maxElements: 5000,
      maxDepth: 16,
      keepAliveMs: 10_000,
    },
    clusterKey: undefined,
    clusterId: "prod",
    insecure: true,
    metricsAddr: "127.0.0.1:9400",
    keepaliveMs: 2500,
    tls: undefined,
    logLevel: "info",
    logFormat: "auto",
    warnings: [],
  });
});

test("EBB_ADVERTISE must be an address peers accept for a member", () => {
  assert.equal(loadConfig({ EBB_ADVERTISE: "10.0.0.5:7400" }).advertise, "10.0.0.5:7400");
  assert.throws(() => loadConfig({ EBB_ADVERTISE: "10.0.0.5:0" }), /EBB_ADVERTISE="10.0.0.5:0" must be host:port with a port 1-65535/);
  assert.throws(() => loadConfig({ EBB_ADVERTISE: "10.0.0.5:70000" }), /EBB_ADVERTISE/);
  assert.throws(() => loadConfig({ EBB_ADVERTISE: `${"h".repeat(300)}:7400` }), /at most 262 characters/);
});

test("EBB_ADVERTISE is refused when it names every interface (0.0.0.0, ::), which no peer can call", () => {
  for (const advertise of ["0.0.0.0:7400", "[::]:7400", ":::7400", "[0:0:0:0:0:0:0:0]:7400", "00.0.0.000:7400"]) {
    assert.throws(() => loadConfig({ EBB_ADVERTISE: advertise }), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems, [`EBB_ADVERTISE=${JSON.stringify(advertise)} is not an address others can reach: 0.0.0.0 and :: mean every interface of this machine; give the one others call (e.g. the pod's IP)`]);
      return true;
    });
  }
  assert.equal(loadConfig({ EBB_ADVERTISE: "10.0.0.0:7400" }).advertise, "10.0.0.0:7400");
});

test("EBB_HOST takes an IP address or a host name, and names anything else", () => {
  for (const host of ["127.0.0.1", "0.0.0.0", "::", "::1", "fe80::1%eth0", "localhost", "node-1.example.com", "my_service"]) {
    assert.equal(loadConfig({ EBB_HOST: host, EBB_INSECURE: "1" }).host, host);
  }
  for (const host of ["256.1.1.1", "10.0.0", "http://10.0.0.1", "10.0.0.1:7400", "a b", "-x"]) {
    assert.throws(
      () => loadConfig({ EBB_HOST: host, EBB_INSECURE: "1" }),
      (error: unknown) => error instanceof ConfigError && error.problems[0]!.startsWith(`EBB_HOST=${JSON.stringify(host)} must be an IP address (such as 127.0.0.1, 0.0.0.0 or ::) or a host name`),
      host,
    );
  }
  assert.throws(() => loadConfig({ EBB_HOST: "[::1]" }), /EBB_HOST="\[::1\]" must be an IPv6 address without brackets, such as ::1/);
});

test("loadConfig names every bad variable in one message", () => {
  assert.throws(
    () => loadConfig({ EBB_RPC_PORT: "seventy", EBB_MAX_MESSAGE_BYTES: "10", EBB_NODE_ID: "has space" }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.problems.length, 3);
      assert.match(error.message, /EBB_RPC_PORT="seventy" must be a number/);
      assert.match(error.message, /EBB_MAX_MESSAGE_BYTES="10" must be at least 1024/);
      assert.match(error.message, /EBB_NODE_ID="has space" must be 1-64 letters/);
      return true;
    },
  );
  assert.throws(() => loadConfig({ EBB_RPC_PORT: "70000" }), /EBB_RPC_PORT="70000" must be between 0 and 65535/);
  assert.throws(() => loadConfig({ EBB_RPC_PORT: "1.5" }), /EBB_RPC_PORT="1.5" must be a whole number/);
});

test("EBB_HTTP_PORT takes a port, 0 to turn HTTP off, or auto for a free port", () => {
  assert.equal(loadConfig({}).httpPort, 7401);
  assert.equal(loadConfig({ EBB_HTTP_PORT: "0" }).httpPort, null);
  assert.equal(loadConfig({ EBB_HTTP_PORT: "auto" }).httpPort, 0);
  assert.throws(() => loadConfig({ EBB_HTTP_PORT: "any" }), /EBB_HTTP_PORT="any" must be a port number, 0 \(off\) or "auto"/);
});

test("EBB_SEEDS, EBB_ADVERTISE and the membership timings are read and checked", () => {
  const config = loadConfig({ EBB_SEEDS: "10.0.0.1:7400,seed.local:7400", EBB_ADVERTISE: "10.0.0.9:7400", EBB_SWIM_PROBE_INTERVAL_MS: "200" });
  assert.deepEqual(config.seeds, ["10.0.0.1:7400", "seed.local:7400"]);
  assert.equal(config.advertise, "10.0.0.9:7400");
  assert.equal(config.swim.probeIntervalMs, 200);
  assert.throws(() => loadConfig({ EBB_SEEDS: "10.0.0.1" }), /EBB_SEEDS="10.0.0.1" must be comma-separated host:port pairs/);
  assert.throws(() => loadConfig({ EBB_ADVERTISE: "a:1,b:2" }), /EBB_ADVERTISE="a:1,b:2" must be host:port/);
});

test("unknown EBB_* variables are warned about, with the likely intended name", () => {
  const { warnings } = loadConfig({ EBB_RPC_PROT: "9000", EBB_WHATEVER_ELSE: "1", PATH: "/bin" });
  assert.deepEqual(warnings, ["Unknown variable EBB_RPC_PROT is ignored; did you mean EBB_RPC_PORT?", "Unknown variable EBB_WHATEVER_ELSE is ignored"]);
});

test("EBB_LOG_LEVEL and EBB_LOG_FORMAT take their documented values", () => {
  const config = loadConfig({ EBB_LOG_LEVEL: "warn", EBB_LOG_FORMAT: "pretty" });
  assert.equal(config.logLevel, "warn");
  assert.equal(config.logFormat, "pretty");
  assert.throws(() => loadConfig({ EBB_LOG_LEVEL: "loud", EBB_LOG_FORMAT: "xml" }), /EBB_LOG_LEVEL="loud" must be debug, info, warn or error; EBB_LOG_FORMAT="xml" must be json, pretty or auto/);
});

test("EBB_KEEPALIVE_MS is 0 (off) or at least 100 ms, the shortest interval a server holds a peer to", () => {
  assert.equal(loadConfig({ EBB_KEEPALIVE_MS: "0" }).keepaliveMs, 0);
  assert.equal(loadConfig({ EBB_KEEPALIVE_MS: "100" }).keepaliveMs, 100);
  assert.throws(() => loadConfig({ EBB_KEEPALIVE_MS: "50" }), /EBB_KEEPALIVE_MS="50" must be 0 \(off\) or between 100 and 3600000 ms/);
});

test("loadConfig treats an empty variable as unset", () => {
  assert.equal(loadConfig({ EBB_RPC_PORT: "" }).rpcPort, 7400);
});

test("EBB_CLUSTER_KEY is read, and a bad one is described without being echoed", () => {
  assert.equal(loadConfig({}).clusterKey, undefined);
  const key = newClusterKey();
  assert.deepEqual(loadConfig({ EBB_CLUSTER_KEY: key }).clusterKey, [key], "what ebb keygen prints: a ring of one");
  assert.throws(
    () => loadConfig({ EBB_CLUSTER_KEY: "short secret" }),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message === 'Invalid configuration: EBB_CLUSTER_KEY=(12 characters, not shown) must be base64, base64url or hex text of at most 256 characters; run "ebb keygen" to make one' &&
      !e.message.includes("short secret"),
  );
});

test("a cluster key needs 128 random bits: base64 or hex of 16 bytes or more, not a repeat, not a few characters over and over", () => {
  const SHORT = /at least 16 random bytes/;
  const CHOSEN = /looks chosen, not random/;
  const FORMAT = /must be base64, base64url or hex/;
  const table: [string, RegExp | undefined][] = [
    [newClusterKey(), undefined], // 32 bytes, base64
    [randomBytes(16).toString("base64"), undefined], // 16 bytes with padding
    [randomBytes(16).toString("base64url"), undefined], // 22 characters
    [randomBytes(16).toString("hex"), undefined], // 32 hex digits
    [randomBytes(200).toString("base64").slice(0, 256), undefined],
    ["passwordpassword", SHORT], // 12 bytes as base64
    ["passwordpasswordpassword", CHOSEN], // 18 bytes, but a repeat
    ["correcthorsebatteryXstaple", undefined], // the rule's limit: a long passphrase of many letters passes
    ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", CHOSEN],
    ["abababababababababababababababab", CHOSEN],
    ["aaaabbbbccccddddaaaabbbbccccdddx", CHOSEN], // 2.1 bits per character
    ["0123456789abcdef0123456789abcdef", CHOSEN], // hex, repeated
    ["0123456789abcdef0123456789abcde", SHORT], // 31 hex digits: 15 bytes
    [randomBytes(16).toString("hex").slice(0, 30), SHORT],
    ["q9Hn2V0d8mXbR4tLcW7y.z1sKfA6uJeG3oNvIhTgBkE", FORMAT], // "." is in neither alphabet
    ["q9Hn2V0d8mXbR4tLcW7y+z1sKfA6uJeG3oNvIhTgBk_", FORMAT], // both alphabets at once
    ["q9Hn2V0d8mXbR4tLcW7yPz1sKfA6uJeG3oNvIhTgBkE===", FORMAT],
    ["k".repeat(257), FORMAT],
  ];
  for (const [key, problem] of table) {
    const found = clusterKeyProblem(key);
    if (problem === undefined) assert.equal(found, undefined, `${key} is a good key`);
    else assert.match(found ?? "", problem, key);
  }
});

test("the demo and bench switches are read by their own code, outside the node's Config, and are not unknown to it", () => {
  const env = { EBB_DEMO_WARMUP_MS: "10", EBB_DEMO_RECORD: "true", EBB_DEMO_FAIL: "internal", EBB_BENCH_PLAIN_SHUTDOWN: "1" };
  assert.deepEqual(readDemoSwitches(env), { warmupMs: 10, record: true, fail: "internal" });
  assert.deepEqual(readBenchSwitches(env), { plainShutdown: true });
  assert.deepEqual(readDemoSwitches({}), { warmupMs: 0, record: false, fail: "none" });
  assert.deepEqual(readBenchSwitches({}), { plainShutdown: false });
  const config = loadConfig(env);
  assert.deepEqual(config.warnings, []);
  for (const key of ["demoWarmupMs", "demoRecord", "demoFail", "benchPlainShutdown"]) assert.equal(key in config, false, key);
  assert.throws(() => readDemoSwitches({ EBB_DEMO_FAIL: "sometimes" }), /EBB_DEMO_FAIL="sometimes" must be none, internal or overloaded/);
  assert.throws(
    () => readDemoSwitches({ EBB_DEMO_RECORD: "yes", EBB_DEMO_WARMUP_MS: "-1" }),
    (e: unknown) => e instanceof ConfigError && e.message === 'Invalid configuration: EBB_DEMO_RECORD="yes" must be 1, 0, true or false; EBB_DEMO_WARMUP_MS="-1" must be between 0 and 3600000 ms',
  );
  assert.throws(() => readBenchSwitches({ EBB_BENCH_PLAIN_SHUTDOWN: "yes" }), /EBB_BENCH_PLAIN_SHUTDOWN="yes" must be 0 or 1/);
});

test("every variable is read by someone and named once across the node's table and the switches", () => {
  const all = [...CONFIG_VARIABLES, ...Object.values(DEMO_SWITCHES), ...Object.values(BENCH_SWITCHES)];
  assert.equal(new Set(all.map((row) => row.name)).size, all.length);
  for (const row of all) assert.ok(row.readers.length > 0, row.name);
  assert.deepEqual(CONFIG_VARIABLES.filter((row) => row.readers.includes("cli")).map((row) => row.name), ["EBB_SEEDS", "EBB_CLUSTER_KEY", "EBB_CLUSTER_ID", "EBB_TLS_CERT", "EBB_TLS_KEY", "EBB_TLS_CA", "EBB_TLS_SERVER_NAME"]);
});

/** The `| \`EBB_X\` | default |` rows of one README table, from its header line to the first line that is not a row. */
function readmeRows(readme: string, heading: string): [string, string][] {
  const section = readme.slice(readme.indexOf(heading));
  const table = section.slice(section.indexOf("| variable | default | meaning |"));
  const rows: [string, string][] = [];
  for (const line of table.split("\n").slice(2)) {
    const cells = /^\| `(EBB_[A-Z0-9_]+)` \| (.*?) \|/.exec(line);
    if (!cells) break;
    rows.push([cells[1]!, cells[2]!]);
  }
  return rows;
}

/** A README default cell matches the table's default: the value in backticks (a note may follow), or what unset means. */
function assertDocumented(rows: [string, string][], variables: readonly Variable[]): void {
  assert.deepEqual(
    rows.map(([name]) => name),
    variables.map((row) => row.name),
  );
  for (const [[name, cell], row] of rows.map((r, i) => [r, variables[i]!] as const)) {
    if ("value" in row.default) assert.ok(cell === `\`${row.default.value}\`` || cell.startsWith(`\`${row.default.value}\` (`), `${name}: README says ${cell}, the table ${row.default.value}`);
    else assert.equal(cell, row.default.unset, name);
  }
}

test("the README's configuration table lists the node's variables, in order, with their defaults, and nothing else", () => {
  const readme = readFileSync(`${ROOT}README.md`, "utf8");
  assertDocumented(readmeRows(readme, "## Configuration"), CONFIG_VARIABLES);
  const switches = [...Object.values(DEMO_SWITCHES), ...Object.values(BENCH_SWITCHES)];
  assertDocumented(readmeRows(readme, "### Demo and bench switches"), switches);
  const documented = [...readme.matchAll(/^\| `(EBB_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
  assert.equal(documented.length, CONFIG_VARIABLES.length + switches.length, "no EBB_* row outside the two tables");
});

test("EBB_CLUSTER_KEY takes a keyring: up to 4 comma-separated keys, each held to the key rule and named by its place, none twice", () => {
  const [a, b] = [newClusterKey(), newClusterKey()];
  assert.deepEqual(loadConfig({ EBB_CLUSTER_KEY: `${b},${a}` }).clusterKey, [b, a], "the primary first");
  assert.deepEqual(loadConfig({ EBB_CLUSTER_KEY: `${b}, ${a}` }).clusterKey, [b, a], "spaces after commas are allowed");
  const bad = (value: string) => {
    try {
      loadConfig({ EBB_CLUSTER_KEY: value });
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.ok(!error.message.includes(a) && !error.message.includes("passwordpassword"), "no key is echoed");
      return error.message.replace(/^Invalid configuration: EBB_CLUSTER_KEY=\(\d+ characters, not shown\) /, "");
    }
    assert.fail(`${value} was accepted`);
  };
  assert.match(bad(`${a},passwordpassword`), /^key 2 of 2 must encode at least 16 random bytes/);
  assert.equal(bad(`${a},`), "key 2 of 2 is empty");
  assert.equal(bad(`${a},${a}`), "names a key twice");
  assert.equal(bad(Array.from({ length: 5 }, newClusterKey).join(",")), "holds 5 keys; at most 4");
});

test("EBB_CLUSTER_ID defaults to ebb and is a short name", () => {
  assert.equal(loadConfig({}).clusterId, "ebb");
  assert.equal(loadConfig({ EBB_CLUSTER_ID: "prod-eu.1" }).clusterId, "prod-eu.1");
  assert.throws(() => loadConfig({ EBB_CLUSTER_ID: "prod/eu" }), /^ConfigError: Invalid configuration: EBB_CLUSTER_ID="prod\/eu" must be 1-64 letters, digits or _ \. : -$/);
});

test("loopback is 127.0.0.0/8, ::1 and localhost; nothing else", () => {
  for (const host of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"]) assert.ok(isLoopback(host), host);
  for (const host of ["0.0.0.0", "::", "10.0.0.5", "128.0.0.1", "127.0.0.1.example.com", "myhost", "localhost.example.com"]) assert.ok(!isLoopback(host), host);
});

test("off loopback, a node needs TLS or a cluster key, or EBB_INSECURE=1: the message names every way out", () => {
  assert.throws(
    () => loadConfig({ EBB_HOST: "0.0.0.0" }),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.message ===
        'Invalid configuration: EBB_HOST="0.0.0.0" is not loopback, and neither TLS (EBB_TLS_CERT, EBB_TLS_KEY) nor a cluster key (EBB_CLUSTER_KEY, make one with "ebb keygen") is set: anyone who reaches the port could call this node and join its cluster. Set one of them, or EBB_INSECURE=1 if you mean it',
  );
  assert.equal(loadConfig({ EBB_HOST: "0.0.0.0", EBB_INSECURE: "1" }).insecure, true);
  assert.deepEqual(loadConfig({ EBB_HOST: "10.0.0.5", EBB_CLUSTER_KEY: "q9Hn2V0d8mXbR4tLcW7yPz1sKfA6uJeG3oNvIhTgBkE=" }).clusterKey?.length, 1);
  // TLS on is enough too (loadConfig reads the PEM files; the TLS tests start nodes off loopback with real ones).
  assert.doesNotThrow(() => checkExposure({ host: "10.0.0.5", clusterKey: undefined, insecure: false, tls: true }));
  assert.equal(loadConfig({ EBB_HOST: "127.0.0.2" }).host, "127.0.0.2");
  assert.throws(() => loadConfig({ EBB_HOST: "0.0.0.0", EBB_INSECURE: "yes" }), /EBB_INSECURE="yes" must be 0 or 1/);
});
