import { after, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { RpcError } from "../../src/rpc/errors.ts";
import { connectChannel, startTestNode } from "../helpers/net.ts";
import { request, Session } from "../helpers/msgpack5rpc.ts";
import { probe, probeHandlers } from "../helpers/services.ts";

const server = await startTestNode((node) => node.register(probe, probeHandlers));
after(() => server.close());

test("a msgpack5rpc client calls an ebb server", async () => {
  const socket = net.connect(server.port, "127.0.0.1");
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  const session = new Session();
  session.attach(socket, socket);
  try {
    assert.equal(await request(session, "probe.add", [{ a: 40, b: 2 }]), 42);
    assert.deepEqual(await request(session, "probe.echo", [{ nested: [1, "two", { three: 3 }] }]), { nested: [1, "two", { three: 3 }] });
    const pipelined = await Promise.all(Array.from({ length: 100 }, (_, i) => request(session, "probe.add", [{ a: i, b: i }])));
    assert.deepEqual(pipelined, Array.from({ length: 100 }, (_, i) => 2 * i));
    assert.equal(((await request(session, "$info", [])) as { node: string }).node, "test-node");
    await assert.rejects(request(session, "probe.nope", [{}]), (error: unknown) => {
      assert.equal((error as { code: string }).code, "METHOD_NOT_FOUND");
      return true;
    });
    await assert.rejects(request(session, "probe.add", [{ a: "x" }]), (error: unknown) => {
      assert.equal((error as { code: string }).code, "INVALID_PARAMS");
      return true;
    });
  } finally {
    socket.end();
  }
});

test("an ebb client calls a msgpack5rpc server", async () => {
  const foreign = net.createServer((socket) => {
    const session = new Session();
    session.attach(socket, socket);
    session.on("request", (method, args, response) => {
      if (method === "say") response.send(`hello ${String(args[0])}`);
      else response.send(`no method ${method}`, true);
    });
  });
  await new Promise<void>((resolve) => foreign.listen(0, "127.0.0.1", resolve));
  const { port } = foreign.address() as net.AddressInfo;
  const channel = await connectChannel(port, { plain: true });
  try {
    assert.equal(await channel.call("say", "world"), "hello world");
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => channel.call("say", i)));
    assert.deepEqual(results, Array.from({ length: 50 }, (_, i) => `hello ${i}`));
    await assert.rejects(channel.call("shout", null), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.code, "APPLICATION");
      assert.equal(error.rawMessage, "no method shout");
      return true;
    });
  } finally {
    channel.close();
    foreign.close();
  }
});
