/**
 * `npm run bench:echo`: ebb's RPC path against a bare msgpack-rpc echo on the same runtime (the
 * ceiling), and against peers: msgpack5rpc (a msgpack-rpc library, client and server on node:net)
 * and Moleculer 0.15 (two brokers on Node with the TCP transporter and Notepack, see moleculer.mjs).
 *
 * Shapes, each in every round, its stacks alternating so drift on a shared machine hits all:
 *   pipelined     1 connection, 64 calls in flight, `{a: 1, b: "hello"}`: every stack, TLS too
 *   latency       1 connection, 1 call in flight: p50 and p99 are the figures
 *   connections   64 connections, 1 call in flight on each: the per-connection cost
 *   1kb, 64kb     1 connection, 64 in flight, a payload carrying a 1 KiB or 64 KiB string
 * then, once per stack, idle memory: the server's resident memory per connection with 10,000
 * connections open and silent (its default EBB_MAX_CONNECTIONS).
 *
 * Where `taskset` exists, this process (every client but Moleculer's, which is its own Node
 * process) runs on core 0 and each server on core 1 (cpu.ts). Each round prints the CPU that
 * other processes used meanwhile, in cores; rounds above BENCH_MAX_OTHER are left out of the
 * medians while a cleaner round of the same row exists. Writes scripts/bench/results/echo-<runtime>.json;
 * echo-table.ts turns both runtimes' files into the README's table.
 *
 * Options (environment): BENCH_ROUNDS (3), BENCH_SECONDS (2 per round), BENCH_WARMUP_SECONDS (0.5),
 * BENCH_SHAPES (all: a comma list of the names above and `memory`), BENCH_MAX_OTHER (0.25 cores),
 * BENCH_IDLE_CONNECTIONS (10000).
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { makeCertificates } from "../certs.ts";
import { withTls } from "../../src/security/tls.ts";
import { demo } from "../../src/demo/demo.ts";
import { Channel } from "../../src/rpc/channel.ts";
import { createClient } from "../../src/rpc/client.ts";
import { detectRuntime } from "../../src/runtime/detect.ts";
import type { Socket } from "../../src/runtime/types.ts";
import { MessageDecoder } from "../../src/wire/decoder.ts";
import { BatchWriter } from "../../src/rpc/batch-writer.ts";
import { request, Session } from "../../tests/helpers/msgpack5rpc.ts";
import { canPin, CLIENT_CORE, CpuMeter, pinned, pinSelf, residentBytes } from "./cpu.ts";
import { median, quantile, table } from "./stats.ts";

const runtime = await detectRuntime();
const env = runtime.env();
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(env.BENCH_SECONDS ?? 2);
const WARMUP_SECONDS = Number(env.BENCH_WARMUP_SECONDS ?? 0.5);
const MAX_OTHER = Number(env.BENCH_MAX_OTHER ?? 0.25);
const IDLE_CONNECTIONS = Number(env.BENCH_IDLE_CONNECTIONS ?? 10_000);
const here = decodeURIComponent(new URL(".", import.meta.url).pathname);

type Stack = "bare" | "ebb" | "tls" | "peer" | "moleculer";
const STACK_NAMES: Record<Stack, string> = {
  bare: "bare msgpack-rpc echo",
  ebb: "ebb (typed client, demo.echo)",
  tls: "ebb over TLS",
  peer: "msgpack5rpc (node:net)",
  moleculer: "Moleculer 0.15 (Node, TCP)",
};

interface Shape {
  name: string;
  title: string;
  connections: number;
  /** Calls in flight on each connection. */
  inflight: number;
  payload: unknown;
  stacks: Stack[];
}

const small = { a: 1, b: "hello" };
const SHAPES: Shape[] = [
  { name: "pipelined", title: "1 connection, 64 in flight", connections: 1, inflight: 64, payload: small, stacks: ["bare", "ebb", "tls", "peer", "moleculer"] },
  { name: "latency", title: "1 in flight", connections: 1, inflight: 1, payload: small, stacks: ["bare", "ebb", "moleculer"] },
  { name: "connections", title: "64 connections x 1 in flight", connections: 64, inflight: 1, payload: small, stacks: ["bare", "ebb"] },
  { name: "1kb", title: "1 KiB payload, 64 in flight", connections: 1, inflight: 64, payload: { a: 1, b: "x".repeat(1024) }, stacks: ["bare", "ebb"] },
  { name: "64kb", title: "64 KiB payload, 64 in flight", connections: 1, inflight: 64, payload: { a: 1, b: "x".repeat(64 * 1024) }, stacks: ["bare", "ebb"] },
];
const chosen = env.BENCH_SHAPES?.split(",").map((s) => s.trim());
const shapes = SHAPES.filter((shape) => !chosen || chosen.includes(shape.name));
const measureMemory = !chosen || chosen.includes("memory");

