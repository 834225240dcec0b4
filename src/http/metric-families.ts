import type { Families } from "./metrics.ts";

/** Every metric a node exports on /metrics. Names are append-only once shipped. */
export const METRIC_FAMILIES = {
  ebb_calls_total: { help: "Calls answered, by method and code (OK for success); unknown methods as method=\"unknown\".", type: "counter" },
  ebb_call_duration_seconds: { help: "Time from a request reaching dispatch to its answer, by method; refusals included.", type: "histogram" },
  ebb_inflight: { help: "Requests in flight now (RPC and HTTP; a scrape counts itself).", type: "gauge" },
  ebb_handled_total: { help: "Handler entries since start.", type: "counter" },
  ebb_baffled_total: { help: "Requests answered SHUTTING_DOWN by the baffle without running a handler.", type: "counter" },
  ebb_not_ready_total: { help: "Requests refused before the node was ready (UNAVAILABLE, processed false).", type: "counter" },
  ebb_inflight_limit: { help: "The node's limit of requests in flight: EBB_MAX_INFLIGHT, or the adaptive limit under it with EBB_ADAPTIVE_CONCURRENCY=1 (0: no limit).", type: "gauge" },
  ebb_overloaded_total: { help: "Requests answered OVERLOADED (processed false) because EBB_MAX_INFLIGHT were in flight on the node, or EBB_MAX_INFLIGHT_PER_CONNECTION on their connection.", type: "counter" },
  ebb_notifications_dropped_total: { help: "Notifications to a method ([2, method, params]) dropped: ebb answers requests only.", type: "counter" },
  ebb_connections_accepted_total: { help: "RPC connections accepted.", type: "counter" },
  ebb_connections_rejected_total: { help: "RPC connections closed for bad input.", type: "counter" },
  ebb_connections_open: { help: "RPC connections open now.", type: "gauge" },
  ebb_connections_refused_total: { help: "RPC connections closed on accept: EBB_MAX_CONNECTIONS were open.", type: "counter" },
  ebb_connections_timed_out_total: { help: "RPC connections closed by a timeout, by kind: read (a partial message, EBB_READ_TIMEOUT_MS), idle (EBB_IDLE_TIMEOUT_MS) or silent (an ebb client stopped its keep-alive pings: gone, or half-open).", type: "counter" },
  ebb_accept_errors_total: { help: "Failed accepts (out of descriptors), each followed by a back-off.", type: "counter" },
  ebb_buffered_bytes: { help: "Bytes of partial messages held for all RPC connections (bounded by EBB_MAX_BUFFERED_BYTES).", type: "gauge" },
  ebb_auth_failures_total: { help: "Cluster key handshakes that failed, by reason: unknown_key (proofs made with none of this node's keys: a peer two rotation steps apart, or a stranger), wrong_cluster (another EBB_CLUSTER_ID), handshake (none, or malformed).", type: "counter" },
  ebb_auth_secondary_total: { help: "Cluster key handshakes that succeeded with a secondary key of this node only: the peer does not hold this node's primary key yet (a rotation step behind). Remove an old key once this stops rising everywhere.", type: "counter" },
  ebb_auth_throttled_total: { help: "Connections closed unheard because their host had too many failed handshakes.", type: "counter" },
  ebb_client_calls_total: { help: "Calls made through this node's cluster clients.", type: "counter" },
  ebb_client_retries_total: { help: "Transparent retries by this node's cluster clients, by reason.", type: "counter" },
  ebb_client_retries_refused_total: { help: "Retries this node's cluster clients did not make because the retry budget was spent (the caller got the error).", type: "counter" },
  ebb_client_hedges_total: { help: "Hedges this node's cluster clients sent (a second try of an idempotent call still unanswered after the hedge delay).", type: "counter" },
  ebb_client_hedges_won_total: { help: "Hedges whose answer came first.", type: "counter" },
  ebb_client_ejections_total: { help: "Times this node's cluster clients ejected a node for failing calls (outlier ejection).", type: "counter" },
  ebb_client_weight: { help: "Weight this node's cluster clients give each callable node: rises from 0.1 to 1 over EBB_WARMUP_MS after it is first seen ready.", type: "gauge" },
  ebb_members: { help: "Members known, by status.", type: "gauge" },
  ebb_lifecycle_state: { help: "1 for the node's current lifecycle state.", type: "gauge" },
  ebb_drain_seconds: { help: "Time spent draining so far (0 until shutdown begins); the exit log line has the total.", type: "gauge" },
  ebb_rejected_total: { help: "Membership messages refused, by reason: swim (malformed), swim_member_cap (table full), swim_address_conflict (a live member moved), swim_incarnation_jump (an incarnation raised too far).", type: "counter" },
  ebb_event_loop_lag_seconds: { help: "Event-loop lag seen by the last check.", type: "gauge" },
  ebb_membership_health_score: { help: "Lifeguard's local health score (0 is healthy).", type: "gauge" },
} as const satisfies Families;

/** A metric family's name; a misspelt one fails the type check. */
export type MetricFamily = keyof typeof METRIC_FAMILIES;

type HistogramFamily = { [K in MetricFamily]: (typeof METRIC_FAMILIES)[K]["type"] extends "histogram" ? K : never }[MetricFamily];

/** A series a node writes: a counter's or gauge's own name, or a histogram's `_bucket`, `_sum` and `_count`. */
export type MetricSeries = Exclude<MetricFamily, HistogramFamily> | `${HistogramFamily}_${"bucket" | "sum" | "count"}`;
