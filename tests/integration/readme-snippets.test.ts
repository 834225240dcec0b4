/**
 * Every ```ts block of README.md runs here, as the README prints it, on the runtime running
 * the test, against real nodes, and must exit by itself. A block whose first line names a file
 * (`// greeter.ts`) is written as that file; the others are scripts beside it. Two rewrites
 * only: `./src/` becomes the path from the scratch folder to src/, and the README's ports
 * (7400, 7410, 7420) become the ports the test's nodes were given.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createDemoHandlers, demo } from "../../src/demo/demo.ts";
import { Channel } from "../../src/rpc/channel.ts";
import { createClient } from "../../src/rpc/client.ts";
import type { Implementation, ServerInterceptor, ServiceContract } from "../../src/rpc/contract.ts";
import { type ClientInterceptor, createClusterClient } from "../../src/cluster/client.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { runtime, startTestNode } from "../helpers/net.ts";
import { HOST_RUNNER, type NodeProcess, ROOT, sendSignal, startCommand, stopProcess } from "../helpers/process.ts";

const BUN = `${ROOT}node_modules/.bin/bun`;
const DENO = `${ROOT}node_modules/.bin/deno`;
/** Longest a script snippet may run. */
const RUN_LIMIT_MS = 30_000;
/**
 * Longest a script may take to exit after its last output (each prints once its work is done):
 * past it, something still holds the process (an open client, a timer armed for nothing).
 */
const EXIT_AFTER_OUTPUT_MS = 3_000;

/** One ```ts block of the README. */
interface Snippet {
  /** Line of the README where the block starts, for messages. */
  line: number;
  /** The file it is, from a first line such as `// greeter.ts`; undefined for a script. */
  file: string | undefined;
  code: string;
}

function readmeSnippets(): Snippet[] {
  const readme = readFileSync(`${ROOT}README.md`, "utf8");
  const snippets: Snippet[] = [];
  for (const match of readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)) {
    const code = match[1]!;
    const line = readme.slice(0, match.index).split("\n").length;
    snippets.push({ line, file: /^\/\/ ([\w.-]+\.ts)\n/.exec(code)?.[1], code });
  }
  return snippets;
}

const SNIPPETS = readmeSnippets();

/** What tells each snippet apart; every README snippet must match exactly one. */
const KINDS = {
  tourChannel: (s: Snippet) => s.code.includes("Channel.connect("),
  tourCluster: (s: Snippet) => s.code.includes('whenAvailable("demo", 3)'),
  greeterService: (s: Snippet) => s.file === "greeter.ts",
  greeterClient: (s: Snippet) => !s.file && s.code.includes('from "./greeter.ts"') && s.code.includes("seeds:"),
  inMemory: (s: Snippet) => !s.file && s.code.includes("createMemoryRuntime()"),
  accountsService: (s: Snippet) => s.file === "accounts.ts",
  shopService: (s: Snippet) => s.file === "shop.ts",
  shopClient: (s: Snippet) => !s.file && s.code.includes('from "./shop.ts"'),
  quotesContract: (s: Snippet) => s.file === "quotes.ts",
  interceptors: (s: Snippet) => s.file === "interceptors.ts",
  tracing: (s: Snippet) => s.file === "tracing.ts",
  catalogService: (s: Snippet) => s.file === "catalog.ts",
  catalogClient: (s: Snippet) => !s.file && s.code.includes('from "./catalog.ts"'),
} as const;

function snippet(kind: keyof typeof KINDS): Snippet {
  const found = SNIPPETS.filter(KINDS[kind]);
  assert.equal(found.length, 1, `README snippets of kind ${kind}: ${found.map((s) => `line ${s.line}`).join(", ") || "none"}`);
  return found[0]!;
}