type Call = () => Promise<unknown>;
interface Client {
  calls: Call[];
  close(): void;
}
interface Round {
  round: number;
  shape: string;
  stack: Stack;
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU other processes used meanwhile, in cores. */
  otherCores: number | undefined;
}
interface Server {
  port: number;
  pid: number;
  stop(): void;
}

const certDir = mkdtempSync(join(tmpdir(), "ebb-bench-tls-"));
const certs = makeCertificates(certDir, ["bench"]);
const TLS_ENV = { EBB_TLS_CERT: certs.nodes.bench!.cert, EBB_TLS_KEY: certs.nodes.bench!.key, EBB_TLS_CA: certs.ca };
const tlsRuntime = withTls(runtime, { client: { ca: readFileSync(certs.ca, "utf8") } });

/** Starts a server process on the server core; resolves once it prints `port <n>`. */
function startServer(stack: Stack): Promise<Server> {
  const [command, args] =
    stack === "moleculer"
      ? pinned("node", [`${here}moleculer.mjs`, "server"])
      : pinned(process.execPath, runtime.name === "bun" ? [`${here}echo-server.ts`, stack] : ["run", "--allow-net", "--allow-env", "--allow-read", `${here}echo-server.ts`, stack]);
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...(stack === "tls" && TLS_ENV) } });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (text: string) => {
      out += text;
      const match = /port (\d+)/.exec(out);
      if (match) resolve({ port: Number(match[1]), pid: child.pid!, stop: () => process.kill(child.pid!, "SIGKILL") });
    });
    child.on("exit", (code) => reject(new Error(`${stack} server exited with ${code}`)));
  });
}

/**
 * A msgpack-rpc client with nothing but the runtime socket, decoder and batching: the ceiling's client.
 * Each call resolves with its result, as any RPC client's must (ebb's, msgpack5rpc's, Moleculer's).
 */
async function bareConnection(port: number, payload: unknown): Promise<{ call: Call; socket: Socket }> {
  const waiting = new Map<number, (result: unknown) => void>();
  const decoder = new MessageDecoder(8 << 20);
  let writer!: BatchWriter;
  const socket = await runtime.connect({
    host: "127.0.0.1",
    port,
    open(s) {
      writer = new BatchWriter(s);
      return {
        data(chunk) {
          for (const message of decoder.push(chunk) as [number, number, unknown, unknown][]) {
            const done = waiting.get(message[1]);
            waiting.delete(message[1]);
            done?.(message[3]);
          }
        },
        close() {},
      };
    },
  });
  socket.setNoDelay(true);
  let next = 0;
  const call = () =>
    new Promise<unknown>((resolve) => {
      const msgid = next++ >>> 0;
      waiting.set(msgid, resolve);
      writer.send([0, msgid, "demo.echo", [payload]]);
    });
  return { call, socket };
}

async function connectClients(stack: Stack, port: number, shape: Shape): Promise<Client> {
  const calls: Call[] = [];
  const closers: (() => void)[] = [];
  for (let i = 0; i < shape.connections; i++) {
    if (stack === "bare") {
      const { call, socket } = await bareConnection(port, shape.payload);
      calls.push(call);
      closers.push(() => socket.close());
    } else if (stack === "peer") {
      const socket = createConnection({ host: "127.0.0.1", port });
      await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
      socket.setNoDelay(true);
      const session = new Session();
      session.attach(socket, socket);
      calls.push(() => request(session, "demo.echo", [shape.payload]));
      closers.push(() => socket.destroy());
    } else {
      const channel = await Channel.connect(stack === "tls" ? tlsRuntime : runtime, { host: "127.0.0.1", port });
      const client = createClient(demo, channel);
      calls.push(() => client.echo(shape.payload));
      closers.push(() => channel.close());
    }
  }
  return { calls, close: () => closers.forEach((close) => close()) };
}

