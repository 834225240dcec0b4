import type { Config } from "./config/load.ts";
import { type Logger, silentLogger } from "./log.ts";
import type { Implementation, ServiceContract } from "./rpc/contract.ts";
import { Dispatcher } from "./rpc/dispatch.ts";
import { Router } from "./rpc/router.ts";
import { RpcServer } from "./rpc/server.ts";
import { detectRuntime } from "./runtime/detect.ts";
import type { Listener, Runtime } from "./runtime/types.ts";

/** The version of ebb, reported by `$info`. */
export const VERSION = "0.1.0";

/** Options of `createNode`. */
export interface NodeOptions {
  config: Config;
  log?: Logger;
  /** Defaults to the runtime this process runs on. */
  runtime?: Runtime;
}

/** An ebb node: services, an RPC listener, and (later) lifecycle and membership. */
export interface EbbNode {
  readonly id: string;
  /** Registers a service's handlers. Call before `start`. */
  register<C extends ServiceContract>(contract: C, implementation: Implementation<C>): EbbNode;
  /** Listens on the RPC port. */
  start(): Promise<void>;
  /** The bound RPC address; available after `start`. */
  readonly rpcAddress: { host: string; port: number };
  /** Connection counters: accepted, rejected for bad input, reads paused for a slow peer. */
  readonly stats: Readonly<RpcServer["stats"]>;
  /** Stops accepting, ends every connection once answered, and resolves when done. Idempotent. */
  shutdown(): Promise<void>;
}

/** Composes router, dispatcher and server into a node. */
export function createNode(options: NodeOptions): EbbNode {
  const { config } = options;
  const log = options.log ?? silentLogger;
  const router = new Router();
  let runtime: Runtime | undefined = options.runtime;
  let server: RpcServer | undefined;
  let listener: Listener | undefined;
  let stopping: Promise<void> | undefined;

  const dispatcher = new Dispatcher({
    router,
    log,
    builtins: {
      $ping: () => ({ node: config.nodeId, time: Date.now() }),
      $info: () => ({
        node: config.nodeId,
        version: VERSION,
        runtime: runtime?.name,
        runtimeVersion: runtime?.version,
        services: router.describe(),
      }),
    },
  });

  const node: EbbNode = {
    id: config.nodeId,
    register(contract, implementation) {
      if (server) throw new Error("Register services before start()");
      router.register(contract, implementation);
      return node;
    },
    async start() {
      runtime ??= await detectRuntime();
      server = new RpcServer(runtime, { dispatcher, log, maxMessageBytes: config.maxMessageBytes });
      listener = await server.listen(config.host, config.rpcPort);
    },
    get stats() {
      return server?.stats ?? { accepted: 0, rejected: 0, pausedReads: 0 };
    },
    get rpcAddress() {
      if (!listener) throw new Error("The node has not started");
      return { host: listener.host, port: listener.port };
    },
    shutdown() {
      stopping ??= (async () => {
        if (!server) return;
        await server.stopAccepting();
        server.endAll();
      })();
      return stopping;
    },
  };
  return node;
}
