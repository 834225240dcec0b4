// The connection pool over the in-memory runtime: one connection per endpoint, backoff on failure, $members.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EndpointTable } from "../../../src/cluster/endpoints.ts";
import { ConnectionPool } from "../../../src/cluster/pool.ts";
import { silentLogger } from "../../../src/log.ts";
import type { Member } from "../../../src/membership/types.ts";
import type { Channel } from "../../../src/rpc/channel.ts";
import { Dispatcher } from "../../../src/rpc/dispatch.ts";
import { Router } from "../../../src/rpc/router.ts";
import { RpcServer } from "../../../src/rpc/server.ts";
import { createMemoryRuntime, type MemoryRuntime } from "../../../src/runtime/memory.ts";
import { ManualClock, settle } from "../../helpers/clock.ts";

const members: Member[] = [{ id: "a", addr: "127.0.0.1:1", incarnation: 0, status: "alive", meta: { state: "ready", services: [], version: "0", http: null }, since: 0 }];

async function setup(answer: unknown = members) {
  const runtime: MemoryRuntime = createMemoryRuntime();
  const dispatcher = new Dispatcher({ router: new Router(), log: silentLogger, builtins: { $members: () => answer } });
  const server = new RpcServer(runtime, { dispatcher, log: silentLogger, maxMessageBytes: 1024 * 1024 });
  const { port } = await server.listen("127.0.0.1", 0);
  const addr = `127.0.0.1:${port}`;
  const clock = new ManualClock();
  const table = new EndpointTable<Channel>({ warmupMs: 0, warmupFloor: 0.1 });
  let changes = 0;
  const pool = new ConnectionPool(table, { runtime, clock, log: silentLogger, maxMessageBytes: 1024 * 1024, clusterKey: undefined, onChange: () => changes++ });
  return {
    runtime,
    server,
    addr,
    clock,
    table,
    pool,
    get changes() {
      return changes;
    },
    async [Symbol.asyncDispose]() {
      pool.closeAll();
      server.closeAll();
      await server.stopAccepting();
    },
  };
}

test("pool: concurrent callers share one connection attempt and one connection", async () => {
  await using s = await setup();
  const endpoint = s.table.upsert("a", s.addr, undefined, true, 0);
  const [first, second] = await Promise.all([s.pool.connect(endpoint), s.pool.connect(endpoint)]);
  assert.equal(first, second);
  assert.equal(await s.pool.connect(endpoint), first);
  assert.equal(s.runtime.openConnections, 1);
  assert.equal(endpoint.connecting, undefined);
});

test("pool: a closed connection is forgotten and wakes the waiters; the next call reconnects", async () => {
  await using s = await setup();
  const endpoint = s.table.upsert("a", s.addr, undefined, true, 0);
  const first = await s.pool.connect(endpoint);
  const before = s.changes;
  s.server.closeAll();
  await first.whenClosed();
  await settle();
  assert.equal(endpoint.channel, undefined);
  assert.ok(s.changes > before);
  const second = await s.pool.connect(endpoint);
  assert.notEqual(second, first);
});

test("pool: $goaway from the server wakes the waiters", async () => {
  await using s = await setup();
  const endpoint = s.table.upsert("a", s.addr, undefined, true, 0);
  await s.pool.connect(endpoint);
  const before = s.changes;
  s.server.broadcastGoaway({ reason: "draining" });
  await settle();
  assert.equal(s.changes, before + 1);
  assert.equal(endpoint.channel?.goaway, "draining");
});

test("pool: a refused connection puts the endpoint in backoff; a success resets it", async () => {
  await using s = await setup();
  const endpoint = s.table.upsert("a", s.addr, undefined, true, 0);
  await s.server.stopAccepting();
  await assert.rejects(s.pool.connect(endpoint));
  assert.deepEqual({ backoffMs: endpoint.backoffMs, backoffUntil: endpoint.backoffUntil }, { backoffMs: 100, backoffUntil: 100 });
  await s.clock.advance(100);
  await assert.rejects(s.pool.connect(endpoint));
  assert.deepEqual({ backoffMs: endpoint.backoffMs, backoffUntil: endpoint.backoffUntil }, { backoffMs: 200, backoffUntil: 300 });
  await s.server.listen("127.0.0.1", Number(s.addr.split(":")[1]));
  await s.pool.connect(endpoint);
  assert.equal(endpoint.backoffMs, 0);
});

test("pool: members from a node, over its open connection or a short-lived one", async () => {
  await using s = await setup();
  assert.deepEqual(await s.pool.membersFrom(s.addr), members);
  await settle();
  assert.equal(s.runtime.openConnections, 0, "the short-lived connection is closed");
  const endpoint = s.table.upsert("a", s.addr, undefined, true, 0);
  await s.pool.connect(endpoint);
  assert.deepEqual(await s.pool.membersFrom(s.addr), members);
  assert.equal(s.runtime.openConnections, 1, "asked over the open connection");
});

test("pool: a malformed member list fails like an unreachable seed", async () => {
  await using s = await setup([{ id: 1 }]);
  await assert.rejects(s.pool.membersFrom(s.addr), { code: "UNAVAILABLE", message: /Member list from "127\.0\.0\.1:\d+" is malformed/ });
});
