import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCertificates } from "../../scripts/certs.ts";
import { createClusterClient } from "../../src/cluster/client.ts";
import { type Config, loadConfig } from "../../src/config/load.ts";
import { Channel } from "../../src/rpc/channel.ts";
import { createClient } from "../../src/rpc/client.ts";
import type { Socket } from "../../src/runtime/types.ts";
import { clientTls, type TlsSettings, withTls } from "../../src/security/tls.ts";
import { httpsGet } from "../helpers/https.ts";
import { connectRaw, memberJoined, rejectsWith, runtime, startTestNode, until } from "../helpers/net.ts";
import { probe, probeHandlers } from "../helpers/services.ts";

const dir = mkdtempSync(join(tmpdir(), "ebb-tls-"));
const ours = makeCertificates(join(dir, "ours"), ["a", "b", "client"]);
const theirs = makeCertificates(join(dir, "theirs"), ["stranger"]);
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

/** A node's TLS settings from EBB_TLS_* file paths, read as the node reads them. */
function tlsOf(files: { cert: string; key: string }, ca = ours.ca, extra: Record<string, string> = {}): TlsSettings {
  const tls = loadConfig({ EBB_TLS_CERT: files.cert, EBB_TLS_KEY: files.key, EBB_TLS_CA: ca, ...extra }).tls;
  assert.ok(tls);
  return tls;
}

const A = tlsOf(ours.nodes.a!);
const B = tlsOf(ours.nodes.b!);
const STRANGER = tlsOf(theirs.nodes.stranger!, theirs.ca);
/** What an ebb client of our cluster runs on: TLS, trusting our CA, presenting the client certificate. */
const ourClient = withTls(runtime, { client: clientTls(tlsOf(ours.nodes.client!)) });

function startTlsNode(tls: TlsSettings, overrides: Partial<Config> = {}) {
  return startTestNode((node) => node.register(probe, probeHandlers), { tls, ...overrides });
}

/** Eight callers in a loop until `stop()`, which resolves with how many calls failed. */
function steadyLoad(call: () => Promise<unknown>) {
  let failed = 0;
  let done = 0;
  let running = true;
  const callers = Array.from({ length: 8 }, async () => {
    while (running) {
      try {
        await call();
        done++;
      } catch {
        failed++;
      }
    }
  });
  return {
    /** Resolves once `count` more calls have succeeded. */
    passed(count: number, what: string) {
      const target = done + count;
      return until(() => done >= target, what);
    },
    async stop() {
      running = false;
      await Promise.all(callers);
      return failed;
    },
  };
}

test("a TLS node serves an ebb client that trusts its CA; one trusting another CA, or dialling a name not in the certificate, is refused with the reason", async () => {
  const node = await startTlsNode(A);
  try {
    const channel = await Channel.connect(ourClient, { host: "127.0.0.1", port: node.port });
    assert.equal(await createClient(probe, channel).add({ a: 2, b: 3 }), 5);
    channel.close();
    const byName = await Channel.connect(withTls(runtime, { client: { ca: A.ca, serverName: "localhost" } }), { host: "127.0.0.1", port: node.port });
    assert.equal(await createClient(probe, byName).add({ a: 1, b: 1 }), 2);
    byName.close();

    const otherCa = withTls(runtime, { client: { ca: STRANGER.ca } });
    await assert.rejects(Channel.connect(otherCa, { host: "127.0.0.1", port: node.port }), /TLS handshake with 127\.0\.0\.1:\d+ failed: .*(certificate|BadSignature|UnknownIssuer)/);
    const wrongName = withTls(runtime, { client: { ca: A.ca, serverName: "db.example" } });
    await assert.rejects(Channel.connect(wrongName, { host: "127.0.0.1", port: node.port }), /TLS handshake with 127\.0\.0\.1:\d+ failed: .*(db\.example|altnames)/);

    // A plain msgpack-rpc client gets no answer: the TLS listener drops what is not a handshake.
    const plain = await Channel.connect(runtime, { host: "127.0.0.1", port: node.port });
    await rejectsWith(createClient(probe, plain).add({ a: 1, b: 1 }));
  } finally {
    await node.close();
  }
});

