// A seeded fuzzer of hostile peers (issue 10): random mutations of valid msgpack-rpc and
// `$swim.*` messages, in batches, against a real two-node cluster on this test's runtime.
// After each batch: an honest client is served, ebb_inflight is back to zero, the member
// list is the two real members, both alive at their own addresses; at the end SIGTERM exits 0.
import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import type { Member } from "../../src/membership/types.ts";
import { seededRandom } from "../sim/sim.ts";
import { connectChannel, connectRaw, messagesOf, type RawConnection, runtime } from "../helpers/net.ts";
import { type NodeProcess, type RunnerName, sendSignal, startNodeProcess, stopProcess } from "../helpers/process.ts";

const SEED = Number(process.env.EBB_FUZZ_SEED ?? 20261123);
const BATCHES = 10;
const MESSAGES_PER_BATCH = 200;

// The simulator's seeded PRNG (mulberry32): a failing run is replayed with EBB_FUZZ_SEED.
const random = seededRandom(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

/** Values a mutation puts in place of a valid one: wrong types, edges of numbers, sizes. */
function hostileValue(): unknown {
  return pick<() => unknown>([
    () => Number.NaN,
    () => Number.POSITIVE_INFINITY,
    () => 1e300,
    () => -1,
    () => 2 ** 53,
    () => Math.floor(random() * 2 ** 32),
    () => null,
    () => "",
    () => "x".repeat(Math.floor(random() * 5000)),
    () => [],
    () => ({}),
    () => new Uint8Array(Math.floor(random() * 64)),
    () => true,
    () => ({ t: "ping" }),
    () => Array.from({ length: 20 }, () => random()),
  ])();
}

/** Replaces, deletes or adds one value somewhere inside `value`. */
function mutate(value: unknown, depth = 0): unknown {
  if (Array.isArray(value) && value.length > 0 && random() < 0.8) {
    const copy = [...value];
    const i = Math.floor(random() * copy.length);
    copy[i] = random() < 0.5 || depth > 4 ? hostileValue() : mutate(copy[i], depth + 1);
    return copy;
  }
  if (typeof value === "object" && value !== null && !(value instanceof Uint8Array) && !Array.isArray(value)) {
    const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    const keys = Object.keys(copy);
    const roll = random();
    if (roll < 0.2 && keys.length > 0) delete copy[pick(keys)];
    else if (roll < 0.3) copy[pick(["extra", "t", "u", "inc", "addr", "meta", "__proto__"])] = hostileValue();
    else if (keys.length > 0) {
      const key = pick(keys);
      copy[key] = random() < 0.5 || depth > 4 ? hostileValue() : mutate(copy[key], depth + 1);
    }
    return copy;
  }
  return hostileValue();
}

/** Flips a few bytes or cuts the message short: what a broken or malicious encoder sends. */
function corrupt(bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice();
  if (random() < 0.3) return copy.subarray(0, Math.floor(random() * copy.byteLength));
  for (let i = 0; i < 1 + Math.floor(random() * 3); i++) copy[Math.floor(random() * copy.byteLength)] = Math.floor(random() * 256);
  return copy;
}

/** Valid messages a peer may send, for a cluster of `a` and `b`. */
function templates(a: Member, b: Member): unknown[] {
  const update = (m: Member, status = "alive") => ({ id: m.id, addr: m.addr, inc: m.incarnation, status, meta: m.meta });
  return [
    [0, 1, "demo.echo", [{ a: 1, b: "hello" }]],
    [0, 2, "demo.sleep", [{ ms: 5 }], { deadline: 1000, id: "r-1" }],
    [0, 3, "$ping", []],
    [0, 4, "$info", []],
    [0, 5, "$members", []],
    [2, "$cancel", [2]],
    [1, 7, null, "stray response"],
    [0, 8, "$swim.ping", [{ t: "ping", from: b.id, target: a.id, u: [update(b)] }]],
    [0, 9, "$swim.ping-req", [{ t: "ping-req", from: b.id, target: b.id, addr: b.addr, u: [update(a)] }]],
    [0, 10, "$swim.sync", [{ t: "sync", from: b.id, digest: 12345 }]],
    [0, 11, "$swim.sync", [{ t: "sync", from: b.id, state: [update(a), update(b)] }]],
    [2, "$swim.gossip", [{ t: "gossip", from: b.id, u: [update(b), update(b, "suspect"), update(b, "dead")] }]],
    [2, "$swim.sync", [{ t: "sync", from: b.id, push: true, state: [update(b)] }]],
  ];
}

async function members(port: number): Promise<Member[]> {
  const channel = await connectChannel(port);
  try {
    return (await channel.call("$members", undefined)) as Member[];
  } finally {
    channel.close();
  }
}

/** Requests in flight on the node, less the scrape that asks (HTTP requests are counted too). */
async function inflightOf(proc: NodeProcess): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${proc.httpPort}/metrics`)).text();
  return Number(/^ebb_inflight (\S+)$/m.exec(text)?.[1]) - 1;
}

interface Attack {
  bytes: Uint8Array;
  /** Corrupted bytes: the node may wait for the rest of a message that never comes. */
  corrupt: boolean;
}

/**
 * Sends one batch. After each well-formed message a `$ping` follows: its answer
 * proves the node handled the message and kept the connection; a closed
 * connection is replaced. Corrupt bytes end their connection.
 */
async function sendBatch(port: number, attacks: Attack[]): Promise<void> {
  let raw: RawConnection | undefined;
  let sent = 0;
  for (const attack of attacks) {
    raw ??= await connectRaw(port);
    raw.socket.write(attack.bytes);
    if (attack.corrupt || ++sent % 50 === 0) {
      raw.socket.close();
      raw = undefined;
      continue;
    }
    const current: RawConnection = raw;
    const msgid = 1_000_000 + sent;
    current.socket.write(encode([0, msgid, "$ping", []]));
    const answered = (async () => {
      for (;;) {
        const replies = messagesOf(current);
        if (replies.some((m) => m[0] === 1 && m[1] === msgid)) return true;
        await current.waitForBytes(current.received().byteLength + 1);
      }
    })();
    if (!(await Promise.race([answered, current.closed.then(() => false)]))) {
      current.socket.close();
      raw = undefined;
    }
  }
  raw?.socket.close();
}

test(`seeded fuzzing (seed ${SEED}) of wire and $swim messages leaves a ${runtime.name} node serving, idle and with its members`, async () => {
  const runner = runtime.name as RunnerName;
  let a: NodeProcess | undefined;
  let b: NodeProcess | undefined;
  try {
    a = await startNodeProcess(runner, { EBB_NODE_ID: "fuzz-a" });
    b = await startNodeProcess(runner, { EBB_NODE_ID: "fuzz-b", EBB_SEEDS: `127.0.0.1:${a.port}` });
    const aPort = a.port;
    const bPort = b.port;
    const healthy = async () => {
      const list = await members(aPort);
      return list.length === 2 && list.every((m) => m.status === "alive") && list.find((m) => m.id === "fuzz-b")?.addr === `127.0.0.1:${bPort}`;
    };
    let ok = false;
    for (let i = 0; i < 300 && !(ok = await healthy()); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(ok, "the cluster formed");
    const view = await members(aPort);
    const memberA = view.find((m) => m.id === "fuzz-a")!;
    const memberB = view.find((m) => m.id === "fuzz-b")!;
    const valid = templates(memberA, memberB);
    const honest = await connectChannel(aPort);
    try {
      for (let batch = 0; batch < BATCHES; batch++) {
        const attacks = Array.from({ length: MESSAGES_PER_BATCH }, (): Attack => {
          const template = pick(valid);
          const message = random() < 0.85 ? mutate(template) : template;
          let bytes: Uint8Array;
          try {
            bytes = encode(message, { maxDepth: 200 });
          } catch {
            bytes = encode([0, 1, "demo.echo", [String(message)]]);
          }
          // Flipped bytes only in calls: in $swim text they would forge well-formed new members,
          // which an unauthenticated cluster cannot tell from real ones (EBB_CLUSTER_KEY can).
          const swim = JSON.stringify(template).includes("$swim");
          return !swim && random() < 0.15 ? { bytes: corrupt(bytes), corrupt: true } : { bytes, corrupt: false };
        });
        await sendBatch(aPort, attacks);
        assert.deepEqual(await honest.call("demo.echo", { batch }), { batch }, `honest call after batch ${batch}`);
        let inflight = -1;
        for (let i = 0; i < 200 && (inflight = await inflightOf(a)) !== 0; i++) await new Promise((resolve) => setTimeout(resolve, 25));
        assert.equal(inflight, 0, `ebb_inflight after batch ${batch}`);
        // Gossip may have made a suspect b refute: give it the time one refutation takes.
        let same = false;
        for (let i = 0; i < 200 && !(same = await healthy()); i++) await new Promise((resolve) => setTimeout(resolve, 25));
        assert.ok(same, `members after batch ${batch}: ${JSON.stringify(await members(aPort))}`);
      }
    } finally {
      honest.close();
    }
    assert.equal(a.child.exitCode, null, "the node survived");
    sendSignal(a, "SIGTERM");
    assert.equal(await a.exited, 0);
    assert.doesNotMatch(a.stderr(), /Uncaught|TypeError/);
  } finally {
    await stopProcess(a);
    await stopProcess(b);
  }
});
