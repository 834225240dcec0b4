import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { makeCertificates } from "../../scripts/certs.ts";
import { httpsGet } from "../helpers/https.ts";
import { until } from "../helpers/net.ts";
import { FAST_SWIM_ENV, type NodeProcess, ROOT, RUNNER_NAMES, RUNNERS, runCli, sendSignal, spawnCommand, startCommand, startNodeProcess, stopProcess } from "../helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "ebb-tls-process-"));
const certs = makeCertificates(dir, ["bun", "deno", "binary"]);
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

/** EBB_TLS_* as file paths, the way an operator sets them. */
const tlsEnv = (name: string) => ({ EBB_TLS_CERT: certs.nodes[name]!.cert, EBB_TLS_KEY: certs.nodes[name]!.key, EBB_TLS_CA: certs.ca });

/** Deno reads the certificate files only with --allow-read (here, of their directory alone). */
const DENO_TLS_ARGS = ["run", "--allow-net", "--allow-env", `--allow-read=${dir}`, "src/main.ts"];

test("a mixed TLS cluster of Bun, Deno and the binary forms from EBB_TLS_* file paths, serves ebb call on every runtime, refuses plain clients, and drains on SIGTERM", async () => {
  const nodes: NodeProcess[] = [];
  try {
    const bun = await startNodeProcess("bun", { ...FAST_SWIM_ENV, EBB_NODE_ID: "bun", ...tlsEnv("bun") });
    nodes.push(bun);
    const seeds = { EBB_SEEDS: `127.0.0.1:${bun.port}` };
    const joined = Promise.all([bun.waitForLine((l) => l.msg === "member deno join"), bun.waitForLine((l) => l.msg === "member binary join")]);
    const [deno, binary] = await Promise.all([
      startCommand("deno", RUNNERS.deno.command, DENO_TLS_ARGS, { ...FAST_SWIM_ENV, EBB_NODE_ID: "deno", ...tlsEnv("deno"), ...seeds }),
      startNodeProcess("binary", { ...FAST_SWIM_ENV, EBB_NODE_ID: "binary", ...tlsEnv("binary"), ...seeds }),
    ]);
    nodes.push(deno, binary);
    await joined;

    // Each CLI, given the CA inline (Deno's CLI then needs no read permission), calls a node of another runtime.
    const ca = readFileSync(certs.ca, "utf8");
    const targets = { bun: deno, deno: binary, binary: bun };
    for (const runner of RUNNER_NAMES) {
      const result = await runCli(runner, ["call", "demo.echo", '{"over":"tls"}', "--addr", `127.0.0.1:${targets[runner].port}`], { EBB_TLS_CA: ca });
      assert.equal(result.code, 0, `${runner}: ${result.stderr}`);
      assert.deepEqual(JSON.parse(result.stdout), { over: "tls" });
    }
    const members = await runCli("bun", ["members", "--addr", `127.0.0.1:${deno.port}`], { EBB_TLS_CA: ca });
    assert.equal(members.code, 0, members.stderr);
    for (const id of ["bun", "deno", "binary"]) assert.match(members.stdout, new RegExp(`^${id} .*alive`, "m"));

    // Without EBB_TLS_CA the CLI speaks plain msgpack-rpc, which a TLS node does not answer.
    const plain = await runCli("bun", ["call", "demo.echo", "{}", "--addr", `127.0.0.1:${bun.port}`, "--timeout", "2000"]);
    assert.notEqual(plain.code, 0);

    for (const node of nodes) sendSignal(node, "SIGTERM");
    assert.deepEqual(await Promise.all(nodes.map((node) => node.exited)), [0, 0, 0]);
  } finally {
    await Promise.all(nodes.map(stopProcess));
  }
});

test("a node whose EBB_TLS_CERT file is missing exits 2 naming the variable and the file", async () => {
  const result = await runCli("bun", ["serve"], { EBB_TLS_CERT: join(dir, "absent.pem"), EBB_TLS_KEY: certs.nodes.bun!.key, EBB_TLS_CA: certs.ca });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /EBB_TLS_CERT=".*absent\.pem" names a file that cannot be read \(no such file\)/);
});