test("a client that trusts our CA refuses a node whose certificate another CA signed, and such a node never joins the cluster", async () => {
  const a = await startTlsNode(A, { nodeId: "a" });
  const stranger = await startTlsNode(STRANGER, { nodeId: "stranger", seeds: [`127.0.0.1:${a.port}`] });
  try {
    await assert.rejects(Channel.connect(ourClient, { host: "127.0.0.1", port: stranger.port }), /TLS handshake with 127\.0\.0\.1:\d+ failed/);
    // Its join attempts fail their handshakes (a's certificate is not from its CA), so neither learns of the other.
    const failure = await stranger.logs.next((line) => /^membership cannot (reach|send to) a member$/.test(String(line.msg)));
    assert.match(String(failure.error), /TLS handshake with 127\.0\.0\.1:\d+ failed/);
    assert.deepEqual(a.node.members().map((m) => m.id), ["a"]);
    assert.deepEqual(stranger.node.members().map((m) => m.id), ["stranger"]);
  } finally {
    await Promise.all([a.close(), stranger.close()]);
  }
});

test("a two-node TLS cluster gossips to agreement, and one node drains with 0 failed calls from a cluster client", async () => {
  const a = await startTlsNode(A, { nodeId: "a" });
  let b: Awaited<ReturnType<typeof startTlsNode>> | undefined;
  const cluster = createClusterClient({ runtime: ourClient, seeds: [`127.0.0.1:${a.port}`], timeoutMs: 5_000 });
  try {
    b = await startTlsNode(B, { nodeId: "b", seeds: [`127.0.0.1:${a.port}`] });
    await Promise.all([memberJoined(a.node, "b"), memberJoined(b.node, "a")]);
    assert.deepEqual(a.node.members().map((m) => m.id).sort(), ["a", "b"]);
    assert.deepEqual(b.node.members().map((m) => m.id).sort(), ["a", "b"]);

    await cluster.whenAvailable("probe", 2, 10_000);
    const client = cluster.client(probe);
    const load = steadyLoad(() => client.add({ a: 1, b: 1 }));
    await load.passed(50, "50 calls went through both nodes");
    const summary = await b.close();
    await load.passed(50, "50 more calls went to a alone");
    assert.equal(await load.stop(), 0, "no call failed while b drained");
    assert.deepEqual([summary.cancelled, summary.timedOut], [0, false], JSON.stringify(summary));
  } finally {
    cluster.close();
    await Promise.all([a.close(), b?.close()]);
  }
});

test("the HTTP listener speaks HTTPS with the node's certificate: /healthz answers a client that trusts the CA", async () => {
  const node = await startTlsNode(A, { httpPort: 0 });
  try {
    const port = node.node.httpAddress!.port;
    const served = await httpsGet(port, "/healthz", A.ca);
    assert.ok(!(served instanceof Error), String(served));
    assert.equal(served.status, 200, served.body);
    const refused = await httpsGet(port, "/healthz", STRANGER.ca);
    assert.ok(refused instanceof Error, "answered a client that trusts another CA");
    assert.match(refused.message, /certificate|self.signed|unable to verify/i);
  } finally {
    await node.close();
  }
});

/** Runs python3 with `script`; resolves with its standard output, rejects with its standard error. */
function python(script: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("python3", ["-c", script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (out += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (err += text));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`python3 exited ${code}: ${err}`))));
  });
}

// Python's own ssl module and hand-encoded msgpack: [0, 1, "probe.add", [{"a": 1, "b": 2}]].
const PYTHON_CLIENT = `
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
request = bytes([0x94, 0x00, 0x01, 0xa9]) + b"probe.add" + bytes([0x91, 0x82, 0xa1]) + b"a" + bytes([0x01, 0xa1]) + b"b" + bytes([0x02])
with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as raw:
    with context.wrap_socket(raw, server_hostname=sys.argv[3]) as tls:
        tls.sendall(request)
        answer = b""
        while len(answer) < 5:
            chunk = tls.recv(64)
            if not chunk:
                break
            answer += chunk
        print(answer.hex())
`;

