/** ebb's public API. */
import { type ClusterClient, type ClusterClientOptions, createClusterClient as createClusterClientOn } from "./cluster/client.ts";
import { detectRuntime } from "./runtime/detect.ts";

export { createNode, VERSION, type EbbNode, type NodeOptions } from "./node.ts";
export { defineService, type CallContext, type Handler, type Implementation, type InputOf, type MethodSpec, type OutputOf, type ServiceContract } from "./rpc/contract.ts";
export { createClient, type ServiceClient } from "./rpc/client.ts";
export { Channel, type CallOptions, type ChannelOptions, type Transport } from "./rpc/channel.ts";
export { RpcError, type RpcErrorOptions } from "./rpc/errors.ts";
export { ErrorCodes, type ErrorCode } from "./wire/codes.ts";
export { loadConfig, ConfigError, type Config } from "./config/load.ts";
export { createLogger, type Logger, type LogLevel } from "./log.ts";
export { detectRuntime } from "./runtime/detect.ts";
export type { Runtime, Socket, Listener } from "./runtime/types.ts";
export { ClusterClient, type ClusterClientOptions, type ClusterClientMetrics } from "./cluster/client.ts";
export type { Member, MemberEvent, MemberMeta, MemberStatus } from "./membership/types.ts";
export type { ShutdownSummary, NodeStats } from "./node.ts";
export type { LifecycleState } from "./lifecycle/state.ts";
export { StartupError, type StartupContext, type StartupHook } from "./lifecycle/startup.ts";
export { runNode, type RunContext } from "./run.ts";
export { EXIT_CODES, exitOnSignals } from "./lifecycle/signals.ts";

/** Creates a client of a cluster from seeds, static addresses, or a node's membership view; without `runtime`, on the detected one. */
export function createClusterClient(options: ClusterClientOptions): ClusterClient {
  return createClusterClientOn({ ...options, runtime: options.runtime ?? detectRuntime });
}