test("mutual TLS across runtimes: a Bun node with EBB_TLS_CLIENT_AUTH=1 serves every runtime's CLI presenting a certificate from the CA and refuses one without; a Deno node exits 3 naming the missing feature", async () => {
  let bun: NodeProcess | undefined;
  try {
    bun = await startNodeProcess("bun", { ...tlsEnv("bun"), EBB_TLS_CLIENT_AUTH: "1" });
    const text = (path: string) => readFileSync(path, "utf8");
    const client = { EBB_TLS_CA: text(certs.ca), EBB_TLS_CERT: text(certs.nodes.deno!.cert), EBB_TLS_KEY: text(certs.nodes.deno!.key) };
    const call = ["call", "demo.echo", '{"mutual":true}', "--addr", `127.0.0.1:${bun.port}`, "--timeout", "2000"];
    for (const runner of RUNNER_NAMES) {
      const served = await runCli(runner, call, client);
      assert.equal(served.code, 0, `${runner} with a certificate: ${served.stderr}`);
      assert.deepEqual(JSON.parse(served.stdout), { mutual: true });
      const refused = await runCli(runner, call, { EBB_TLS_CA: client.EBB_TLS_CA });
      assert.notEqual(refused.code, 0, `${runner} without a certificate is refused`);
    }
    sendSignal(bun, "SIGTERM");
    assert.equal(await bun.exited, 0);
  } finally {
    await stopProcess(bun);
  }

  const deno = spawnCommand("deno", RUNNERS.deno.command, DENO_TLS_ARGS, { EBB_RPC_PORT: "0", EBB_HTTP_PORT: "0", ...tlsEnv("deno"), EBB_TLS_CLIENT_AUTH: "1" });
  try {
    assert.equal(await deno.exited, 3);
    assert.ok(deno.lines.some((line) => /Deno cannot request client certificates .*denoland\/deno#26825/.test(String(line.msg))), JSON.stringify(deno.lines));
  } finally {
    await stopProcess(deno);
  }
});

const renewed = makeCertificates(join(dir, "renewed"), ["node"]);

for (const runner of RUNNER_NAMES) {
  test(`${runner}: SIGHUP reloads the certificate files: new RPC and HTTPS connections get the new certificate, a broken file keeps the current one`, async () => {
    // The node's own copies of the files, rewritten in place as an operator (or cert-manager) would.
    const own = join(dir, `sighup-${runner}`);
    mkdirSync(own, { recursive: true });
    const files = { EBB_TLS_CERT: join(own, "node.pem"), EBB_TLS_KEY: join(own, "node.key"), EBB_TLS_CA: join(own, "ca.pem") };
    copyFileSync(certs.nodes.bun!.cert, files.EBB_TLS_CERT);
    copyFileSync(certs.nodes.bun!.key, files.EBB_TLS_KEY);
    copyFileSync(certs.ca, files.EBB_TLS_CA);
    const env = { EBB_NODE_ID: `hup-${runner}`, ...files };
    const node = runner === "deno"
      ? await startCommand("deno", RUNNERS.deno.command, ["run", "--allow-net", "--allow-env", `--allow-read=${own}`, "src/main.ts"], env)
      : await startNodeProcess(runner, env);
    try {
      const call = ["call", "demo.echo", '{"n":1}', "--addr", `127.0.0.1:${node.port}`, "--timeout", "3000"];
      const oldCa = { EBB_TLS_CA: readFileSync(certs.ca, "utf8") };
      const newCa = { EBB_TLS_CA: readFileSync(renewed.ca, "utf8") };
      assert.equal((await runCli("bun", call, oldCa)).code, 0);
      const healthz = async (ca: string) => {
        const answer = await httpsGet(node.httpPort!, "/healthz", ca);
        return answer instanceof Error ? answer.message : answer.status;
      };
      assert.equal(await healthz(oldCa.EBB_TLS_CA), 200);

      copyFileSync(renewed.nodes.node!.cert, files.EBB_TLS_CERT);
      copyFileSync(renewed.nodes.node!.key, files.EBB_TLS_KEY);
      copyFileSync(renewed.ca, files.EBB_TLS_CA);
      sendSignal(node, "SIGHUP");
      await node.waitForLine((line) => line.msg === "TLS reloaded: new connections use the new certificate and CA");
      const served = await runCli("bun", call, newCa);
      assert.equal(served.code, 0, served.stderr);
      assert.notEqual((await runCli("bun", call, oldCa)).code, 0, "the old CA no longer verifies new connections");
      assert.equal(await healthz(newCa.EBB_TLS_CA), 200, "HTTPS presents the new certificate");
      assert.match(String(await healthz(oldCa.EBB_TLS_CA)), /certificate|self.signed|unable to verify/i, "HTTPS no longer presents the old one");

      writeFileSync(files.EBB_TLS_CERT, "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n");
      sendSignal(node, "SIGHUP");
      const refused = await node.waitForLine((line) => String(line.msg).startsWith("TLS not reloaded"));
      assert.match(String(refused.msg), /EBB_TLS_CERT=".*node\.pem" certificate 1 in ".*node\.pem" does not parse/);
      assert.equal((await runCli("bun", call, newCa)).code, 0, "still serving with the renewed certificate");
      assert.equal(await healthz(newCa.EBB_TLS_CA), 200, "HTTPS too");
      sendSignal(node, "SIGTERM");
      assert.equal(await node.exited, 0);
    } finally {
      await stopProcess(node);
    }
  });
}

/** A shell line of the README: leading VAR=value words, then the command and its arguments (comments dropped, single quotes kept whole). */
function shellLine(line: string): { env: Record<string, string>; argv: string[] } {
  const words = line.replace(/\s+#.*$/, "").match(/'[^']*'|\S+/g)!.map((word) => word.replace(/^'(.*)'$/, "$1"));
  const env: Record<string, string> = {};
  while (/^[A-Z_]+=/.test(words[0]!)) {
    const [name, ...value] = words.shift()!.split("=");
    env[name!] = value.join("=");
  }
  return { env, argv: words };
}

test("the README's TLS commands work as shown: make certificates, serve with them, call with the CA", async () => {
  const readme = readFileSync(`${ROOT}README.md`, "utf8");
  const section = readme.slice(readme.indexOf("Certificates for a test cluster"));
  const block = section.slice(section.indexOf("```sh\n") + 6, section.indexOf("\n```", section.indexOf("```sh\n")));
  const [make, serve, call] = block.split("\n").map(shellLine);
  const work = join(dir, "readme");
  mkdirSync(work, { recursive: true });
  const here = (value: string) => value.replace(/^\.\/certs/, join(work, "certs"));
  // bun scripts/certs.ts ./certs n1 n2
  assert.deepEqual(make!.argv.slice(0, 2), ["bun", "scripts/certs.ts"]);
  execFileSync(RUNNERS.bun.command, [`${ROOT}scripts/certs.ts`, ...make!.argv.slice(2).map(here)], { stdio: "ignore" });
  // EBB_TLS_*=./certs/... ebb serve
  assert.deepEqual(serve!.argv, ["ebb", "serve"]);
  const node = await startNodeProcess("bun", Object.fromEntries(Object.entries(serve!.env).map(([name, value]) => [name, here(value)])), ["serve"]);
  try {
    // EBB_TLS_CA=./certs/ca.pem ebb call demo.echo '{"hello":"tls"}'
    assert.equal(call!.argv[0], "ebb");
    const env = Object.fromEntries(Object.entries(call!.env).map(([name, value]) => [name, here(value)]));
    const result = await runCli("bun", [...call!.argv.slice(1), "--addr", `127.0.0.1:${node.port}`], env);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), { hello: "tls" });
  } finally {
    await stopProcess(node);
  }
});

// A peer that opens TCP to a TLS node and never finishes the handshake holds a descriptor until the idle timeout
// and the 1 s linger give it up. Deno's TlsConn waits for the handshake before it closes (denoland/deno#14547),
// so a Deno node keeps such descriptors until the peer goes: README "Limits and hostile input" says so.
for (const runner of ["bun", "binary"] as const) {
  test(`${runner}: 50 connections that never finish the TLS handshake are closed after the idle timeout and the linger, their descriptors released`, async () => {
    const sockets: Socket[] = [];
    let proc: NodeProcess | undefined;
    try {
      proc = await startNodeProcess(runner, { ...tlsEnv(runner), EBB_IDLE_TIMEOUT_MS: "300" });
      const descriptors = () => readdirSync(`/proc/${proc!.child.pid}/fd`).length;
      const before = descriptors();
      let closed = 0;
      for (let i = 0; i < 50; i++) {
        const socket = connect(proc.port, "127.0.0.1");
        socket.on("error", () => {});
        socket.on("close", () => closed++);
        sockets.push(socket);
      }
      await until(() => descriptors() >= before + 50, "the node holds the 50 connections");
      const held = Date.now();
      await until(() => closed === 50, "the node closed all 50", 10_000);
      await until(() => descriptors() <= before, "the node released their descriptors", 5_000);
      console.log(`${runner}: 50 unfinished TLS handshakes released ${Date.now() - held} ms after they were held (EBB_IDLE_TIMEOUT_MS=300, linger 1 s)`);
    } finally {
      for (const socket of sockets) socket.destroy();
      await stopProcess(proc);
    }
  });
}