test("Python's ssl module, with hand-encoded msgpack-rpc, calls a TLS node and gets the answer", async () => {
  const node = await startTlsNode(A);
  try {
    // [1, 1, nil, 3]
    assert.equal((await python(PYTHON_CLIENT, [ours.ca, String(node.port), "localhost"])).trim(), "940101c003");
    await assert.rejects(python(PYTHON_CLIENT, [theirs.ca, String(node.port), "localhost"]), /CERTIFICATE_VERIFY_FAILED/);
  } finally {
    await node.close();
  }
});

/** A loopback TCP proxy to `port` that records every byte it carries, both ways. */
async function recordingProxy(port: number) {
  const recorded: Uint8Array[] = [];
  const listener = await runtime.listen({
    host: "127.0.0.1",
    port: 0,
    accept(inbound) {
      const early: Uint8Array[] = [];
      let outbound: Socket | undefined;
      void runtime
        .connect({
          host: "127.0.0.1",
          port,
          open: () => ({ data: (chunk) => (recorded.push(chunk), inbound.write(chunk)), end: () => inbound.end(), close: () => inbound.close() }),
        })
        .then((socket) => {
          outbound = socket;
          for (const chunk of early.splice(0)) socket.write(chunk);
        }, () => inbound.close());
      return {
        data: (chunk) => (recorded.push(chunk), outbound ? outbound.write(chunk) : early.push(chunk)),
        end: () => outbound?.end(),
        close: () => outbound?.close(),
      };
    },
  });
  const text = () => new TextDecoder("latin1").decode(Uint8Array.from(recorded.flatMap((chunk) => [...chunk])));
  return { port: listener.port, text, stop: () => listener.stop() };
}

test("capture: the bytes of a call carrying a marker, recorded by a proxy, hold the marker in plain TCP and not under TLS", async () => {
  const MARKER = "ebb-capture-marker-7f3a9c";
  for (const tls of [false, true]) {
    const node = await startTestNode((n) => n.register(probe, probeHandlers), tls ? { tls: A } : {});
    const proxy = await recordingProxy(node.port);
    try {
      const channel = await Channel.connect(tls ? ourClient : runtime, { host: "127.0.0.1", port: proxy.port });
      assert.deepEqual(await createClient(probe, channel).echo({ secret: MARKER }), { secret: MARKER });
      channel.close();
      assert.ok(proxy.text().length > 0, "the proxy carried the call");
      assert.equal(proxy.text().includes(MARKER), !tls, tls ? "TLS hides the marker" : "plain TCP shows it (the control)");
    } finally {
      await proxy.stop();
      await node.close();
    }
  }
});

