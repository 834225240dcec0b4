// A node that floods a watching client (`$watch`) with members, against a real cluster client: what
// it can make the client hold and do is bounded (4,096 nodes at most, 10 tries a call), and the
// flood is applied quickly. (Whom the client may trust is the cluster key's business: without one,
// any node's member list is believed, `$members` as much as `$watch`.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { createClusterClient } from "../../src/cluster/client.ts";
import { MAX_ENDPOINTS } from "../../src/cluster/endpoints.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { MessageDecoder } from "../../src/wire/decoder.ts";
import { runtime, until } from "../helpers/net.ts";

const FLOOD = 6_000;

const memberAt = (id: string, addr: string) => ({ id, addr, incarnation: 0, status: "alive", meta: { state: "ready", services: ["demo"], version: "0", http: null }, since: 0 });

test("a watched node sending thousands of joins: the client holds at most MAX_ENDPOINTS nodes, applies them within seconds, and a call makes at most 10 tries", async () => {
  let flooded!: () => void;
  const floodSent = new Promise<void>((resolve) => (flooded = resolve));
  let addr = "";
  const listener = await runtime.listen({
    host: "127.0.0.1",
    port: 0,
    accept: (socket) => {
      const decoder = new MessageDecoder(64 << 20);
      return {
        data(chunk) {
          for (const message of decoder.push(chunk) as unknown[][]) {
            const [, msgid, method] = message as [number, number, string];
            const self = [memberAt("evil", addr)];
            if (method === "$members") socket.write(encode([1, msgid, null, self]));
            else if (method === "$info") socket.write(encode([1, msgid, null, { node: "evil", services: {} }]));
            else if (method === "$watch") {
              // The answer, and in the same write the flood: joins of members at addresses nobody listens on.
              const notes = Array.from({ length: FLOOD }, (_, i) => encode([2, "$watch", [{ type: "join", member: memberAt(`fake-${i}`, `127.0.0.1:${1 + (i % 1_000)}`) }]]));
              const answer = encode([1, msgid, null, { members: self }]);
              const all = new Uint8Array(answer.byteLength + notes.reduce((n, b) => n + b.byteLength, 0));
              let at = 0;
              for (const part of [answer, ...notes]) {
                all.set(part, at);
                at += part.byteLength;
              }
              socket.write(all);
              flooded();
            } else if (method !== undefined) socket.write(encode([1, msgid, { code: "APPLICATION", message: "no" }, null]));
          }
        },
        end: () => socket.end(),
        close: () => {},
      };
    },
  });
  addr = `127.0.0.1:${listener.port}`;
  const client = createClusterClient({ runtime, seeds: [addr], refreshMs: 60_000 });
  try {
    await floodSent;
    // The flood is applied as it is read: wait until the table is full.
    await until(() => client.candidates("demo").length >= MAX_ENDPOINTS, `the table full (${MAX_ENDPOINTS} nodes)`, 5_000);
    assert.ok(client.candidates().length <= MAX_ENDPOINTS, `${client.candidates().length} nodes held`);
    // A call picks among fake members nobody listens on: it gives up after 10 tries, not thousands.
    await assert.rejects(client.call("demo.echo", 1, { timeoutMs: 10_000 }), (error: RpcError) => error.code === "UNAVAILABLE" || error.code === "APPLICATION");
    assert.ok((client.metrics().retries.unreachable ?? 0) <= 9, JSON.stringify(client.metrics().retries));
  } finally {
    client.close();
    await listener.stop();
  }
});
