import { test } from "node:test";
import assert from "node:assert/strict";
import { createClusterClient } from "../../src/cluster/client.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { newSpanId, newTraceId } from "../../src/rpc/trace.ts";
import { type Hop, hops } from "../fixtures/hops.ts";
import { rejectsWith, runtime } from "../helpers/net.ts";
import { FAST_SWIM_ENV, fixtureCommand, type NodeProcess, startCommand, stopProcess } from "../helpers/process.ts";

// Context through nested calls on real processes (issue 15, item 3): a chain A -> B -> C whose
// handlers pass nothing on by hand; the caller's deadline expires while C holds.

const ENTRY = "tests/fixtures/hops.ts";
type Runner = "bun" | "deno" | "binary";

/** Which runner each hop runs on. */
const CHAINS: Record<string, Record<Hop, Runner>> = {
  bun: { a: "bun", b: "bun", c: "bun" },
  deno: { a: "deno", b: "deno", c: "deno" },
  "a mix of Bun and Deno": { a: "bun", b: "deno", c: "bun" },
  "the compiled binary between Deno nodes": { a: "deno", b: "binary", c: "deno" },
};

const DEADLINE_MS = 1_500;

async function startHop(hop: Hop, runner: Runner, seeds: string[]): Promise<NodeProcess> {
  const { command, args } = fixtureCommand(ENTRY, runner);
  return startCommand(`hop ${hop} on ${runner}`, command, args, { ...FAST_SWIM_ENV, EBB_HOP: hop, EBB_NODE_ID: `hop-${hop}`, EBB_LOG_FORMAT: "json", EBB_SEEDS: seeds.join(",") });
}

/** The count of `ebb_calls_total` for `method` and `code` in a node's /metrics. */
async function callsAnswered(proc: NodeProcess, method: string, code: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${proc.httpPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`ebb_calls_total{method="${method}",code="${code}"}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

for (const [name, chain] of Object.entries(CHAINS)) {
  test(`three hops on ${name}: the caller's deadline expires mid-chain, C's signal aborts, every hop answers DEADLINE_EXCEEDED, one trace id in every log`, async () => {
    const procs: NodeProcess[] = [];
    const cluster = { close() {} } as { close(): void };
    try {
      const c = await startHop("c", chain.c, []);
      procs.push(c);
      const b = await startHop("b", chain.b, [`127.0.0.1:${c.port}`]);
      procs.push(b);
      const a = await startHop("a", chain.a, [`127.0.0.1:${c.port}`]);
      procs.push(a);
      const client = createClusterClient({ runtime, addresses: [`127.0.0.1:${a.port}`], candidateWaitMs: 2_000 });
      cluster.close = () => client.close();
      const api = client.client(hops.a);
      // The chain answers once A's membership knows B and B's knows C: until then A or B says UNAVAILABLE.
      // Its answer shows the caller's header forwarded by hand hop to hop, and A's answer header.
      const limit = Date.now() + 30_000;
      for (;;) {
        let answered: Record<string, string> | undefined;
        const answer = await api.run({}, { timeoutMs: 5_000, headers: { tenant: "acme" }, onHeaders: (h) => (answered = { ...h }) }).catch((error: RpcError) => error);
        if (answer === "abc(acme)") {
          assert.deepEqual(answered, { "hop-a": "hop-a" });
          break;
        }
        assert.ok(answer instanceof RpcError && answer.code === "UNAVAILABLE" && Date.now() < limit, `the chain did not form: ${answer}`);
      }

      const traceId = newTraceId();
      const rootSpan = newSpanId();
      const holding = c.waitForLine((l) => l.msg === "hop c holding" && l.traceId === traceId);
      const aborted = c.waitForLine((l) => l.msg === "hop c signal aborted" && l.traceId === traceId);
      const logged = [a, b, c].map((proc) => proc.waitForLine((l) => l.msg === "hop call" && l.traceId === traceId));
      const sent = Date.now();
      const error = await rejectsWith(api.run({ hold: true }, { timeoutMs: DEADLINE_MS, traceparent: `00-${traceId}-${rootSpan}-01`, requestId: "chain-1" }), "DEADLINE_EXCEEDED");
      const tookMs = Date.now() - sent;
      assert.ok(tookMs >= DEADLINE_MS - 50 && tookMs < DEADLINE_MS + 1_000, `answered after ${tookMs} ms: ${error.message}`);
      await holding;

      // C's handler saw its signal abort, for the deadline.
      assert.equal((await aborted).code, "DEADLINE_EXCEEDED");
      // Every hop's call ended DEADLINE_EXCEEDED, with the caller's trace id, a request id derived from the caller's, a span of its own, and the hop before as parent.
      const [atA, atB, atC] = await Promise.all(logged);
      assert.deepEqual([atA!.requestId, atB!.requestId, atC!.requestId], ["chain-1", "chain-1.1", "chain-1.1.1"]);
      for (const line of [atA!, atB!, atC!]) {
        assert.equal(line.code, "DEADLINE_EXCEEDED", JSON.stringify(line));
        // Each hop was given what was left of the caller's deadline, nothing more.
        assert.ok((line.msLeft as number) <= DEADLINE_MS, JSON.stringify(line));
      }
      assert.equal(atA!.parentSpanId, rootSpan);
      assert.equal(atB!.parentSpanId, atA!.spanId);
      assert.equal(atC!.parentSpanId, atB!.spanId);
      assert.equal(new Set([rootSpan, atA!.spanId, atB!.spanId, atC!.spanId]).size, 4);
      // And every node answered it so: its own metrics count the answer.
      for (const [proc, method] of [[a, "hopA.run"], [b, "hopB.run"], [c, "hopC.run"]] as const) {
        assert.equal(await callsAnswered(proc, method, "DEADLINE_EXCEEDED"), 1, `${method} on ${proc === a ? chain.a : proc === b ? chain.b : chain.c}`);
      }
    } finally {
      cluster.close();
      await Promise.all(procs.map(stopProcess));
    }
  });
}
