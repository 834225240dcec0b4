/**
 * Moleculer 0.15 (a dev dependency) as a peer row of `npm run bench:echo`: two brokers on Node, the
 * TCP transporter (UDP discovery off) and the Notepack (msgpack) serializer, everything else left
 * at Moleculer's defaults (no request timeout, no retries, circuit breaker, bulkhead, metrics or
 * tracing; the default validator has no params schema to check). echo.ts runs both sides with
 * `node`, the server pinned to the server core and the client to the client core:
 *   server                                          a `demo` service whose `echo` answers ctx.params;
 *                                                   prints `port <n>` once listening, runs until killed
 *   client <port> <inflight> <seconds> <warmupSeconds> <payloadJSON>
 *                                                   `inflight` loops of `broker.call("demo.echo")`, a
 *                                                   warm-up, then the measured run; prints one line,
 *                                                   {"calls","seconds","p50Ms","p99Ms","cpuSeconds"}, and exits 0
 * Errors go to stderr with exit code 1; a client that runs over its time is killed with exit code 1.
 */
import moleculer from "moleculer";
import process from "node:process";

const { ServiceBroker } = moleculer;

/** CPU this process used so far (user and system), for the bench's count of what other processes used. */
function cpuSeconds() {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}
const [mode, ...args] = process.argv.slice(2);

/** Moleculer's defaults but for these: quiet (warnings go to stderr), Notepack, TCP without UDP. */
function broker(nodeID, transporterOptions) {
  return new ServiceBroker({
    nodeID,
    logger: { type: "Console", options: { level: "warn" } },
    serializer: "Notepack",
    transporter: { type: "TCP", options: { udpDiscovery: false, ...transporterOptions } },
  });
}

function fail(error) {
  console.error(`moleculer.mjs ${mode ?? ""}: ${error?.stack ?? error}`);
  process.exit(1);
}

/** Index ceil(q * n) - 1 of sorted values, as stats.ts's quantile. */
function quantile(sorted, q) {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

async function server() {
  // Port 0: the transporter's TCP server takes a free port (it listens on every interface; it has no host option).
  const node = broker("server", { port: 0 });
  node.createService({ name: "demo", actions: { echo: (ctx) => ctx.params } });
  await node.start();
  console.log(`port ${node.registry.nodes.localNode.port}`);
}

async function client() {
  const [port, inflight, seconds, warmupSeconds] = args.slice(0, 4).map(Number);
  if (!(port > 0) || !(inflight >= 1) || !(seconds > 0) || !(warmupSeconds >= 0) || args.length !== 5) {
    throw new Error("usage: moleculer.mjs client <port> <inflight> <seconds> <warmupSeconds> <payloadJSON>");
  }
  const payload = JSON.parse(args[4]);
  setTimeout(() => fail(new Error(`still running after ${seconds + warmupSeconds + 15} s`)), (seconds + warmupSeconds + 15) * 1000).unref();

  // A node ID of its own per run: a server that knew an earlier "client" keeps sending to that one's
  // port (a known node's HELLO does not update it), and discovery never completes.
  const node = broker(`client-${process.pid}`, { urls: [`127.0.0.1:${port}/server`] });
  await node.start();
  await node.waitForServices("demo", 10_000, 50);

  // As echo.ts's drive(): loops until the deadline, latencies of every call when `record`.
  const drive = async (duration, record) => {
    const latencies = new Float64Array(5_000_000);
    let count = 0;
    const end = performance.now() + duration * 1000;
    const worker = async () => {
      while (performance.now() < end) {
        const started = performance.now();
        await node.call("demo.echo", payload);
        if (record && count < latencies.length) latencies[count] = performance.now() - started;
        count++;
      }
    };
    await Promise.all(Array.from({ length: inflight }, worker));
    return { calls: count, latencies: latencies.subarray(0, Math.min(count, latencies.length)).sort() };
  };
  if (warmupSeconds > 0) await drive(warmupSeconds, false);
  const started = performance.now();
  const { calls, latencies } = await drive(seconds, true);
  const elapsed = (performance.now() - started) / 1000;

  await Promise.race([node.stop().catch((error) => console.error(`moleculer.mjs client: stop: ${error}`)), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
  const line = JSON.stringify({ calls, seconds: elapsed, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), cpuSeconds: cpuSeconds() });
  process.stdout.write(`${line}\n`, () => process.exit(0));
}

if (mode === "server") server().catch(fail);
else if (mode === "client") client().catch(fail);
else fail(new Error("usage: moleculer.mjs server | client <port> <inflight> <seconds> <warmupSeconds> <payloadJSON>"));
