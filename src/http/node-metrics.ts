import type { ClusterClient } from "../cluster/client.ts";
import type { InflightCounter } from "../lifecycle/inflight.ts";
import type { Lifecycle } from "../lifecycle/state.ts";
import type { NodeMembership } from "../membership/node-membership.ts";
import { CallStats } from "../rpc/call-stats.ts";
import type { Dispatcher } from "../rpc/dispatch.ts";
import type { RpcServer } from "../rpc/server.ts";
import type { MetricSeries } from "./metric-families.ts";
import type { Sample } from "./metrics.ts";

/** Counters for metrics and tests. */
export interface NodeStats {
  /** Connections accepted, rejected for bad input, reads paused for a slow peer. */
  accepted: number;
  rejected: number;
  pausedReads: number;
  /** Requests in flight now (RPC and HTTP). */
  inflight: number;
  /** Handler entries since start (RPC and HTTP). */
  handled: number;
  /** Requests refused before a handler: not ready yet, or baffled while draining. */
  notReady: number;
  baffled: number;
  /** RPC connections open now, and the bytes of partial messages they hold (EBB_MAX_BUFFERED_BYTES). */
  connections: number;
  bufferedBytes: number;
}

/** A sample of one of the node's own metric families. */
export type NodeSample = Sample<MetricSeries>;

/** The parts a node's `/metrics` reads, when scraped. */
export interface NodeMetricSources {
  dispatcher: Dispatcher;
  inflight: InflightCounter;
  lifecycle: Lifecycle;
  membership: NodeMembership;
  /** Requests refused OVERLOADED by the node-wide limit (EBB_MAX_INFLIGHT). */
  overloaded(): number;
  /** The node's limit of requests in flight now (0: none). */
  inflightLimit(): number;
  /** The RPC server, once listening. */
  server(): RpcServer | undefined;
  /** The node's own cluster clients (`node.client()`). */
  clusterClients: readonly ClusterClient[];
  /** Seconds spent draining so far. */
  drainSeconds(): number;
}

/** Everything /metrics reports about a node, gathered when scraped. */
export function nodeSamples(sources: NodeMetricSources): NodeSample[] {
  const { lifecycle, inflight, membership } = sources;
  const server = sources.server();
  const out: NodeSample[] = [...callSamples(sources.dispatcher)];
  out.push(["ebb_inflight", {}, inflight.count], ["ebb_handled_total", {}, inflight.entered]);
  out.push(["ebb_baffled_total", {}, lifecycle.baffledCount], ["ebb_not_ready_total", {}, lifecycle.notReadyCount]);
  out.push(["ebb_overloaded_total", {}, sources.overloaded() + (server?.stats.overloaded ?? 0)]);
  out.push(["ebb_inflight_limit", {}, sources.inflightLimit()]);
  out.push(["ebb_connections_accepted_total", {}, server?.stats.accepted ?? 0], ["ebb_connections_rejected_total", {}, server?.stats.rejected ?? 0]);
  if (server) {
    const { stats } = server;
    out.push(["ebb_connections_open", {}, server.connections.size], ["ebb_connections_refused_total", {}, stats.refusedOverCap], ["ebb_accept_errors_total", {}, stats.acceptErrors]);
    out.push(["ebb_notifications_dropped_total", {}, stats.droppedNotifications]);
    out.push(["ebb_connections_timed_out_total", { kind: "read" }, stats.readTimeouts], ["ebb_connections_timed_out_total", { kind: "idle" }, stats.idleClosed], ["ebb_connections_timed_out_total", { kind: "silent" }, stats.silentClosed], ["ebb_buffered_bytes", {}, server.bufferedBytes]);
  }
  const auth = server?.authGuard?.stats;
  for (const reason of ["unknown_key", "wrong_cluster", "handshake"] as const) out.push(["ebb_auth_failures_total", { reason }, auth?.byReason[reason] ?? 0]);
  out.push(["ebb_auth_secondary_total", {}, auth?.secondary ?? 0], ["ebb_auth_throttled_total", {}, auth?.throttled ?? 0]);
  out.push(...clientSamples(sources.clusterClients));
  const byStatus: Record<string, number> = { alive: 0, suspect: 0, dead: 0, left: 0 };
  for (const member of membership.list()) byStatus[member.status] = (byStatus[member.status] ?? 0) + 1;
  for (const [status, n] of Object.entries(byStatus)) out.push(["ebb_members", { status }, n]);
  for (const state of ["starting", "ready", "draining", "stopped"]) out.push(["ebb_lifecycle_state", { state }, lifecycle.state === state ? 1 : 0]);
  out.push(["ebb_drain_seconds", {}, sources.drainSeconds()]);
  const { stats } = membership;
  out.push(["ebb_rejected_total", { reason: "swim" }, membership.gate.rejected], ["ebb_rejected_total", { reason: "swim_member_cap" }, stats?.overCap ?? 0]);
  out.push(["ebb_rejected_total", { reason: "swim_address_conflict" }, stats?.addressConflicts ?? 0]);
  out.push(["ebb_rejected_total", { reason: "swim_incarnation_jump" }, stats?.incarnationJumps ?? 0]);
  out.push(["ebb_event_loop_lag_seconds", {}, membership.lastLagMs / 1000], ["ebb_membership_health_score", {}, membership.healthScore]);
  return out;
}

