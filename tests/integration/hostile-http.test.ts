import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { demo } from "../../src/demo/demo.ts";
import { createClient } from "../../src/rpc/client.ts";
import { decode } from "@msgpack/msgpack";
import { connectChannel, startTestNode } from "../helpers/net.ts";
import { probe, probeHandlers } from "../helpers/services.ts";
import { RUNNERS, type RunnerName, sendSignal, startCommand, startNodeProcess, stopProcess } from "../helpers/process.ts";

/** One HTTP/1.1 response as read off the wire. */
interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A keep-alive HTTP/1.1 connection on a raw socket: requests are written by hand, responses framed by Content-Length. */
interface RawHttp {
  socket: Socket;
  /** Writes one request and resolves with its whole response; rejects if the connection ends (or is reset) first. */
  request(method: string, path: string, body?: string): Promise<RawResponse>;
  /** Resolves when the server has closed the connection. */
  closed: Promise<void>;
}

/** Bounds a wait that must come back promptly: rejects with `what` past `ms`. */
function promptly<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

async function openHttp(port: number): Promise<RawHttp> {
  const socket = connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  let buffered = Buffer.alloc(0);
  let waiting: { resolve: (r: RawResponse) => void; reject: (e: Error) => void } | undefined;
  let ended: Error | undefined;
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  const tryParse = () => {
    if (!waiting) return;
    const headEnd = buffered.indexOf("\r\n\r\n");
    if (headEnd < 0) return;
    const [statusLine, ...lines] = buffered.subarray(0, headEnd).toString("latin1").split("\r\n");
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers["content-length"] ?? 0);
    if (buffered.length < headEnd + 4 + length) return;
    const body = buffered.subarray(headEnd + 4, headEnd + 4 + length).toString("utf8");
    buffered = buffered.subarray(headEnd + 4 + length);
    const { resolve } = waiting;
    waiting = undefined;
    resolve({ status: Number(statusLine!.split(" ")[1]), headers, body });
  };
  const fail = (error: Error) => {
    ended ??= error;
    waiting?.reject(error);
    waiting = undefined;
  };
  socket.on("data", (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    tryParse();
  });
  socket.on("error", (error) => fail(new Error(`Connection reset before a response: ${error.message}`)));
  socket.on("close", () => fail(new Error("Connection closed before a response")));
  return {
    socket,
    closed,
    request(method, path, body = "") {
      if (ended) return Promise.reject(ended);
      const response = new Promise<RawResponse>((resolve, reject) => (waiting = { resolve, reject }));
      const length = Buffer.byteLength(body);
      const head = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n`;
      socket.write(`${head}${body ? `Content-Type: application/json\r\nContent-Length: ${length}\r\n` : ""}\r\n${body}`);
      return promptly(response, 5_000, `${method} ${path}`);
    },
  };
}

const ON_RUNTIMES: RunnerName[] = ["bun", "deno"];
/** The binary is built by `npm test`; run alone, these tests skip it when it is missing. */
const WITH_BINARY: RunnerName[] = existsSync(RUNNERS.binary.command) ? [...ON_RUNTIMES, "binary"] : ON_RUNTIMES;

const BUILTINS = ["$members", "$info", "$ping", "$swim.ping", "$swim.ping-req", "$swim.sync", "$auth", "$cancel", "$watch"];

for (const runner of ON_RUNTIMES) {
  test(`${runner}: POST /rpc/$members, $info, $ping, $swim.* and the rest are answered 404 METHOD_NOT_FOUND without reaching dispatch`, async () => {
    const proc = await startNodeProcess(runner);
    const http = await openHttp(proc.httpPort!);
    try {
      for (const method of BUILTINS) {
        for (const path of [`/rpc/${method}`, `/rpc/%24${method.slice(1)}`]) {
          const response = await http.request("POST", path, "{}");
          assert.equal(response.status, 404, `${path}: ${response.body}`);
          const { error } = JSON.parse(response.body) as { error: { code: string; message: string } };
          assert.equal(error.code, "METHOD_NOT_FOUND");
          assert.match(error.message, /is not served over HTTP/);
        }
      }
      const metrics = await http.request("GET", "/metrics");
      assert.doesNotMatch(metrics.body, /ebb_calls_total\{[^}]*method="\$/, "no $ method reached dispatch");
      // Application methods are still served.
      const echo = await http.request("POST", "/rpc/demo.echo", JSON.stringify("hi"));
      assert.deepEqual(JSON.parse(echo.body), { result: "hi" });
    } finally {
      http.socket.destroy();
      await stopProcess(proc);
    }
  });

  test(`${runner}: a $swim.ping through the gateway carrying gossip with a numeric addr is answered at once and leaves the node alive`, async () => {
    const proc = await startNodeProcess(runner);
    const http = await openHttp(proc.httpPort!);
    try {
      const ping = { t: "ping", from: "attacker", target: proc.lines[0]!.node, u: [{ id: "evil", addr: 5, inc: 1, status: "alive" }] };
      const response = await http.request("POST", "/rpc/$swim.ping", JSON.stringify(ping));
      assert.equal(response.status, 404);
      assert.equal((JSON.parse(response.body) as { error: { code: string } }).error.code, "METHOD_NOT_FOUND");
      const channel = await connectChannel(proc.port);
      assert.equal(await createClient(demo, channel).echo("still here"), "still here");
      channel.close();
      const health = await http.request("GET", "/healthz");
      assert.equal(health.status, 200);
      sendSignal(proc, "SIGTERM");
      assert.equal(await proc.exited, 0);
      assert.doesNotMatch(proc.stderr(), /lastIndexOf|Uncaught/);
    } finally {
      http.socket.destroy();
      await stopProcess(proc);
    }
  });
}

for (const runner of WITH_BINARY) {
  test(`${runner}: a request on an idle keep-alive HTTP connection just after SIGTERM gets a full answer, never a reset; new connections see the drain`, async () => {
    const proc = await startNodeProcess(runner, { EBB_SHUTDOWN_TIMEOUT_MS: "5000" });
    const forEcho = await openHttp(proc.httpPort!);
    const forHealth = await openHttp(proc.httpPort!);
    const opened: RawHttp[] = [forEcho, forHealth];
    const channel = await connectChannel(proc.port);
    try {
      // Both connections served once, then left idle (keep-alive).
      assert.equal((await forEcho.request("POST", "/rpc/demo.echo", JSON.stringify("before"))).status, 200);
      assert.equal((await forHealth.request("GET", "/healthz")).status, 200);
      // A slow call holds the drain open (dispatched before the signal: a $ping behind it comes back first).
      const slow = createClient(demo, channel).sleep({ ms: 1_500 });
      slow.catch(() => undefined); // awaited below, unless an assertion fails first
      await channel.call("$ping", undefined);
      sendSignal(proc, "SIGTERM");
      await proc.waitForLine((line) => line.msg === "draining");

      const baffled = await forEcho.request("POST", "/rpc/demo.echo", JSON.stringify("after"));
      assert.equal(baffled.status, 503);
      const { error } = JSON.parse(baffled.body) as { error: { code: string; processed: boolean } };
      assert.equal(error.code, "SHUTTING_DOWN");
      assert.equal(error.processed, false);
      assert.equal(baffled.headers.connection, "close");
      const health = await forHealth.request("GET", "/healthz");
      assert.equal(health.status, 200);
      assert.equal(health.headers.connection, "close");

      // New connections opened mid-drain: liveness, readiness, metrics.
      for (const [path, status] of [["/healthz", 200], ["/readyz", 503], ["/metrics", 200]] as const) {
        const fresh = await openHttp(proc.httpPort!);
        opened.push(fresh);
        const response = await fresh.request("GET", path);
        assert.equal(response.status, status, `${path} mid-drain`);
        assert.equal(response.headers.connection, "close");
        if (path === "/metrics") {
          const drainSeconds = Number(/^ebb_drain_seconds (\S+)$/m.exec(response.body)?.[1]);
          assert.ok(drainSeconds > 0, `ebb_drain_seconds ${drainSeconds}`);
          assert.match(response.body, /^ebb_lifecycle_state\{state="draining"\} 1$/m);
        }
      }
      const { sleptMs } = await slow;
      assert.ok(sleptMs >= 1_499, `slept ${sleptMs} ms`);
      assert.equal(await proc.exited, 0);
    } finally {
      for (const http of opened) http.socket.destroy();
      channel.close();
      await stopProcess(proc);
    }
  });

  test(`${runner}: a slow gateway call holds the drain open and gets its answer`, async () => {
    const proc = await startNodeProcess(runner, { EBB_SHUTDOWN_TIMEOUT_MS: "5000" });
    const http = await openHttp(proc.httpPort!);
    try {
      const slow = http.request("POST", "/rpc/demo.sleep", JSON.stringify({ ms: 600 }));
      slow.catch(() => undefined); // awaited below, unless an assertion fails first
      // The gateway call is counted in flight before the signal: /metrics says so.
      const probe = await openHttp(proc.httpPort!);
      let inflight = 0;
      while (inflight < 2) {
        const metrics = await probe.request("GET", "/metrics");
        inflight = Number(/^ebb_inflight (\S+)$/m.exec(metrics.body)?.[1]);
      }
      probe.socket.destroy();
      sendSignal(proc, "SIGTERM");
      const response = await slow;
      assert.equal(response.status, 200);
      assert.ok((JSON.parse(response.body) as { result: { sleptMs: number } }).result.sleptMs >= 599);
      assert.equal(await proc.exited, 0);
      const summary = proc.lines.find((line) => typeof line.msg === "string" && line.msg.startsWith("stopped:"));
      assert.equal(summary?.completed, 1);
    } finally {
      http.socket.destroy();
      await stopProcess(proc);
    }
  });
}

/** Opens `count` connections that each send half a request line and then nothing (slowloris). */
async function halfSentRequests(port: number, count: number): Promise<{ sockets: Socket[]; closed: Promise<void>[] }> {
  const sockets: Socket[] = [];
  const closed: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => undefined); // refused or reset under the flood: what matters is the node
    closed.push(new Promise<void>((resolve) => socket.once("close", () => resolve())));
    socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    sockets.push(socket);
  }
  await Promise.all(sockets.map((socket) => new Promise<void>((resolve) => (socket.connecting ? socket.once("connect", resolve).once("close", resolve) : resolve()))));
  return { sockets, closed };
}

for (const runner of WITH_BINARY.filter((name) => name !== "deno")) {
  test(`${runner}: 20 idle keep-alive HTTP connections are closed after EBB_HTTP_IDLE_TIMEOUT_MS while /healthz answers on a new one`, async () => {
    const proc = await startNodeProcess(runner, { EBB_HTTP_IDLE_TIMEOUT_MS: "1000" });
    const idle: RawHttp[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const http = await openHttp(proc.httpPort!);
        idle.push(http);
        assert.equal((await http.request("GET", "/healthz")).status, 200);
      }
      const fresh = await openHttp(proc.httpPort!);
      assert.equal((await fresh.request("GET", "/readyz")).status, 200);
      fresh.socket.destroy();
      // Bun's timer ticks every 4 s; its old default (10 s) would miss this bound.
      await promptly(Promise.all(idle.map((http) => http.closed)), 7_000, "closing the idle connections");
      sendSignal(proc, "SIGTERM");
      assert.equal(await proc.exited, 0);
    } finally {
      for (const http of idle) http.socket.destroy();
      await stopProcess(proc);
    }
  });
}

test("bun: 50 connections that send half a request line are closed by Bun's header timeout while /healthz answers on a new one", async () => {
  const proc = await startNodeProcess("bun");
  const { sockets, closed } = await halfSentRequests(proc.httpPort!, 50);
  try {
    const fresh = await openHttp(proc.httpPort!);
    assert.equal((await fresh.request("GET", "/healthz")).status, 200);
    fresh.socket.destroy();
    // Bun (uWebSockets) gives a request 10 s to arrive in full, whatever the idle timeout; its timer ticks every 4 s.
    await promptly(Promise.all(closed), 15_000, "closing the half-sent requests");
    sendSignal(proc, "SIGTERM");
    assert.equal(await proc.exited, 0);
  } finally {
    for (const socket of sockets) socket.destroy();
    await stopProcess(proc);
  }
});

test("deno: half-sent requests that exhaust the descriptors do not kill the node; HTTP serves again once they go", async () => {
  // Deno.serve has no timeouts, so a slowloris flood holds its descriptors; under a small limit it runs out.
  const { command, args } = RUNNERS.deno;
  const proc = await startCommand("deno", "sh", ["-c", 'ulimit -n 128 && exec "$@"', "sh", command, ...args]);
  const flood = await halfSentRequests(proc.httpPort!, 200);
  try {
    const failed = await proc.waitForLine((line) => typeof line.msg === "string" && line.msg.startsWith("HTTP listener failed"));
    assert.match(JSON.stringify(failed), /Too many open files/);
    for (const socket of flood.sockets) socket.destroy();
    await proc.waitForLine((line) => line.msg === "HTTP listener serving again");
    const fresh = await openHttp(proc.httpPort!);
    assert.equal((await fresh.request("GET", "/healthz")).status, 200);
    fresh.socket.destroy();
    sendSignal(proc, "SIGTERM");
    assert.equal(await proc.exited, 0);
    assert.doesNotMatch(proc.stderr(), /Uncaught/);
  } finally {
    for (const socket of flood.sockets) socket.destroy();
    await stopProcess(proc);
  }
});

test("gateway bodies and answers keep the wire's nesting limit: a 100,000-deep body is refused at once, a too-deep answer is one INTERNAL error", async () => {
  const node = await startTestNode((n) => n.register(probe, probeHandlers), { httpPort: 0 });
  try {
    const url = (method: string) => `http://127.0.0.1:${node.node.httpAddress!.port}/rpc/${method}`;
    const deep = "[".repeat(100_000) + "]".repeat(100_000);
    const refused = await fetch(url("probe.echo"), { method: "POST", body: deep, headers: { "content-type": "application/json" } });
    assert.equal(refused.status, 400);
    const body = (await refused.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, "INVALID_REQUEST");
    assert.match(body.error.message, /Body nests deeper than the limit of 62 levels \(EBB_MAX_DEPTH\)/);
    for (const accept of ["application/json", "application/msgpack"]) {
      const tooDeep = await fetch(url("probe.nest"), { method: "POST", body: JSON.stringify({ levels: 200 }), headers: { "content-type": "application/json", accept } });
      assert.equal(tooDeep.status, 500);
      const raw = new Uint8Array(await tooDeep.arrayBuffer());
      const answer = (accept === "application/json" ? JSON.parse(new TextDecoder().decode(raw)) : decode(raw)) as { error: { code: string; message: string } };
      assert.equal(answer.error.code, "INTERNAL");
      assert.match(answer.error.message, /Result of "probe.nest" cannot be encoded/);
    }
    assert.equal(node.node.stats.inflight, 0);
  } finally {
    await node.close();
  }
});