/** Runs `inflight` loops on every connection for `seconds`; latencies of every call when `record`. */
async function drive(calls: Call[], inflight: number, seconds: number, record: boolean): Promise<{ calls: number; latencies: Float64Array }> {
  const latencies = new Float64Array(5_000_000);
  let count = 0;
  const end = performance.now() + seconds * 1000;
  const worker = async (call: Call) => {
    while (performance.now() < end) {
      const started = performance.now();
      await call();
      if (record && count < latencies.length) latencies[count] = performance.now() - started;
      count++;
    }
  };
  await Promise.all(calls.flatMap((call) => Array.from({ length: inflight }, () => worker(call))));
  return { calls: count, latencies: latencies.subarray(0, Math.min(count, latencies.length)).sort() };
}

interface MoleculerFigures {
  calls: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  cpuSeconds: number;
}

/** Moleculer's client is a Node process of its own (moleculer.mjs), pinned to the client core; it prints its figures as JSON. */
function moleculerClient(port: number, shape: Shape): Promise<MoleculerFigures> {
  const [command, args] = pinned("node", [`${here}moleculer.mjs`, "client", String(port), String(shape.inflight), String(SECONDS), String(WARMUP_SECONDS), JSON.stringify(shape.payload)], CLIENT_CORE);
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (text: string) => (out += text));
  return new Promise((resolve, reject) =>
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out.trim().split("\n").at(-1)!)) : reject(new Error(`Moleculer client exited with ${code}: ${out}`)))),
  );
}

async function round(index: number, shape: Shape, stack: Stack): Promise<Round> {
  const server = await startServer(stack);
  try {
    if (stack === "moleculer") {
      // The client has exited when its figures arrive: it reports its own CPU.
      const meter = new CpuMeter([server.pid]);
      const r = await moleculerClient(server.port, shape);
      return { round: index, shape: shape.name, stack, callsPerSecond: r.calls / r.seconds, p50Ms: r.p50Ms, p99Ms: r.p99Ms, otherCores: meter.others(r.cpuSeconds) };
    }
    const client = await connectClients(stack, server.port, shape);
    try {
      await drive(client.calls, shape.inflight, WARMUP_SECONDS, false);
      const meter = new CpuMeter([server.pid]);
      const started = performance.now();
      const { calls, latencies } = await drive(client.calls, shape.inflight, SECONDS, true);
      const elapsed = (performance.now() - started) / 1000;
      const otherCores = meter.others();
      return { round: index, shape: shape.name, stack, callsPerSecond: calls / elapsed, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), otherCores };
    } finally {
      client.close();
    }
  } finally {
    server.stop();
  }
}

/**
 * The server's resident memory per idle connection: RSS after one call, then with IDLE_CONNECTIONS open;
 * the last one opened makes a call, whose answer says the server has accepted every one before it.
 */
async function idleMemory(stack: Stack): Promise<number | undefined> {
  const server = await startServer(stack);
  const sockets: Socket[] = [];
  try {
    const first = await bareConnection(server.port, small);
    sockets.push(first.socket);
    await first.call();
    const before = residentBytes(server.pid);
    for (let opened = 1; opened < IDLE_CONNECTIONS - 1; ) {
      const batch = Math.min(200, IDLE_CONNECTIONS - 1 - opened);
      const more = await Promise.all(Array.from({ length: batch }, () => runtime.connect({ host: "127.0.0.1", port: server.port, open: () => ({ data() {}, close() {} }) })));
      sockets.push(...more);
      opened += batch;
    }
    const last = await bareConnection(server.port, small);
    sockets.push(last.socket);
    await last.call();
    const after = residentBytes(server.pid);
    return before === undefined || after === undefined ? undefined : (after - before) / (sockets.length - 1);
  } finally {
    for (const socket of sockets) socket.close();
    server.stop();
  }
}

pinSelf();
console.log(`echo, ${runtime.name} ${runtime.version}: ${canPin ? "client on core 0, servers on core 1 (taskset)" : "not pinned (no taskset or one core)"}`);
const rounds: Round[] = [];
for (let i = 1; i <= ROUNDS; i++) {
  for (const shape of shapes) {
    for (const stack of shape.stacks) {
      const r = await round(i, shape, stack);
      rounds.push(r);
      const other = r.otherCores === undefined ? "" : `  others ${r.otherCores.toFixed(2)} cores${r.otherCores > MAX_OTHER ? " (noisy)" : ""}`;
      console.log(`round ${i} ${shape.name.padEnd(11)} ${stack.padEnd(9)} ${String(Math.round(r.callsPerSecond)).padStart(7)} calls/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms${other}`);
    }
  }
}

interface Summary {
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Rounds in the median, and rounds left out as noisy. */
  rounds: number;
  noisy: number;
}

