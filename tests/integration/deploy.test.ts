import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newClusterKey } from "../../src/config/cluster-key.ts";
import { type Config, ConfigError, loadConfig } from "../../src/config/load.ts";
import { CONFIG_VARIABLES } from "../../src/config/variables.ts";
import { CONNECTION_LINGER_MS, HTTP_STOP_GRACE_MS } from "../../src/lifecycle/shutdown.ts";
import { EXIT_CODES } from "../../src/lifecycle/signals.ts";
import { DEFAULT_SWIM_CONFIG } from "../../src/membership/types.ts";
import { type NodeProcess, ROOT, RUNNERS, startCommand, stopProcess } from "../helpers/process.ts";

// The deployment recipes under scripts/deploy/, as the README shows them: each
// invariant that keeps a deploy loss-free is checked here against the files
// themselves, and systemd-analyze reads the unit where the machine has it.

const DEPLOY = `${ROOT}scripts/deploy/`;
const read = (path: string) => readFileSync(`${DEPLOY}${path}`, "utf8");

/** What a stop takes past the shutdown timeout, at most: leave the membership, let connections close, let HTTP finish. */
const STOP_TAIL_MS = DEFAULT_SWIM_CONFIG.leaveWaitMs + CONNECTION_LINGER_MS + HTTP_STOP_GRACE_MS;
/** What the platform's wait before SIGKILL must leave beyond that: the process's own exit, the platform's timing. */
const STOP_MARGIN_MS = 2_000;
/** Memory a node needs besides the bytes peers can make it buffer (an idle binary holds about 50 MB). */
const BASE_MEMORY_BYTES = 128 * 2 ** 20;

/** The longest a node configured so can take from SIGTERM to exit. */
function stopBudgetMs(config: Config): number {
  return config.drainDelayMs + config.shutdownTimeoutMs + STOP_TAIL_MS;
}

/** Every EBB_* name a recipe sets must be a variable of the node. */
function assertKnownVariables(names: string[], where: string): void {
  const known = new Set<string>(CONFIG_VARIABLES.map((row) => row.name));
  const ebb = names.filter((name) => name.startsWith("EBB_"));
  assert.ok(ebb.length > 0, `${where} sets no EBB_* variable`);
  for (const name of ebb) assert.ok(known.has(name), `${where} sets ${name}, which is not in CONFIG_VARIABLES`);
}

// ---------------------------------------------------------------------------
// The README shows every recipe file as it is.

function deployFiles(dir = ""): string[] {
  return readdirSync(`${DEPLOY}${dir}`).flatMap((name) => (statSync(`${DEPLOY}${dir}${name}`).isDirectory() ? deployFiles(`${dir}${name}/`) : [`${dir}${name}`]));
}

test("the README shows every file of scripts/deploy/, each under a link to it, exactly as the file reads", () => {
  const readme = readFileSync(`${ROOT}README.md`, "utf8");
  const files = deployFiles();
  assert.ok(files.length >= 7, `recipes: ${files.join(", ")}`);
  for (const file of files) {
    const link = readme.indexOf(`](scripts/deploy/${file})`);
    assert.ok(link >= 0, `README links scripts/deploy/${file}`);
    const block = /\n```[a-z]*\n([\s\S]*?)\n```\n/.exec(readme.slice(link));
    assert.ok(block, `a code block follows the link to scripts/deploy/${file}`);
    assert.equal(`${block[1]}\n`, read(file), `README's copy of scripts/deploy/${file} differs from the file`);
  }
});

// ---------------------------------------------------------------------------
// systemd

interface Unit {
  /** Section -> key -> every value given, in order. */
  sections: Map<string, Map<string, string[]>>;
  get(section: string, key: string): string[];
  one(section: string, key: string): string;
}

/** Reads a unit file: `[Section]`, `Key=Value` lines, comments on lines of their own (`#` or `;`). */
function parseUnit(text: string): Unit {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[(\w+)\]$/.exec(line);
    if (section) {
      sections.set(section[1]!, (current = new Map()));
      continue;
    }
    const setting = /^(\w+)=(.*)$/.exec(line);
    assert.ok(setting && current, `line ${index + 1} is neither a section, a setting nor a comment: ${raw}`);
    current.set(setting[1]!, [...(current.get(setting[1]!) ?? []), setting[2]!]);
  }
  const get = (name: string, key: string) => sections.get(name)?.get(key) ?? [];
  return {
    sections,
    get,
    one(name, key) {
      const values = get(name, key);
      assert.equal(values.length, 1, `[${name}] ${key}= appears once`);
      return values[0]!;
    },
  };
}