/** Calls by method and code, and their duration histogram. */
function callSamples(dispatcher: Dispatcher): NodeSample[] {
  const out: NodeSample[] = [];
  for (const [method, stats] of dispatcher.stats.methods) {
    for (const [code, n] of stats.codes) out.push(["ebb_calls_total", { method, code }, n]);
    for (const [le, n] of CallStats.cumulative(stats)) out.push(["ebb_call_duration_seconds_bucket", { method, le }, n]);
    out.push(["ebb_call_duration_seconds_sum", { method }, stats.sumSeconds], ["ebb_call_duration_seconds_count", { method }, stats.count]);
  }
  return out;
}

/** The node's cluster clients, summed: calls, retries by reason, and the warm-up weight each gives a node (the highest). */
function clientSamples(clients: readonly ClusterClient[]): NodeSample[] {
  const retries = new Map<string, number>();
  const weights = new Map<string, number>();
  let calls = 0;
  let refused = 0;
  let ejections = 0;
  let hedges = 0;
  let hedgesWon = 0;
  for (const cluster of clients) {
    const m = cluster.metrics();
    calls += m.calls;
    refused += m.retriesRefused;
    ejections += m.ejections;
    hedges += m.hedges;
    hedgesWon += m.hedgesWon;
    for (const [reason, n] of Object.entries(m.retries)) retries.set(reason, (retries.get(reason) ?? 0) + n);
    for (const c of cluster.candidates()) weights.set(c.id, Math.max(weights.get(c.id) ?? 0, c.weight));
  }
  const out: NodeSample[] = [["ebb_client_calls_total", {}, calls], ["ebb_client_retries_refused_total", {}, refused], ["ebb_client_ejections_total", {}, ejections], ["ebb_client_hedges_total", {}, hedges], ["ebb_client_hedges_won_total", {}, hedgesWon]];
  for (const [id, weight] of weights) out.push(["ebb_client_weight", { node: id }, weight]);
  for (const [reason, n] of retries) out.push(["ebb_client_retries_total", { reason }, n]);
  return out;
}

/** The node's counters for `node.stats`. */
export function nodeStats(server: RpcServer | undefined, inflight: InflightCounter, lifecycle: Lifecycle): NodeStats {
  const stats = server?.stats;
  return {
    accepted: stats?.accepted ?? 0,
    rejected: stats?.rejected ?? 0,
    pausedReads: stats?.pausedReads ?? 0,
    inflight: inflight.count,
    handled: inflight.entered,
    notReady: lifecycle.notReadyCount,
    baffled: lifecycle.baffledCount,
    connections: server?.connections.size ?? 0,
    bufferedBytes: server?.bufferedBytes ?? 0,
  };
}