/** Medians of one row over its quiet rounds (all rounds when none was quiet). */
function summarize(shape: string, stack: Stack): Summary {
  const all = rounds.filter((r) => r.shape === shape && r.stack === stack);
  const quiet = all.filter((r) => r.otherCores === undefined || r.otherCores <= MAX_OTHER);
  const of = quiet.length > 0 ? quiet : all;
  return {
    callsPerSecond: median(of.map((r) => r.callsPerSecond)),
    p50Ms: median(of.map((r) => r.p50Ms)),
    p99Ms: median(of.map((r) => r.p99Ms)),
    rounds: of.length,
    noisy: all.length - of.length,
  };
}

const summary: Record<string, Partial<Record<Stack, Summary>>> = {};
for (const shape of shapes) {
  summary[shape.name] = Object.fromEntries(shape.stacks.map((stack) => [stack, summarize(shape.name, stack)]));
}
const memory: Partial<Record<Stack, number>> = {};
if (measureMemory) {
  for (const stack of ["bare", "ebb"] as Stack[]) {
    const bytes = await idleMemory(stack);
    if (bytes !== undefined) memory[stack] = bytes;
    console.log(`idle memory, ${stack}: ${bytes === undefined ? "unknown (no /proc)" : `${(bytes / 1024).toFixed(1)} KiB per connection`} with ${IDLE_CONNECTIONS} connections open`);
  }
}

const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : a / b);
const rate = (shape: string, stack: Stack) => summary[shape]?.[stack]?.callsPerSecond;
const ratios = {
  /** ebb's calls/s over the bare echo's, per shape. */
  ebbOverBare: Object.fromEntries(shapes.map((shape) => [shape.name, ratio(rate(shape.name, "ebb"), rate(shape.name, "bare"))])),
  ebbOverMoleculer: ratio(rate("pipelined", "ebb"), rate("pipelined", "moleculer")),
  ebbOverPeer: ratio(rate("pipelined", "ebb"), rate("pipelined", "peer")),
  tlsOverEbb: ratio(rate("pipelined", "tls"), rate("pipelined", "ebb")),
};

const percent = (value: number | undefined) => (value === undefined ? "-" : `${(value * 100).toFixed(1)}%`);
console.log(`\necho, ${runtime.name} ${runtime.version}: median of ${ROUNDS} rounds of ${SECONDS} s (rounds with others above ${MAX_OTHER} cores left out)`);
for (const shape of shapes) {
  console.log(`\n${shape.name}: ${shape.title}`);
  const rows = shape.stacks.map((stack) => {
    const s = summary[shape.name]![stack]!;
    return [STACK_NAMES[stack], Math.round(s.callsPerSecond), s.p50Ms.toFixed(3), s.p99Ms.toFixed(3), `${s.rounds}${s.noisy ? ` (${s.noisy} noisy)` : ""}`];
  });
  console.log(table(["stack", "calls/s", "p50 ms", "p99 ms", "rounds"], rows));
  console.log(`ebb / bare: ${percent(ratios.ebbOverBare[shape.name])}`);
}
if (measureMemory) console.log(`\nidle memory per connection: bare ${((memory.bare ?? NaN) / 1024).toFixed(1)} KiB, ebb ${((memory.ebb ?? NaN) / 1024).toFixed(1)} KiB`);
if (summary.pipelined) {
  console.log(`\nebb / bare (pipelined): ${percent(ratios.ebbOverBare.pipelined)} (goal: at least 80%)`);
  console.log(`ebb / Moleculer: ${ratios.ebbOverMoleculer?.toFixed(2)}x (goal: at least 3x)`);
  console.log(`ebb / msgpack5rpc: ${ratios.ebbOverPeer?.toFixed(2)}x`);
  console.log(`ebb over TLS / ebb: ${percent(ratios.tlsOverEbb)} (goal: above 50%)`);
}

mkdirSync(`${here}results`, { recursive: true });
const file = `${here}results/echo-${runtime.name}.json`;
writeFileSync(
  file,
  JSON.stringify(
    {
      bench: "echo",
      runtime: runtime.name,
      runtimeVersion: runtime.version,
      date: new Date().toISOString(),
      pinned: canPin,
      seconds: SECONDS,
      maxOtherCores: MAX_OTHER,
      idleConnections: IDLE_CONNECTIONS,
      shapes: shapes.map(({ name, title, connections, inflight }) => ({ name, title, connections, inflight })),
      summary,
      memoryBytesPerConnection: memory,
      ratios,
      rounds,
    },
    null,
    2,
  ) + "\n",
);
console.log(`wrote ${file}`);
rmSync(certDir, { recursive: true, force: true });
runtime.exit(0);