/** A scratch folder two levels below the root (dist/ is ignored by git) holding every named snippet. */
function workspace(ports: Record<number, number> = {}): { dir: string; write(s: Snippet): string; [Symbol.dispose](): void } {
  mkdirSync(`${ROOT}dist`, { recursive: true });
  const dir = mkdtempSync(`${ROOT}dist/readme-snippets-`);
  const write = (s: Snippet) => {
    const code = s.code.replaceAll('"./src/', '"../../src/').replace(/\b(7400|7410|7420)\b/g, (port) => String(ports[Number(port)] ?? port));
    const path = `${dir}/${s.file ?? `snippet-line-${s.line}.ts`}`;
    writeFileSync(path, code);
    return path;
  };
  for (const s of SNIPPETS) if (s.file) write(s);
  return { dir, write, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}

/** How the README runs a file on this runtime (Deno with the README's permissions). */
function command(path: string): { command: string; args: string[] } {
  return HOST_RUNNER === "bun" ? { command: BUN, args: [path] } : { command: DENO, args: ["run", "--allow-net", "--allow-env", path] };
}

/** Runs a script snippet to its end; fails if it exits non-zero, or lingers after its last output. */
function runScript(path: string, limitMs = RUN_LIMIT_MS): Promise<string> {
  const { command: cmd, args } = command(path);
  const child = spawn(cmd, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let lastOutputAt = Date.now();
  child.stdout.setEncoding("utf8").on("data", (text: string) => {
    stdout += text;
    lastOutputAt = Date.now();
  });
  child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${path} did not exit within ${limitMs} ms; stdout: ${stdout}; stderr: ${stderr}`));
    }, limitMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const lingeredMs = Date.now() - lastOutputAt;
      if (code !== 0) reject(new Error(`${path} exited ${code ?? signal}; stdout: ${stdout}; stderr: ${stderr}`));
      else if (lingeredMs > EXIT_AFTER_OUTPUT_MS) reject(new Error(`${path} exited ${lingeredMs} ms after its last output: something kept it alive; stdout: ${stdout}`));
      else resolve(stdout);
    });
  });
}

/** Starts a service snippet the way the README runs it, and waits until its node is ready. */
async function startService(path: string, nodeId: string): Promise<NodeProcess> {
  const { command: cmd, args } = command(path);
  const proc = await startCommand(nodeId, cmd, args, { EBB_NODE_ID: nodeId, EBB_LOG_FORMAT: "json" });
  await proc.waitForLine((line) => line.msg === "state starting -> ready");
  return proc;
}

/** SIGTERM, as an operator stops it: the node drains and exits 0. */
async function drains(proc: NodeProcess): Promise<void> {
  sendSignal(proc, "SIGTERM");
  assert.equal(await proc.exited, 0, proc.stderr());
}

test("every TypeScript snippet of the README is one this file runs", () => {
  assert.ok(SNIPPETS.length > 0, "README.md has ```ts blocks");
  for (const s of SNIPPETS) {
    const kinds = Object.entries(KINDS).filter(([, matches]) => matches(s)).map(([kind]) => kind);
    assert.equal(kinds.length, 1, `the snippet at README line ${s.line} is claimed by ${kinds.join(", ") || "no case"}: give it a case here`);
  }
  for (const kind of Object.keys(KINDS) as (keyof typeof KINDS)[]) snippet(kind);
});

test("every TypeScript snippet of the README type-checks (deno check, with the project's compiler options)", async () => {
  using space = workspace();
  const paths = SNIPPETS.map((s) => space.write(s));
  const child = spawn(DENO, ["check", "--quiet", ...paths], { cwd: ROOT, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (text: string) => (output += text));
  child.stderr.setEncoding("utf8").on("data", (text: string) => (output += text));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  assert.equal(code, 0, output);
});

test("README's own-service greeter.ts is tests/fixtures/greeter.ts, the file the own-service tests run", () => {
  const readme = snippet("greeterService").code.split("\n").slice(1).join("\n").replaceAll('"./src/', '"../../src/');
  const fixture = readFileSync(`${ROOT}tests/fixtures/greeter.ts`, "utf8");
  assert.equal(readme, fixture.slice(fixture.indexOf('import { z } from "zod";')));
});

test("README tour: the typed calls over one connection to each of two nodes print their answers and exit", async () => {
  const a = await startTestNode((node) => node.register(demo, createDemoHandlers()), { nodeId: "a" });
  const b = await startTestNode((node) => node.register(demo, createDemoHandlers()), { nodeId: "b" });
  try {
    using space = workspace({ 7400: a.port, 7410: b.port });
    const stdout = await runScript(space.write(snippet("tourChannel")));
    assert.equal(stdout.match(/hello: "ebb"/g)?.length, 2, stdout);
    assert.equal(stdout.match(/sleptMs: \d+/g)?.length, 2, stdout);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("README tour: the cluster client's 5,000 calls see 0 failures while b restarts, and it exits", async () => {
  let served = 0;
  let reached: (() => void) | undefined;
  /** Demo handlers for b that tell when the snippet's calls have reached it. */
  const countedOnB = (): Implementation<typeof demo> => {
    const handlers = createDemoHandlers();
    return {
      ...handlers,
      sleep: (input, ctx) => {
        if (++served === 200) reached?.();
        return handlers.sleep(input, ctx);
      },
    };
  };
  const a = await startTestNode((node) => node.register(demo, createDemoHandlers()), { nodeId: "a" });
  const seeds = [`127.0.0.1:${a.port}`];
  let b = await startTestNode((node) => node.register(demo, countedOnB()), { nodeId: "b", seeds });
  const c = await startTestNode((node) => node.register(demo, createDemoHandlers()), { nodeId: "c", seeds });
  try {
    using space = workspace({ 7400: a.port });
    const bServing = new Promise<void>((resolve) => (reached = resolve));
    const run = runScript(space.write(snippet("tourCluster")), 60_000);
    await Promise.race([bServing, run]);
    assert.ok(served >= 200, "the snippet's calls reached b before it ended");
    // Restart b, as the README says to: a drain, then a new b joining through a.
    await b.close();
    b = await startTestNode((node) => node.register(demo, createDemoHandlers()), { nodeId: "b", seeds });
    const stdout = await run;
    assert.match(stdout, /failed: 0\b/);
    assert.match(stdout, /calls: 5000\b/);
  } finally {
    await Promise.all([a.close(), b.close(), c.close()]);
  }
});

/**
 * Serves the service snippet `file` as the README runs it, runs the client snippet `client` against
 * it and hands its output lines to `check` (with the service's folder and process), then drains it.
 */
async function serveAndRun(file: string, client: keyof typeof KINDS, check: (lines: string[], service: NodeProcess, dir: string) => void | Promise<void>): Promise<void> {
  using space = workspace();
  let service: NodeProcess | undefined;
  try {
    service = await startService(`${space.dir}/${file}`, file.replace(/\.ts$/, ""));
    using clientSpace = workspace({ 7400: service.port });
    const stdout = await runScript(clientSpace.write(snippet(client)));
    await check(stdout.trim().split("\n"), service, space.dir);
    await drains(service);
  } finally {
    await stopProcess(service);
  }
}

test("README own service: greeter.ts runs through runNode, its client prints the greeting and exits, the node drains on SIGTERM", async () => {
  await serveAndRun("greeter.ts", "greeterClient", (lines) => assert.deepEqual(lines, ["Hello, ebb!"]));
});

test("README own service: the client of shop.ts buys a book, is declined a bike with the error's data parsed, and exits", async () => {
  // shop.ts hosts accounts.ts too, and buys through node.client(accounts): from the node to itself.
  await serveAndRun("shop.ts", "shopClient", (lines) => assert.deepEqual(lines, ["Bought a book: 8500 cents left", "Declined: 250000 cents wanted, 8500 held"]));
});

test("README own service: the test without sockets prints its greeting and exits", async () => {
  using space = workspace();
  const stdout = await runScript(space.write(snippet("inMemory")));
  assert.equal(stdout.trim(), "Hello, test!");
});

test("README per-method policy: quotes.ts as printed, served by a node: price's calls have its 2 s deadline, refresh is tried again after APPLICATION errors, 3 tries in all", async () => {
  using space = workspace();
  const { quotes } = (await import(space.write(snippet("quotesContract")))) as { quotes: ServiceContract };
  let refreshes = 0;
  const handlers = {
    // Slower than the method's 2 s deadline: the node aborts it there.
    price: (_input: unknown, ctx: { signal: AbortSignal }) => new Promise<number>((resolve) => ctx.signal.addEventListener("abort", () => resolve(0))),
    refresh: () => {
      if (++refreshes < 3) throw new RpcError("rate limited upstream", "APPLICATION");
      return null;
    },
  } as unknown as Implementation<typeof quotes>;
  const served = await startTestNode((node) => node.register(quotes, handlers), { nodeId: "quotes" });
  const channel = await Channel.connect(runtime, { host: "127.0.0.1", port: served.port });
  try {
    const api = createClient(quotes, channel) as unknown as Record<"price" | "refresh", (input: unknown) => Promise<unknown>>;
    assert.equal(await api.refresh({ sku: "b1" }), null);
    assert.equal(refreshes, 3);
    const started = performance.now();
    await assert.rejects(api.price({ sku: "b1" }), (error: RpcError) => error.code === "DEADLINE_EXCEEDED");
    const took = performance.now() - started;
    assert.ok(took >= 1_900 && took < 5_000, `DEADLINE_EXCEEDED after ${took.toFixed(0)} ms`);
  } finally {
    channel.close();
    await served.close();
  }
});

test("README interceptors: interceptors.ts as printed, around a real node and its client: slow calls logged, a local caller allowed, each call tagged", async () => {
  using space = workspace();
  const { localWrites, slowCalls, tagged } = (await import(space.write(snippet("interceptors")))) as {
    localWrites: ServerInterceptor;
    slowCalls: (ms: number, log: (line: string) => void) => ServerInterceptor;
    tagged: (prefix: string) => ClientInterceptor;
  };
  const lines: string[] = [];
  const executed: string[] = [];
  const served = await startTestNode((node) => node.register(demo, createDemoHandlers(executed)).use(localWrites).use(slowCalls(40, (line) => lines.push(line))), { nodeId: "intercepted" });
  const cluster = createClusterClient({ addresses: [`127.0.0.1:${served.port}`], runtime, interceptors: [tagged("shop")] });
  try {
    const api = cluster.client(demo);
    await api.sleep({ ms: 60 });
    await api.sleep({ ms: 1 });
    assert.deepEqual(executed, ["shop-0", "shop-1"]);
    assert.equal(lines.length, 1, lines.join("; "));
    assert.match(lines[0]!, /^demo\.sleep took \d+ ms \(request shop-0\)$/);
  } finally {
    cluster.close();
    await served.close();
  }
});

test("README all of it in one service: catalog.ts served by runNode, its client sees the answer header, one trace, $info's timeouts, typed out-of-stock data; no tenant is refused", async () => {
  await serveAndRun("catalog.ts", "catalogClient", async (lines, service, dir) => {
    assert.deepEqual(lines, ["served by catalog", "b1: 200 cents, same trace: true", "catalog.item 2000, catalog.reserve -", "reserved, 0 left", "out of stock: 0 of b1 left"]);
    // The server interceptor: a call without the tenant header runs no handler.
    const { catalog } = (await import(`${dir}/catalog.ts`)) as { catalog: ServiceContract };
    const bare = createClusterClient({ addresses: [`127.0.0.1:${service.port}`], runtime });
    try {
      const api = bare.client(catalog) as unknown as Record<"item", (input: unknown) => Promise<unknown>>;
      await assert.rejects(api.item({ sku: "b1" }), (error: RpcError) => error.code === "UNAUTHENTICATED" && /needs a tenant header/.test(error.message));
    } finally {
      bare.close();
    }
  });
});
