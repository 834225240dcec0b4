/**
 * `npm run bench:echo`: ebb's RPC path against a bare msgpack-rpc echo on the same runtime
 * (the ceiling), and against a peer: msgpack5rpc, a msgpack-rpc library from npm, client
 * and server, on node:net.
 *
 * The "ebb over TLS" row is the same node and client with TLS on (certificates from
 * scripts/certs.ts in a temporary directory), to quote the cost of TLS against plain ebb.
 *
 * One client, one server process, one connection, 64 calls in flight, a small
 * payload. Rounds alternate bare and ebb so drift on a shared machine hits both;
 * the table gives the median of the rounds. Writes scripts/bench/results/echo-<runtime>.json.
 *
 * Options (environment): BENCH_ROUNDS (3), BENCH_SECONDS (2 per round), BENCH_WARMUP_SECONDS (0.5), BENCH_INFLIGHT (64).
 */
import { spawn } from "node:child_process";
import { createConnection } from "node:net";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCertificates } from "../certs.ts";
import { withTls } from "../../src/security/tls.ts";
import { demo } from "../../src/demo/demo.ts";
import { Channel } from "../../src/rpc/channel.ts";
import { createClient } from "../../src/rpc/client.ts";
import { detectRuntime } from "../../src/runtime/detect.ts";
import { MessageDecoder } from "../../src/wire/decoder.ts";
import { BatchWriter } from "../../src/rpc/batch-writer.ts";
import { request, Session } from "../../tests/helpers/msgpack5rpc.ts";
import { median, quantile, table } from "./stats.ts";

const runtime = await detectRuntime();
const env = runtime.env();
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(env.BENCH_SECONDS ?? 2);
const WARMUP_SECONDS = Number(env.BENCH_WARMUP_SECONDS ?? 0.5);
const INFLIGHT = Number(env.BENCH_INFLIGHT ?? 64);
const PAYLOAD = { id: 12345, name: "bench", tags: ["a", "b", "c"], ok: true };
const here = decodeURIComponent(new URL(".", import.meta.url).pathname);

type Mode = "bare" | "ebb" | "tls" | "peer";
type Call = () => Promise<unknown>;
interface Round {
  mode: Mode;
  callsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

const certDir = mkdtempSync(join(tmpdir(), "ebb-bench-tls-"));
const certs = makeCertificates(certDir, ["bench"]);
const TLS_ENV = { EBB_TLS_CERT: certs.nodes.bench!.cert, EBB_TLS_KEY: certs.nodes.bench!.key, EBB_TLS_CA: certs.ca };
const tlsRuntime = withTls(runtime, { client: { ca: readFileSync(certs.ca, "utf8") } });

function startServer(mode: Mode): Promise<{ port: number; stop(): void }> {
  const args = runtime.name === "bun" ? [`${here}echo-server.ts`, mode] : ["run", "--allow-net", "--allow-env", "--allow-read", `${here}echo-server.ts`, mode];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...(mode === "tls" && TLS_ENV) } });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (text: string) => {
      out += text;
      const match = /port (\d+)/.exec(out);
      if (match) resolve({ port: Number(match[1]), stop: () => process.kill(child.pid!, "SIGKILL") });
    });
    child.on("exit", (code) => reject(new Error(`${mode} server exited with ${code}`)));
  });
}

async function bareClient(port: number): Promise<{ call: Call; close(): void }> {
  const waiting = new Map<number, () => void>();
  const decoder = new MessageDecoder(8 << 20);
  let writer!: BatchWriter;
  const socket = await runtime.connect({
    host: "127.0.0.1",
    port,
    open(s) {
      writer = new BatchWriter(s);
      return {
        data(chunk) {
          for (const message of decoder.push(chunk) as [number, number][]) {
            const done = waiting.get(message[1]);
            waiting.delete(message[1]);
            done?.();
          }
        },
        close() {},
      };
    },
  });
  socket.setNoDelay(true);
  let next = 0;
  return {
    call: () =>
      new Promise<void>((resolve) => {
        const msgid = next++ >>> 0;
        waiting.set(msgid, resolve);
        writer.send([0, msgid, "demo.echo", [PAYLOAD]]);
      }),
    close: () => socket.close(),
  };
}

async function peerClient(port: number): Promise<{ call: Call; close(): void }> {
  const socket = createConnection({ host: "127.0.0.1", port });
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  socket.setNoDelay(true);
  const session = new Session();
  session.attach(socket, socket);
  return { call: () => request(session, "demo.echo", [PAYLOAD]), close: () => socket.destroy() };
}

async function ebbClient(port: number, tls = false): Promise<{ call: Call; close(): void }> {
  const channel = await Channel.connect(tls ? tlsRuntime : runtime, { host: "127.0.0.1", port });
  const client = createClient(demo, channel);
  return { call: () => client.echo(PAYLOAD), close: () => channel.close() };
}

