import { test } from "node:test";
import assert from "node:assert/strict";
// As the README's "Testing without sockets" shows it, importing from the public API.
import { createClusterClient, createMemoryRuntime, createNode, loadConfig } from "../../src/mod.ts";
import { greeter } from "../fixtures/greeter.ts";

test("the README's in-memory test of a service of your own: a node and a client on one in-memory runtime", async () => {
  const runtime = createMemoryRuntime();
  const node = createNode({ config: loadConfig({ EBB_RPC_PORT: "0", EBB_HTTP_PORT: "0" }), runtime });
  node.register(greeter, { hello: ({ name }) => `Hello, ${name}!` });
  await node.start();
  const cluster = createClusterClient({ addresses: [`127.0.0.1:${node.rpcAddress.port}`], runtime });
  try {
    assert.equal(await cluster.client(greeter).hello({ name: "test" }), "Hello, test!");
  } finally {
    cluster.close();
    await node.shutdown();
  }
});

test("node.client() made before start reaches a service on the node itself once it is ready", async () => {
  const runtime = createMemoryRuntime();
  const node = createNode({ config: loadConfig({ EBB_RPC_PORT: "0", EBB_HTTP_PORT: "0" }), runtime });
  // A node's own state changes are no gossip from others: its clients hear of them all the same.
  const greet = node.client(greeter);
  node.register(greeter, { hello: ({ name }) => `Hello, ${name}!` });
  await node.start();
  try {
    assert.equal(await greet.hello({ name: "self" }, { timeoutMs: 2_000 }), "Hello, self!");
  } finally {
    await node.shutdown();
  }
});
