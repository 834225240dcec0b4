/** ebb's public API. */
import { type ClusterClient, type ClusterClientOptions as CoreClusterClientOptions, createClusterClient as createClusterClientOn } from "./cluster/client.ts";
import { createNode as createNodeOn, type EbbNode, type NodeOptions as CoreNodeOptions } from "./node.ts";
import { detectRuntime } from "./runtime/detect.ts";
import type { RuntimeSource } from "./runtime/source.ts";

export { VERSION, type EbbNode } from "./node.ts";
export { defineService, type CallContext, type Handler, type Implementation, type InputOf, type MethodSpec, type OutputOf, type RetryPolicy, type ServerCall, type ServerInterceptor, type ServerNext, type ServiceContract } from "./rpc/contract.ts";
export { createClient, type ServiceClient } from "./rpc/client.ts";
export { Channel, type CallOptions, type ChannelOptions, type Transport } from "./rpc/channel.ts";
export { RpcError, type RpcErrorOptions } from "./rpc/errors.ts";
export { httpToken, type ClusterKey, type Keyring } from "./rpc/auth.ts";
export { ErrorCodes, type ErrorCode } from "./wire/codes.ts";
export { MAX_HEADER_CHARS, MAX_HEADERS, type CallHeaders } from "./wire/messages.ts";
export type { TraceContext } from "./rpc/trace.ts";
export { currentCall } from "./rpc/call-scope.ts";
export { HEADER_PREFIX } from "./http/gateway.ts";
export { loadConfig, ConfigError, type Config } from "./config/load.ts";
export { createLogger, type Logger, type LogLevel } from "./log.ts";
export { detectRuntime } from "./runtime/detect.ts";
export type { Runtime, Socket, Listener } from "./runtime/types.ts";
export type { RuntimeSource } from "./runtime/source.ts";
export { createMemoryRuntime, MemoryExit, type MemoryRuntime, type MemoryRuntimeOptions } from "./runtime/memory.ts";
export type { ClientCall, ClientInterceptor, ClientNext, ClusterClient, ClusterClientMetrics } from "./cluster/client.ts";
export type { Member, MemberEvent, MemberMeta, MemberStatus } from "./membership/types.ts";
export type { ShutdownSummary, NodeStats } from "./node.ts";
export type { LifecycleState } from "./lifecycle/state.ts";
export { StartupError, type StartupContext, type StartupHook } from "./lifecycle/startup.ts";
export { runNode, type RunContext, type RunOptions } from "./run.ts";
export { EXIT_CODES, exitOnSignals } from "./lifecycle/signals.ts";

/** Options of `createNode`: without a runtime, the one this process runs on. */
export interface NodeOptions extends Omit<CoreNodeOptions, "runtime"> {
  runtime?: RuntimeSource;
}

/** A node (see `EbbNode`), on the runtime given or the one this process runs on. */
export function createNode(options: NodeOptions): EbbNode {
  return createNodeOn({ ...options, runtime: options.runtime ?? detectRuntime });
}

/** Options of `createClusterClient`: without a runtime, the one this process runs on. */
export interface ClusterClientOptions extends Omit<CoreClusterClientOptions, "runtime"> {
  runtime?: RuntimeSource;
}

/** A client of a cluster from seeds, static addresses, or a node's membership view, on the runtime given or the one this process runs on. */
export function createClusterClient(options: ClusterClientOptions): ClusterClient {
  return createClusterClientOn({ ...options, runtime: options.runtime ?? detectRuntime });
}
