/**
 * The server side of `npm run bench:echo`, run as its own process:
 *   ebb   the reference node's dispatch (lookup, zod validation, counter, batching)
 *   tls   the same node with TLS on, from EBB_TLS_CERT, EBB_TLS_KEY and EBB_TLS_CA
 *   bare  a msgpack-rpc echo on the same runtime sockets: decode, answer, nothing else
 *   peer  msgpack5rpc (a msgpack-rpc library, a dev dependency) on node:net, answering the same echo
 * Prints `port <n>` when listening.
 */
import { createServer } from "node:net";
import { Session } from "../../tests/helpers/msgpack5rpc.ts";
import { configWith, loadConfig } from "../../src/config/load.ts";
import { demo, demoHandlers } from "../../src/demo/demo.ts";
import { createNode } from "../../src/node.ts";
import { detectRuntime } from "../../src/runtime/detect.ts";
import { MessageDecoder } from "../../src/wire/decoder.ts";
import { BatchWriter } from "../../src/rpc/batch-writer.ts";

const runtime = await detectRuntime();
const mode = runtime.args()[0];

if (mode === "ebb" || mode === "tls") {
  const tls = mode === "tls" ? loadConfig(runtime.env()).tls : undefined;
  const node = createNode({ config: configWith({ nodeId: "bench", rpcPort: 0, httpPort: null, tls }), runtime });
  node.register(demo, demoHandlers);
  await node.start();
  console.log(`port ${node.rpcAddress.port}`);
} else if (mode === "bare") {
  const listener = await runtime.listen({
    host: "127.0.0.1",
    port: 0,
    accept(socket) {
      socket.setNoDelay(true);
      const decoder = new MessageDecoder(8 << 20);
      const writer = new BatchWriter(socket);
      return {
        data(chunk) {
          for (const message of decoder.push(chunk) as [number, number, string, unknown[]][]) {
            writer.send([1, message[1], null, message[3][0]]);
          }
        },
        close() {},
      };
    },
  });
  console.log(`port ${listener.port}`);
} else if (mode === "peer") {
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    const session = new Session();
    session.attach(socket, socket);
    session.on("request", (_method, args, response) => response.send(args[0]));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  console.log(`port ${(server.address() as { port: number }).port}`);
} else {
  console.error(`usage: echo-server.ts ebb|tls|bare|peer`);
  runtime.exit(2);
}