test("mutual TLS: with EBB_TLS_CLIENT_AUTH=1 Bun requires a client certificate from our CA; Deno refuses to start, naming the missing feature", async () => {
  const mutual = tlsOf(ours.nodes.a!, ours.ca, { EBB_TLS_CLIENT_AUTH: "1" });
  if (runtime.name === "deno") {
    await assert.rejects(startTlsNode(mutual), /Deno cannot request client certificates .*denoland\/deno#26825/);
    return;
  }
  const node = await startTlsNode(mutual);
  try {
    const withCert = await Channel.connect(ourClient, { host: "127.0.0.1", port: node.port });
    assert.equal(await createClient(probe, withCert).add({ a: 1, b: 2 }), 3);
    withCert.close();
    const anonymous = withTls(runtime, { client: { ca: A.ca } });
    const strangerCert = withTls(runtime, { client: { ca: A.ca, cert: STRANGER.cert, key: STRANGER.key } });
    for (const refused of [anonymous, strangerCert]) {
      // The handshake may complete on the client's side before the server's verdict: then the first call fails.
      const outcome = await Channel.connect(refused, { host: "127.0.0.1", port: node.port }).then(
        (channel) => rejectsWith(createClient(probe, channel).add({ a: 1, b: 1 })),
        (error: Error) => error,
      );
      assert.ok(outcome instanceof Error);
    }
  } finally {
    await node.close();
  }
});

test("a TLS cluster client that cannot reach a plain node says why: its last connection error names the TLS handshake", async () => {
  const plain = await startTestNode((node) => node.register(probe, probeHandlers));
  const cluster = createClusterClient({ runtime: ourClient, addresses: [`127.0.0.1:${plain.port}`], timeoutMs: 2_000, candidateWaitMs: 0 });
  try {
    const error = await rejectsWith(cluster.client(probe).add({ a: 1, b: 1 }), "UNAVAILABLE");
    assert.match(error.message, /could not be reached \(tried 127\.0\.0\.1:\d+\); last connection error: Cannot connect to 127\.0\.0\.1:\d+: TLS handshake with 127\.0\.0\.1:\d+ failed/);
  } finally {
    cluster.close();
    await plain.close();
  }
});

test("reloadTls under load: new connections get the new certificate, open ones carry on, and no call fails", async () => {
  const node = await startTlsNode(A);
  // The client trusts both CAs, as during a CA rotation; single-CA clients tell which certificate a new connection gets.
  const both = withTls(runtime, { client: { ca: A.ca + STRANGER.ca } });
  const cluster = createClusterClient({ runtime: both, addresses: [`127.0.0.1:${node.port}`], timeoutMs: 5_000 });
  const open = await Channel.connect(ourClient, { host: "127.0.0.1", port: node.port });
  try {
    const client = cluster.client(probe);
    const load = steadyLoad(() => client.add({ a: 1, b: 1 }));
    await load.passed(50, "50 calls before the reload");
    await node.node.reloadTls(STRANGER);
    await load.passed(50, "50 calls after the reload");
    assert.equal(await load.stop(), 0, "no call failed through the reload");

    assert.equal(await createClient(probe, open).add({ a: 1, b: 1 }), 2, "an open connection carries on with the old certificate");
    await assert.rejects(Channel.connect(ourClient, { host: "127.0.0.1", port: node.port }), /TLS handshake with 127\.0\.0\.1:\d+ failed/);
    const renewed = await Channel.connect(withTls(runtime, { client: { ca: STRANGER.ca } }), { host: "127.0.0.1", port: node.port });
    assert.equal(await createClient(probe, renewed).add({ a: 2, b: 2 }), 4);
    renewed.close();
  } finally {
    open.close();
    cluster.close();
    await node.close();
  }
});

test("reloadTls on a node started without TLS says that takes a restart", async () => {
  const node = await startTestNode(() => {});
  try {
    await assert.rejects(node.node.reloadTls(A), /TLS was off at start: turning it on takes a restart/);
  } finally {
    await node.close();
  }
});

test("half-close under TLS: after the client ends its side, the server still reads to the end and its reply arrives", async () => {
  const tls = withTls(runtime, { server: { cert: A.cert, key: A.key } });
  const listener = await tls.listen({
    host: "127.0.0.1",
    port: 0,
    accept: (socket) => {
      let heard = "";
      return {
        data: (chunk) => void (heard += new TextDecoder().decode(chunk)),
        end: () => (socket.write(new TextEncoder().encode(`heard ${heard}`)), socket.end()),
        close: () => {},
      };
    },
  });
  try {
    let reply = "";
    const { promise: closed, resolve } = Promise.withResolvers<void>();
    const socket = await ourClient.connect({
      host: "127.0.0.1",
      port: listener.port,
      open: () => ({ data: (chunk) => void (reply += new TextDecoder().decode(chunk)), close: () => resolve() }),
    });
    socket.write(new TextEncoder().encode("all of it"));
    socket.end();
    await closed;
    assert.equal(reply, "heard all of it");
  } finally {
    await listener.stop();
  }
});

test("hostile TLS peers: bytes that are no ClientHello are dropped at once, and clients keep being served", async () => {
  const node = await startTlsNode(A);
  const client = withTls(runtime, { client: clientTls(A) });
  const garbage: Awaited<ReturnType<typeof connectRaw>>[] = [];
  try {
    for (let i = 0; i < 10; i++) {
      const raw = await connectRaw(node.port);
      raw.socket.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      garbage.push(raw);
    }
    await Promise.all(garbage.map((raw) => raw.closed));
    const channel = await Channel.connect(client, { host: "127.0.0.1", port: node.port });
    try {
      assert.equal(await createClient(probe, channel).add({ a: 2, b: 2 }), 4);
    } finally {
      channel.close();
    }
  } finally {
    for (const raw of garbage) raw.socket.close();
    await node.close();
  }
});
