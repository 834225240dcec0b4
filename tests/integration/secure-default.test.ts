import { test } from "node:test";
import assert from "node:assert/strict";
import { httpToken } from "../../src/rpc/auth.ts";
import { RUNNER_NAMES, runCli, sendSignal, startNodeProcess, stopProcess } from "../helpers/process.ts";

const KEY = "q9Hn2V0d8mXbR4tLcW7yPz1sKfA6uJeG3oNvIhTgBkE=";
const NEW = "Zx8Wc3Vb6Nm1Lk4Jh7Gf0Ds2Ap5Oi9Uy_Tr-Ee3Qw";
const OPEN = { EBB_HOST: "0.0.0.0", EBB_RPC_PORT: "0", EBB_HTTP_PORT: "auto" };

for (const runner of RUNNER_NAMES) {
  test(`${runner}: bound to 0.0.0.0 with neither TLS nor a key, the node refuses to start (exit 2) and names every way out`, async () => {
    const refused = await runCli(runner, ["serve"], OPEN);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /EBB_HOST="0\.0\.0\.0" is not loopback, and neither TLS \(EBB_TLS_CERT, EBB_TLS_KEY\) nor a cluster key \(EBB_CLUSTER_KEY, make one with "ebb keygen"\) is set: .* or EBB_INSECURE=1 if you mean it/);
    assert.equal(refused.stdout, "", "nothing was listening");
  });

  test(`${runner}: with EBB_INSECURE=1 it starts off loopback, and EBB_METRICS_ADDR moves /metrics to its own listener`, async () => {
    const node = await startNodeProcess(runner, { ...OPEN, EBB_INSECURE: "1", EBB_METRICS_ADDR: "127.0.0.1:0" });
    try {
      const listening = await node.waitForLine((l) => typeof l.rpc === "string");
      assert.match(String(listening.rpc), /^0\.0\.0\.0:\d+$/);
      assert.match(String(listening.metrics), /^127\.0\.0\.1:\d+$/);
      const metricsUrl = `http://${String(listening.metrics)}`;
      const http = `http://127.0.0.1:${node.httpPort}`;
      await node.waitForLine((l) => l.state === "ready");
      const scraped = await fetch(`${metricsUrl}/metrics`);
      assert.equal(scraped.status, 200);
      assert.match(await scraped.text(), /^ebb_lifecycle_state\{state="ready"\} 1$/m);
      const moved = await fetch(`${http}/metrics`);
      assert.equal(moved.status, 404, "the public HTTP port no longer serves /metrics");
      await moved.body?.cancel();
      for (const base of [metricsUrl, http]) {
        const ready = await fetch(`${base}/readyz`);
        assert.equal(ready.status, 200, `${base}/readyz`);
        await ready.body?.cancel();
      }
      for (const closed of ["/cluster", "/rpc/demo.echo"]) {
        const response = await fetch(`${metricsUrl}${closed}`, { method: closed.startsWith("/rpc") ? "POST" : "GET" });
        assert.equal(response.status, 404, `the metrics listener has no ${closed}`);
        await response.body?.cancel();
      }
      sendSignal(node, "SIGTERM");
      assert.equal(await node.exited, 0);
    } finally {
      await stopProcess(node);
    }
  });

  test(`${runner}: with a cluster key it starts off loopback, and HTTP takes the token "ebb token" prints, not the key`, async () => {
    const env = { EBB_CLUSTER_KEY: `${KEY}`, EBB_CLUSTER_ID: "prod" };
    const [token, missing] = await Promise.all([runCli(runner, ["token"], env), runCli(runner, ["token"])]);
    assert.equal(token.code, 0, token.stderr);
    assert.equal(token.stdout, `${httpToken(KEY, "prod")}\n`);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /EBB_CLUSTER_KEY is not set: "ebb token" derives the token from it/);
    const node = await startNodeProcess(runner, { ...OPEN, ...env });
    try {
      await node.waitForLine((l) => l.state === "ready");
      const call = (bearer: string) =>
        fetch(`http://127.0.0.1:${node.httpPort}/rpc/demo.echo`, { method: "POST", headers: { authorization: `Bearer ${bearer}` }, body: JSON.stringify({ via: "token" }) });
      const withKey = await call(KEY);
      assert.equal(withKey.status, 401, "the raw key is refused");
      await withKey.body?.cancel();
      const withToken = await call(token.stdout.trim());
      assert.equal(withToken.status, 200);
      assert.deepEqual(await withToken.json(), { result: { via: "token" } });
      // The CLI takes a keyring too, its primary unknown to the node, and names a bad one without echoing it.
      const addr = ["--addr", `127.0.0.1:${node.port}`];
      const [viaRing, badRing] = await Promise.all([
        runCli(runner, ["call", "demo.echo", '{"via":"ring"}', ...addr], { EBB_CLUSTER_KEY: `${NEW},${KEY}`, EBB_CLUSTER_ID: "prod" }),
        runCli(runner, ["call", "demo.echo", "{}", ...addr], { EBB_CLUSTER_KEY: `${KEY},passwordpassword` }),
      ]);
      assert.equal(viaRing.code, 0, viaRing.stderr);
      assert.deepEqual(JSON.parse(viaRing.stdout), { via: "ring" });
      assert.equal(badRing.code, 2);
      assert.match(badRing.stderr, /EBB_CLUSTER_KEY=\(\d+ characters, not shown\) key 2 of 2 must encode at least 16 random bytes/);
      assert.ok(!badRing.stderr.includes(KEY));
      sendSignal(node, "SIGTERM");
      assert.equal(await node.exited, 0);
    } finally {
      await stopProcess(node);
    }
  });
}