/** Reads an environment file: `VAR=value` lines and comment lines, nothing systemd would read another way. */
function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [index, raw] of text.split("\n").entries()) {
    if (raw.trim() === "" || raw.startsWith("#")) continue;
    const setting = /^([A-Z_][A-Z0-9_]*)=([^"'\\#]*)$/.exec(raw);
    assert.ok(setting, `line ${index + 1} of the environment file is not VAR=value (no quotes, escapes or comments): ${raw}`);
    env[setting[1]!] = setting[2]!.trim();
  }
  return env;
}

/** systemd's time span as `TimeoutStopSec=` takes it: seconds, or a number with a unit. */
function timeSpanMs(value: string): number {
  const span = /^(\d+)(ms|s|min)?$/.exec(value);
  assert.ok(span, `a time span this test reads: ${value}`);
  return Number(span[1]) * { ms: 1, s: 1_000, min: 60_000 }[span[2] ?? "s"]!;
}

const UNIT_FILE = "systemd/ebb@.service";
const unit = parseUnit(read(UNIT_FILE));
const envFile = parseEnvFile(read("systemd/ebb.env"));
const ENV_PLACEHOLDER = envFile.EBB_CLUSTER_KEY!;

/** The node's environment under the unit, as instance `a`: Environment= lines, then the file (which wins), with a real key. */
function unitEnvironment(key = newClusterKey()): Record<string, string> {
  const env: Record<string, string> = {};
  for (const assignment of unit.get("Service", "Environment")) {
    const [name, ...value] = assignment.replaceAll("%i", "a").split("=");
    env[name!] = value.join("=");
  }
  return { ...env, ...envFile, EBB_CLUSTER_KEY: key };
}

test("systemd: no setting carries a comment at its end, and the environment file's path is a plain path", () => {
  for (const [section, settings] of unit.sections) {
    for (const [key, values] of settings) {
      for (const value of values) assert.doesNotMatch(value, /\s[#;]/, `[${section}] ${key}=${value} has a comment at its end, which systemd takes as part of the value`);
    }
  }
  assert.match(unit.one("Service", "EnvironmentFile"), /^\/etc\/ebb\/%i\.env$/);
});

test("systemd: the unit runs the binary's serve, stops it with SIGTERM to the main process only, and waits longer than its drain", () => {
  assert.equal(unit.one("Service", "ExecStart"), "/usr/local/bin/ebb serve");
  assert.equal(unit.one("Service", "KillSignal"), "SIGTERM");
  assert.equal(unit.one("Service", "KillMode"), "mixed", "SIGTERM to ebb alone; SIGKILL to the group only at the timeout");
  assert.deepEqual(unit.get("Service", "SendSIGKILL"), []);
  const config = loadConfig(unitEnvironment());
  assert.deepEqual(config.warnings, []);
  const waitMs = timeSpanMs(unit.one("Service", "TimeoutStopSec"));
  assert.ok(waitMs >= stopBudgetMs(config) + STOP_MARGIN_MS, `TimeoutStopSec ${waitMs} ms must exceed drain delay ${config.drainDelayMs} + shutdown timeout ${config.shutdownTimeoutMs} + ${STOP_TAIL_MS} + ${STOP_MARGIN_MS} ms`);
  assert.ok(Number(unit.one("Service", "LimitNOFILE")) > config.limits.maxConnections, "descriptors outnumber EBB_MAX_CONNECTIONS, so the node's own cap refuses first");
});

test("systemd: a drain that timed out is a clean stop; bad configuration and a failed startup are not restarted in a loop", () => {
  assert.deepEqual(unit.one("Service", "SuccessExitStatus").split(" ").map(Number), [EXIT_CODES.drainTimedOut]);
  assert.equal(unit.one("Service", "Restart"), "on-failure");
  assert.deepEqual(unit.one("Service", "RestartPreventExitStatus").split(" ").map(Number), [EXIT_CODES.badConfig, EXIT_CODES.startupFailed]);
});

test("systemd: the environment file sets only the node's variables, and its placeholder key is refused until replaced", () => {
  assertKnownVariables(Object.keys(envFile), "ebb.env");
  assert.throws(() => loadConfig(unitEnvironment(ENV_PLACEHOLDER)), (error: unknown) => error instanceof ConfigError && /EBB_CLUSTER_KEY/.test(error.message) && !error.message.includes(ENV_PLACEHOLDER));
  const config = loadConfig(unitEnvironment());
  assert.equal(config.nodeId, "a");
  assert.equal(config.host, "0.0.0.0");
  assert.equal(config.advertise, envFile.EBB_ADVERTISE);
});

const systemdAnalyze = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" });
const NO_SYSTEMD_ANALYZE = systemdAnalyze.status === 0 ? false : "systemd-analyze is not on this machine (Debian: apt-get install systemd); the invariants above are checked without it";
// bun test and deno test show a skip without its reason.
if (NO_SYSTEMD_ANALYZE) console.warn(`deploy.test.ts: skipping systemd-analyze verify: ${NO_SYSTEMD_ANALYZE}`);

test("systemd: systemd-analyze verify reads the unit without a warning", { skip: NO_SYSTEMD_ANALYZE }, () => {
  // verify checks that ExecStart's program exists: the copy names one that does
  // on this machine (this test's own runtime) instead of /usr/local/bin/ebb.
  const dir = mkdtempSync(join(tmpdir(), "ebb-unit-"));
  try {
    const text = read(UNIT_FILE).replace(/^ExecStart=\/usr\/local\/bin\/ebb /m, `ExecStart=${process.execPath} `);
    assert.notEqual(text, read(UNIT_FILE));
    writeFileSync(join(dir, "ebb@a.service"), text);
    const result = spawnSync("systemd-analyze", ["verify", "--man=no", join(dir, "ebb@a.service")], { encoding: "utf8", env: { PATH: process.env.PATH ?? "", SYSTEMD_LOG_COLOR: "0" } });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(`${result.stdout}${result.stderr}`.trim(), "", "no warnings");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("systemd-analyze verify does report a comment at the end of a setting: the check above can fail", { skip: NO_SYSTEMD_ANALYZE }, () => {
  const dir = mkdtempSync(join(tmpdir(), "ebb-unit-"));
  try {
    writeFileSync(join(dir, "bad.service"), `[Service]\nExecStart=${process.execPath}\nKillMode=mixed   # SIGTERM to ebb only\n`);
    const result = spawnSync("systemd-analyze", ["verify", "--man=no", join(dir, "bad.service")], { encoding: "utf8", env: { PATH: process.env.PATH ?? "" } });
    assert.match(result.stderr, /Failed to parse kill mode specification, ignoring: mixed +# SIGTERM/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------
// The container recipe

interface Containerfile {
  /** The last stage's base image. */
  from: string;
  /** Instruction -> its arguments, every occurrence. */
  instructions: [string, string][];
}

function parseContainerfile(text: string): Containerfile {
  const instructions: [string, string][] = [];
  for (const raw of text.split("\n")) {
    if (raw.trim() === "" || raw.startsWith("#")) continue;
    assert.ok(!raw.endsWith("\\"), "no continued lines");
    const [, name, rest] = /^([A-Z]+)\s+(.*)$/.exec(raw) ?? assert.fail(`not an instruction: ${raw}`);
    instructions.push([name!, rest!]);
  }
  const froms = instructions.filter(([name]) => name === "FROM");
  return { from: froms.at(-1)![1], instructions };
}

const containerfile = parseContainerfile(read("Containerfile"));
const instruction = (name: string) => containerfile.instructions.filter(([n]) => n === name).map(([, args]) => args);

/** The path the image runs, from its exec-form ENTRYPOINT. */
const ENTRYPOINT: string[] = JSON.parse(instruction("ENTRYPOINT").at(-1) ?? "null");

test("container: exec-form ENTRYPOINT, so the node is PID 1 and gets SIGTERM; the binary copied to that path; a numeric non-root user", () => {
  assert.ok(Array.isArray(ENTRYPOINT) && ENTRYPOINT.length === 1, `ENTRYPOINT is a JSON array of the binary alone: ${instruction("ENTRYPOINT")}`);
  assert.deepEqual(instruction("CMD"), [], "no CMD: ebb serves without arguments, and a runNode service takes none");
  assert.equal(ENTRYPOINT[0], unit.one("Service", "ExecStart").split(" ")[0], "the image and the systemd unit install the binary at the same path");
  assert.deepEqual(instruction("COPY"), [`--chmod=0555 \${BINARY} ${ENTRYPOINT[0]}`]);
  assert.deepEqual(instruction("ARG"), ["BINARY=ebb"], "the binary of dist/ (the build context) to copy, ebb unless told");
  assert.match(instruction("USER").at(-1)!, /^[1-9]\d*:[1-9]\d*$/);
  // The binary links glibc (bun build --compile): a musl or empty base cannot run it.
  assert.match(containerfile.from, /^gcr\.io\/distroless\/(base|cc)-debian\d+:nonroot$/);
  const config = loadConfig({});
  assert.deepEqual(instruction("EXPOSE"), [`${config.rpcPort} ${config.httpPort}`]);
});

// ---------------------------------------------------------------------------
// Kubernetes

/** A YAML value, as the manifests use them. */
type Yaml = null | boolean | number | string | Yaml[] | { [key: string]: Yaml };
type YamlMap = { [key: string]: Yaml };

interface YamlLine {
  indent: number;
  text: string;
  number: number;
}

/**
 * Reads the YAML the manifests are written in: block mappings and sequences by
 * indentation, one-line flow `{ }` and `[ ]`, plain and quoted scalars,
 * comments, `---` between documents. Anything else (anchors, tags, block
 * scalars, tabs) throws, so a manifest cannot drift into YAML this would read
 * wrongly; where PyYAML is on the machine, a test compares the two readings.
 */
function parseYaml(text: string): Yaml[] {
  return text.split(/^---$/m).flatMap((doc) => {
    const lines: YamlLine[] = [];
    for (const [index, raw] of doc.split("\n").entries()) {
      const body = stripComment(raw, index + 1).trimEnd();
      if (body.trim() === "") continue;
      if (body.includes("\t")) throw new Error(`line ${index + 1}: a tab`);
      lines.push({ indent: body.length - body.trimStart().length, text: body.trimStart(), number: index + 1 });
    }
    if (lines.length === 0) return [];
    const cursor = { at: 0 };
    const value = parseBlock(lines, cursor, lines[0]!.indent);
    if (cursor.at < lines.length) throw new Error(`line ${lines[cursor.at]!.number}: unexpected indentation`);
    return [value];
  });
}

/** A line without its comment: `#` at the start or after a space, outside quotes. */
function stripComment(line: string, number: number): string {
  let quote = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = "";
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === "#" && (i === 0 || line[i - 1] === " ")) {
      return line.slice(0, i);
    }
  }
  if (quote) throw new Error(`line ${number}: an unclosed quote`);
  return line;
}

const isItem = (text: string) => text === "-" || text.startsWith("- ");
const KEY = /^([A-Za-z0-9_][^:\s]*(?:\s[^:\s]+)*|"[^"\\]*"):(?:\s+(.*))?$/;

function parseBlock(lines: YamlLine[], cursor: { at: number }, indent: number): Yaml {
  return isItem(lines[cursor.at]!.text) ? parseSequence(lines, cursor, indent) : parseMapping(lines, cursor, indent);
}

function parseSequence(lines: YamlLine[], cursor: { at: number }, indent: number): Yaml[] {
  const items: Yaml[] = [];
  while (cursor.at < lines.length && lines[cursor.at]!.indent === indent && isItem(lines[cursor.at]!.text)) {
    const line = lines[cursor.at]!;
    const rest = line.text.slice(1).trimStart();
    if (rest === "") {
      cursor.at++;
      const next = lines[cursor.at];
      if (!next || next.indent <= indent) throw new Error(`line ${line.number}: an empty item`);
      items.push(parseBlock(lines, cursor, next.indent));
    } else if (KEY.test(rest) && !rest.startsWith("{")) {
      // "- key: value": a mapping whose keys line up with this first one.
      const column = indent + line.text.length - rest.length;
      lines[cursor.at] = { indent: column, text: rest, number: line.number };
      items.push(parseMapping(lines, cursor, column));
    } else {
      items.push(parseInline(rest, line.number));
      cursor.at++;
    }
  }
  return items;
}

function parseMapping(lines: YamlLine[], cursor: { at: number }, indent: number): YamlMap {
  const map: YamlMap = {};
  while (cursor.at < lines.length && lines[cursor.at]!.indent === indent && !isItem(lines[cursor.at]!.text)) {
    const line = lines[cursor.at]!;
    const [, rawKey, value] = KEY.exec(line.text) ?? [];
    if (rawKey === undefined) throw new Error(`line ${line.number}: not "key: value": ${line.text}`);
    const key = rawKey.startsWith('"') ? (JSON.parse(rawKey) as string) : rawKey;
    if (Object.hasOwn(map, key)) throw new Error(`line ${line.number}: "${key}" twice`);
    cursor.at++;
    if (value !== undefined && value !== "") {
      map[key] = parseInline(value, line.number);
      continue;
    }
    const next = lines[cursor.at];
    if (next && next.indent > indent) map[key] = parseBlock(lines, cursor, next.indent);
    else if (next && next.indent === indent && isItem(next.text)) map[key] = parseSequence(lines, cursor, indent);
    else map[key] = null;
  }
  return map;
}

/** A value on one line: flow collection, quoted or plain scalar. */
function parseInline(text: string, number: number): Yaml {
  let at = 0;
  const fail = (what: string): never => {
    throw new Error(`line ${number}: ${what} at column ${at} of ${text}`);
  };
  const space = () => {
    while (text[at] === " ") at++;
  };
  const quoted = (): string => {
    const quote = text[at]!;
    const start = at++;
    while (at < text.length && text[at] !== quote) at += text[at] === "\\" && quote === '"' ? 2 : 1;
    if (at++ >= text.length) fail("an unclosed quote");
    const body = text.slice(start, at);
    return quote === '"' ? (JSON.parse(body) as string) : body.slice(1, -1).replaceAll("''", "'");
  };
  const plain = (inFlow: boolean): Yaml => {
    const start = at;
    const ends = (i: number) => (inFlow && ",]}".includes(text[i]!)) || (text[i] === ":" && (i + 1 === text.length || " ,]}".includes(text[i + 1]!)));
    while (at < text.length && !ends(at)) at++;
    const raw = text.slice(start, at).trim();
    if (raw === "" || /^[&*!|>%@`]/.test(raw)) fail("a value this reader does not take");
    if (raw === "null" || raw === "~") return null;
    if (raw === "true" || raw === "false") return raw === "true";
    if (/^[-+]?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(raw)) return Number(raw);
    return raw;
  };
  const value = (inFlow: boolean): Yaml => {
    space();
    const c = text[at];
    if (c === '"' || c === "'") return quoted();
    if (c === "[") {
      at++;
      const list: Yaml[] = [];
      space();
      if (text[at] === "]") return at++, list;
      for (;;) {
        list.push(value(true));
        space();
        if (text[at++] === "]") return list;
        if (text[at - 1] !== ",") fail('"," or "]" expected');
      }
    }
    if (c === "{") {
      at++;
      const map: YamlMap = {};
      space();
      if (text[at] === "}") return at++, map;
      for (;;) {
        space();
        const key = text[at] === '"' ? quoted() : String(plain(true));
        space();
        if (text[at++] !== ":") fail('":" expected');
        if (Object.hasOwn(map, key)) fail(`"${key}" twice`);
        map[key] = value(true);
        space();
        if (text[at++] === "}") return map;
        if (text[at - 1] !== ",") fail('"," or "}" expected');
      }
    }
    return plain(inFlow);
  };
  const result = value(false);
  space();
  if (at !== text.length) fail("text after the value");
  return result;
}

test("the YAML reader takes the manifests' subset and refuses what it does not know", () => {
  assert.deepEqual(parseYaml("a: 1\nb:\n  - x\n  - { c: \"d: e\", f: [g, 'h'] } # note\nc:\n- k: v\n  l: 2.5\n---\n# only a comment\n---\nz: ~\n"), [
    { a: 1, b: ["x", { c: "d: e", f: ["g", "h"] }], c: [{ k: "v", l: 2.5 }] },
    { z: null },
  ]);
  assert.deepEqual(parseYaml('image: registry.example.com/ebb:0.1.0\nv: "$(POD_IP):7400"\nn: "5000"\nt: true\n'), [{ image: "registry.example.com/ebb:0.1.0", v: "$(POD_IP):7400", n: "5000", t: true }]);
  for (const bad of ["a: &anchor 1\n", "a: |\n  text\n", "a: 1\n  b: 2\n", "a: 1\na: 2\n", "a: [1, 2\n", "a:\n\tb: 1\n", "a: 'open\n"]) {
    assert.throws(() => parseYaml(bad), Error, JSON.stringify(bad));
  }
});

const MANIFEST_DIR = "kubernetes/";
const manifestFiles = readdirSync(`${DEPLOY}${MANIFEST_DIR}`).filter((name) => name.endsWith(".yaml")).sort();
const documents = manifestFiles.flatMap((file) => parseYaml(read(`${MANIFEST_DIR}${file}`)).map((doc) => ({ file, doc: doc as YamlMap })));

const python = spawnSync("python3", ["-c", "import yaml"], { encoding: "utf8" });
const NO_PYYAML = python.status === 0 ? false : "python3 with PyYAML is not on this machine (Debian: apt-get install python3-yaml)";
if (NO_PYYAML) console.warn(`deploy.test.ts: skipping the comparison with PyYAML: ${NO_PYYAML}`);
test("the YAML reader reads every manifest as PyYAML does", { skip: NO_PYYAML }, () => {
  for (const file of manifestFiles) {
    const result = spawnSync("python3", ["-c", "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))", `${DEPLOY}${MANIFEST_DIR}${file}`], { encoding: "utf8" });
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(parseYaml(read(`${MANIFEST_DIR}${file}`)), JSON.parse(result.stdout), file);
  }
});

/** Follows keys into a manifest, failing with the path when one is missing. */
function at(value: Yaml | undefined, ...path: (string | number)[]): Yaml {
  let here: Yaml | undefined = value;
  for (const [i, key] of path.entries()) {
    here = here !== null && typeof here === "object" ? (here as Record<string | number, Yaml>)[key] : undefined;
    if (here === undefined) assert.fail(`no ${path.slice(0, i + 1).join(".")}`);
  }
  return here!;
}

function manifest(kind: string, name?: string): YamlMap {
  const found = documents.filter(({ doc }) => doc.kind === kind && (name === undefined || at(doc, "metadata", "name") === name));
  assert.equal(found.length, 1, `one ${kind}${name ? ` ${name}` : ""} among ${manifestFiles.join(", ")}`);
  return found[0]!.doc;
}

const deployment = manifest("Deployment");
const podSpec = at(deployment, "spec", "template", "spec") as YamlMap;
const podLabels = at(deployment, "spec", "template", "metadata", "labels") as YamlMap;
const container = at(podSpec, "containers", 0) as YamlMap;
const env = at(container, "env") as YamlMap[];
const containerPort = (name: string) => (at(container, "ports") as YamlMap[]).find((port) => port.name === name)?.containerPort;

/** Sample values for what Kubernetes fills in at run time. */
const FIELD_VALUES: Record<string, string> = { "metadata.namespace": "shop", "metadata.name": "ebb-7c9f5d8b6-x2kqp", "status.podIP": "192.0.2.7" };

/** The container's environment as the kubelet would give it: fields filled in, `$(VAR)` expanded, the secret's key made. */
function containerEnvironment(): Record<string, string> {
  const values: Record<string, string> = {};
  for (const entry of env) {
    const name = String(entry.name);
    if (typeof entry.value === "string") {
      values[name] = entry.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, ref: string) => {
        assert.ok(ref in values, `${name} refers to $(${ref}), which is not defined before it`);
        return values[ref]!;
      });
    } else if (entry.valueFrom !== null && typeof entry.valueFrom === "object" && "fieldRef" in entry.valueFrom) {
      values[name] = FIELD_VALUES[String(at(entry.valueFrom, "fieldRef", "fieldPath"))] ?? assert.fail(`a field this test has no sample for: ${name}`);
    } else {
      assert.equal(at(entry, "valueFrom", "secretKeyRef", "name"), "ebb");
      values[name] = newClusterKey();
    }
  }
  return values;
}

test("kubernetes: every EBB_* variable the pod sets is a variable of the node, and the node accepts the environment", () => {
  assertKnownVariables(env.map((entry) => String(entry.name)), "deployment.yaml");
  const config = loadConfig(containerEnvironment());
  assert.deepEqual(config.warnings, []);
  assert.equal(config.host, "0.0.0.0");
  assert.equal(config.nodeId, FIELD_VALUES["metadata.name"]);
  assert.equal(config.advertise, `${FIELD_VALUES["status.podIP"]}:${containerPort("rpc")}`);
  assert.ok(config.clusterKey, "off loopback with a cluster key from the Secret");
});

test("kubernetes: seeds are the headless peer Service of the pod's own namespace, from the downward API", () => {
  const peers = manifest("Service", "ebb-peers");
  assert.equal(at(peers, "spec", "clusterIP"), "None");
  assert.equal(at(peers, "spec", "publishNotReadyAddresses"), true, "starting pods find each other before any is ready");
  const namespace = env.find((entry) => entry.name === "POD_NAMESPACE");
  assert.equal(at(namespace, "valueFrom", "fieldRef", "fieldPath"), "metadata.namespace");
  const peerPort = (at(peers, "spec", "ports") as YamlMap[]).find((port) => port.name === "rpc");
  assert.equal(at(peerPort, "port"), containerPort("rpc"));
  const seeds = env.find((entry) => entry.name === "EBB_SEEDS")?.value;
  assert.equal(seeds, `ebb-peers.$(POD_NAMESPACE).svc.cluster.local:${containerPort("rpc")}`);
  for (const { file, doc } of documents) assert.equal((doc.metadata as YamlMap).namespace, undefined, `${file} names no namespace: kubectl -n picks it`);
  assert.equal(loadConfig(containerEnvironment()).seeds?.[0], `ebb-peers.${FIELD_VALUES["metadata.namespace"]}.svc.cluster.local:7400`);
});

test("kubernetes: the grace period outlasts drain delay + shutdown timeout + the last steps, and the drain delay outlasts readiness detection", () => {
  const config = loadConfig(containerEnvironment());
  const graceMs = Number(at(podSpec, "terminationGracePeriodSeconds")) * 1000;
  assert.ok(graceMs >= stopBudgetMs(config) + STOP_MARGIN_MS, `terminationGracePeriodSeconds ${graceMs} ms must exceed ${config.drainDelayMs} + ${config.shutdownTimeoutMs} + ${STOP_TAIL_MS} + ${STOP_MARGIN_MS} ms`);
  assert.equal(container.lifecycle, undefined, "a preStop hook would spend the grace period before SIGTERM: EBB_DRAIN_DELAY_MS does its work");
  const readiness = at(container, "readinessProbe") as YamlMap;
  const noticedMs = Number(at(readiness, "periodSeconds")) * Number(at(readiness, "failureThreshold")) * 1000;
  assert.ok(config.drainDelayMs > noticedMs, `EBB_DRAIN_DELAY_MS ${config.drainDelayMs} ms keeps serving past the ${noticedMs} ms readiness takes to fail`);
});

test("kubernetes: readiness on /readyz and liveness on /healthz, on the node's HTTP port", () => {
  const config = loadConfig(containerEnvironment());
  assert.equal(containerPort("http"), config.httpPort);
  assert.equal(containerPort("rpc"), config.rpcPort);
  assert.deepEqual(at(container, "readinessProbe", "httpGet"), { path: "/readyz", port: "http" });
  assert.deepEqual(at(container, "livenessProbe", "httpGet"), { path: "/healthz", port: "http" });
  assert.deepEqual(at(container, "command"), [ENTRYPOINT[0], "serve"], "the binary the Containerfile installs");
});

test("kubernetes: non-root on a read-only root filesystem, no privilege escalation, no capabilities, as the image's user", () => {
  assert.equal(at(podSpec, "securityContext", "runAsNonRoot"), true);
  assert.equal(`${at(podSpec, "securityContext", "runAsUser")}:${at(podSpec, "securityContext", "runAsGroup")}`, instruction("USER").at(-1));
  assert.equal(at(container, "securityContext", "readOnlyRootFilesystem"), true);
  assert.equal(at(container, "securityContext", "allowPrivilegeEscalation"), false);
  assert.deepEqual(at(container, "securityContext", "capabilities", "drop"), ["ALL"]);
});

/** A Kubernetes memory quantity in bytes. */
function bytes(quantity: Yaml): number {
  const [, number, unit] = /^(\d+)(Ki|Mi|Gi)?$/.exec(String(quantity)) ?? assert.fail(`a quantity this test reads: ${quantity}`);
  return Number(number) * 1024 ** ["", "Ki", "Mi", "Gi"].indexOf(unit ?? "");
}

test("kubernetes: resources are requested, and the memory limit holds what peers may make the node buffer", () => {
  const resources = at(container, "resources") as YamlMap;
  assert.ok(at(resources, "requests", "cpu"));
  const config = loadConfig(containerEnvironment());
  assert.ok(bytes(at(resources, "requests", "memory")) <= bytes(at(resources, "limits", "memory")));
  assert.ok(bytes(at(resources, "limits", "memory")) >= config.limits.maxBufferedBytes + BASE_MEMORY_BYTES, `limit ${at(resources, "limits", "memory")} must hold EBB_MAX_BUFFERED_BYTES ${config.limits.maxBufferedBytes} + ${BASE_MEMORY_BYTES}`);
});

test("kubernetes: Services and the PodDisruptionBudget select the pods; rollouts and evictions take one pod at a time", () => {
  const selects = (selector: Yaml) => Object.entries(selector as YamlMap).every(([key, value]) => podLabels[key] === value);
  assert.ok(selects(at(manifest("Service", "ebb-peers"), "spec", "selector")));
  assert.ok(selects(at(manifest("Service", "ebb"), "spec", "selector")));
  assert.ok(selects(at(deployment, "spec", "selector", "matchLabels")));
  const budget = manifest("PodDisruptionBudget");
  assert.ok(selects(at(budget, "spec", "selector", "matchLabels")));
  assert.equal(at(budget, "spec", "maxUnavailable"), 1);
  assert.ok(Number(at(deployment, "spec", "replicas")) > 1);
  assert.deepEqual(at(deployment, "spec", "strategy", "rollingUpdate"), { maxUnavailable: 0, maxSurge: 1 });
  const ready = manifest("Service", "ebb");
  assert.equal((at(ready, "spec") as YamlMap).publishNotReadyAddresses, undefined, "clients of other languages reach ready pods only");
});

// ---------------------------------------------------------------------------
// The pod, for real: the binary as the image and the pod run it.

/**
 * Runs the binary the way the image and the pod's securityContext do, as near as
 * this machine can without a container engine: PID 1 of its own PID namespace,
 * user 65532, on a read-only root that holds nothing but the binary and the
 * glibc it links (distroless has a little more: CA certificates, /etc/passwd).
 */
const POD_SCRIPT = `set -eu
root=$1; binary=$2; shift 2
chmod 0755 "$root"
mkdir -p "$root/proc" "$root/usr/local/bin"
for file in "$@"; do mkdir -p "$root$(dirname "$file")"; touch "$root$file"; mount --bind -o ro "$file" "$root$file"; done
touch "$root/usr/local/bin/ebb"; mount --bind -o ro "$binary" "$root/usr/local/bin/ebb"
mount -t proc proc "$root/proc"
mount --rbind "$root" "$root"; mount -o remount,bind,ro "$root"
exec chroot --userspec="$USER_ID" "$root" /usr/local/bin/ebb serve`;

function podProblem(): string | false {
  if (process.platform !== "linux") return "needs Linux namespaces";
  if (process.getuid?.() !== 0) return "needs root for namespaces, mounts and chroot";
  if (!existsSync(RUNNERS.binary.command)) return `${RUNNERS.binary.command} is missing: run "npm run build" (npm test builds it)`;
  for (const tool of ["unshare", "chroot", "ldd"]) if (spawnSync(tool, ["--version"]).status !== 0) return `${tool} is not on this machine`;
  if (spawnSync("unshare", ["--pid", "--fork", "--mount", "true"]).status !== 0) return "this machine refuses new PID and mount namespaces";
  return false;
}
const NO_POD = podProblem();
if (NO_POD) console.warn(`deploy.test.ts: skipping the pod-like run of the binary: ${NO_POD}`);

test("kubernetes: the binary as PID 1, user 65532, read-only root: ready, then on SIGTERM from outside /readyz 503 and /healthz 200 through the drain delay, exit 0 right after it", { skip: NO_POD }, async () => {
  // The manifest's drain delay, shutdown timeout, cluster key and node id; on loopback, free ports, no seeds (no traffic leaves this machine).
  const { EBB_HOST: _host, EBB_SEEDS: _seeds, EBB_ADVERTISE: _advertise, ...fromManifest } = containerEnvironment();
  const config = loadConfig(containerEnvironment());
  const libraries = [...spawnSync("ldd", [RUNNERS.binary.command], { encoding: "utf8" }).stdout.matchAll(/(\/\S+) \(0x/g)].map((match) => match[1]!);
  assert.ok(libraries.some((path) => path.includes("libc.so")), `the binary links glibc: ${libraries}`);
  const root = mkdtempSync(join(tmpdir(), "ebb-pod-"));
  const args = ["--pid", "--fork", "--mount", "--propagation", "private", "sh", "-c", POD_SCRIPT, "sh", root, RUNNERS.binary.command, ...libraries];
  let pod: NodeProcess | undefined;
  let pid1: number | undefined;
  try {
    pod = await startCommand("pod", "unshare", args, { ...fromManifest, USER_ID: instruction("USER").at(-1)!, EBB_HOST: "127.0.0.1" });
    // unshare --fork waits for its one child, which exec'd chroot, then the binary.
    pid1 = Number(readFileSync(`/proc/${pod.child.pid}/task/${pod.child.pid}/children`, "utf8").trim());
    const status = readFileSync(`/proc/${pid1}/status`, "utf8");
    assert.match(status, /^NSpid:\s+\d+\s+1$/m, "PID 1 in its namespace");
    assert.match(status, /^Uid:\s+65532\s/m);
    await pod.waitForLine((line) => line.state === "ready");
    const get = async (path: string) => (await fetch(`http://127.0.0.1:${pod!.httpPort}${path}`)).status;
    assert.equal(await get("/readyz"), 200);
    const signalled = Date.now();
    process.kill(pid1, "SIGTERM"); // as the kubelet's runtime does, from outside the namespace
    await pod.waitForLine((line) => line.msg === "draining");
    assert.equal(await get("/readyz"), 503, "readiness fails at once, so the endpoints drop the pod");
    assert.equal(await get("/healthz"), 200, "liveness holds through the drain");
    assert.equal(await pod.exited, 0);
    const elapsedMs = Date.now() - signalled;
    assert.ok(elapsedMs >= config.drainDelayMs, `served through the drain delay: ${elapsedMs} ms`);
    // Nothing was in flight: the drain delay, then only the last steps the grace period allows for.
    assert.ok(elapsedMs < config.drainDelayMs + STOP_TAIL_MS + STOP_MARGIN_MS, `exited ${elapsedMs} ms after SIGTERM`);
    assert.doesNotMatch(pod.stderr(), /read-only|EROFS|permission denied/i);
  } finally {
    if (pid1 !== undefined && existsSync(`/proc/${pid1}`)) process.kill(pid1, "SIGKILL");
    await stopProcess(pod);
    rmSync(root, { recursive: true, force: true });
  }
});