async function drive(call: Call, seconds: number, record: boolean): Promise<{ calls: number; latencies: Float64Array }> {
  const latencies = new Float64Array(5_000_000);
  let count = 0;
  const end = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const started = performance.now();
      await call();
      if (record && count < latencies.length) latencies[count] = performance.now() - started;
      count++;
    }
  };
  await Promise.all(Array.from({ length: INFLIGHT }, worker));
  return { calls: count, latencies: latencies.subarray(0, Math.min(count, latencies.length)).sort() };
}

async function round(mode: Mode, clientMode: Mode = mode): Promise<Round> {
  const server = await startServer(mode);
  const client =
    clientMode === "bare" ? await bareClient(server.port) : clientMode === "peer" ? await peerClient(server.port) : await ebbClient(server.port, clientMode === "tls");
  try {
    await drive(client.call, WARMUP_SECONDS, false);
    const started = performance.now();
    const { calls, latencies } = await drive(client.call, SECONDS, true);
    const elapsed = (performance.now() - started) / 1000;
    return { mode, callsPerSecond: calls / elapsed, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99) };
  } finally {
    client.close();
    server.stop();
  }
}

const rounds: Round[] = [];
for (let i = 0; i < ROUNDS; i++) {
  for (const mode of ["bare", "ebb", "tls", "peer"] as Mode[]) {
    const r = await round(mode);
    rounds.push(r);
    console.log(`round ${i + 1} ${mode.padEnd(4)} ${Math.round(r.callsPerSecond)} calls/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms`);
  }
}

// BENCH_SPLIT=1 also crosses the pairs, to tell client cost from server cost.
if (env.BENCH_SPLIT === "1") {
  for (const [server, client] of [["ebb", "bare"], ["bare", "ebb"]] as [Mode, Mode][]) {
    const r = await round(server, client);
    console.log(`split ${server} server + ${client} client: ${Math.round(r.callsPerSecond)} calls/s  p50 ${r.p50Ms.toFixed(3)} ms`);
  }
}

const summary = (mode: Mode) => {
  const of = rounds.filter((r) => r.mode === mode);
  return {
    callsPerSecond: median(of.map((r) => r.callsPerSecond)),
    p50Ms: median(of.map((r) => r.p50Ms)),
    p99Ms: median(of.map((r) => r.p99Ms)),
  };
};
const bare = summary("bare");
const ebb = summary("ebb");
const tls = summary("tls");
const peer = summary("peer");
const ratio = ebb.callsPerSecond / bare.callsPerSecond;
const tlsRatio = tls.callsPerSecond / ebb.callsPerSecond;
const peerRatio = ebb.callsPerSecond / peer.callsPerSecond;
const label = `${runtime.name} ${runtime.version}`;

console.log(`\necho, ${label}: 1 connection, ${INFLIGHT} in flight, median of ${ROUNDS} rounds of ${SECONDS} s`);
console.log(
  table(
    ["server", "calls/s", "p50 ms", "p99 ms"],
    [
      ["bare msgpack-rpc echo", Math.round(bare.callsPerSecond), bare.p50Ms.toFixed(3), bare.p99Ms.toFixed(3)],
      ["ebb (demo.echo)", Math.round(ebb.callsPerSecond), ebb.p50Ms.toFixed(3), ebb.p99Ms.toFixed(3)],
      ["ebb over TLS (demo.echo)", Math.round(tls.callsPerSecond), tls.p50Ms.toFixed(3), tls.p99Ms.toFixed(3)],
      ["msgpack5rpc (peer, node:net)", Math.round(peer.callsPerSecond), peer.p50Ms.toFixed(3), peer.p99Ms.toFixed(3)],
    ],
  ),
);
console.log(`ebb / bare: ${(ratio * 100).toFixed(1)}% of the bare echo's calls/s (goal: at least 60%)`);
console.log(`ebb over TLS / ebb: ${(tlsRatio * 100).toFixed(1)}% of plain ebb's calls/s (goal: above 50%)`);
console.log(`ebb / peer: ${peerRatio.toFixed(2)}x msgpack5rpc's calls/s`);

mkdirSync(`${here}results`, { recursive: true });
const file = `${here}results/echo-${runtime.name}.json`;
writeFileSync(
  file,
  JSON.stringify({ bench: "echo", runtime: runtime.name, runtimeVersion: runtime.version, date: new Date().toISOString(), inflight: INFLIGHT, seconds: SECONDS, rounds, bare, ebb, tls, peer, ratio, tlsRatio, peerRatio }, null, 2) + "\n",
);
console.log(`wrote ${file}`);
rmSync(certDir, { recursive: true, force: true });
runtime.exit(0);
