/** A member's liveness as the cluster sees it. */
export type MemberStatus = "alive" | "suspect" | "dead" | "left";

/** What a member tells the cluster about itself. Encoded, it must stay under `MAX_META_BYTES`. */
export interface MemberMeta {
  /** Lifecycle state: starting, ready, draining, stopped. */
  state: string;
  /** Services it offers. */
  services: string[];
  /** ebb version. */
  version: string;
  /** HTTP port, or null when HTTP is off. */
  http: number | null;
}

/** Largest metadata a member may carry, in (approximate) encoded bytes: it rides on every update. */
export const MAX_META_BYTES = 512;

/** A member as the local node sees it. */
export interface Member {
  readonly id: string;
  /** `host:port` of its RPC listener. */
  readonly addr: string;
  readonly incarnation: number;
  readonly status: MemberStatus;
  readonly meta: MemberMeta;
  /** Local time of the last status change. */
  readonly since: number;
}

/** News about one member, as gossiped. */
export interface Update {
  id: string;
  addr: string;
  inc: number;
  status: MemberStatus;
  meta?: MemberMeta;
  /** For `suspect`: who accuses, so confirmations can be counted. */
  by?: string;
}

/**
 * Membership messages, carried as `$swim.<t>` calls on the RPC port.
 * Wire constants: append-only.
 */
export type SwimMessage =
  | { t: "ping"; from: string; target: string; u?: Update[] }
  | { t: "ack"; from: string; u?: Update[] }
  | { t: "nack"; from: string }
  | { t: "ping-req"; from: string; target: string; addr: string; u?: Update[] }
  | { t: "gossip"; from: string; u: Update[] }
  /** Anti-entropy: a digest first, full state only when digests differ; `push` expects no reply. */
  | { t: "sync"; from: string; digest?: number; state?: Update[]; join?: boolean; push?: boolean; same?: boolean };

/** The network as the membership sees it: request/response and one-way messages. */
export interface SwimTransport {
  /** Sends a request; `onReply` gets the reply, or undefined on timeout or failure. Called once. */
  request(to: string, message: SwimMessage, timeoutMs: number, onReply: (reply: SwimMessage | undefined) => void): void;
  /** Sends a one-way message. */
  send(to: string, message: SwimMessage): void;
  /** Drops any pooled connection to `to`: the member there was declared dead, left or was reaped. */
  forget?(to: string): void;
}

/** Time as the membership sees it: real in a node, virtual in the simulator. */
export type { Clock, TimerHandle } from "../runtime/clock.ts";

/** What changed about a member. */
export type MemberEventType = "join" | "update" | "suspect" | "dead" | "left";

/** A membership event. */
export interface MemberEvent {
  type: MemberEventType;
  member: Member;
}

/** Membership timings and limits; defaults are memberlist's LAN profile. */
export interface SwimConfig {
  /** Failure check of one member every interval. */
  probeIntervalMs: number;
  /** Wait this long for a direct ack before asking others. */
  probeTimeoutMs: number;
  /** Members asked to probe indirectly (k). */
  indirectChecks: number;
  /** Gossip fan-out tick. */
  gossipIntervalMs: number;
  /** Members gossiped to each tick. */
  gossipNodes: number;
  /** Suspicion timeout = mult * max(1, log10(n)) * probe interval. */
  suspicionMult: number;
  /** Without confirmations, suspicion lasts up to this multiple of the base timeout (Lifeguard). */
  suspicionMaxTimeoutMult: number;
  /** Each update is retransmitted mult * ceil(log10(n + 1)) times. */
  retransmitMult: number;
  /** Anti-entropy with a random member every interval. */
  pushPullIntervalMs: number;
  /** Try to reach a random dead member (partition healing) or the seeds (when alone) every interval. */
  reconnectIntervalMs: number;
  /** Keep gossiping to dead members this long, so they can refute. */
  gossipToTheDeadMs: number;
  /** Forget dead and left members after this long. */
  deadReclaimMs: number;
  /** Upper bound of the local health score (Lifeguard). */
  awarenessMax: number;
  /** Room for piggybacked updates per message. */
  maxPiggybackBytes: number;
  /** Lifeguard on (awareness, dynamic suspicion, buddy system) or off (plain SWIM), for comparison. */
  lifeguard: boolean;
  /** How long `leave()` waits for the news to spread. */
  leaveWaitMs: number;
  /** Most members the table holds, self included; news of new members past it is dropped and counted. */
  maxMembers: number;
}

/** memberlist's LAN defaults, and ebb's choices where memberlist has none. */
export const DEFAULT_SWIM_CONFIG: SwimConfig = {
  probeIntervalMs: 1_000, // failure check every second
  probeTimeoutMs: 500, // direct ack expected within half a second
  indirectChecks: 3, // k = 3 helpers for indirect probes
  gossipIntervalMs: 200, // gossip 5 times a second...
  gossipNodes: 3, // ...to 3 members
  suspicionMult: 4, // suspicion: 4 * log10(n) probe intervals at least
  suspicionMaxTimeoutMult: 6, // and up to 6x that without confirmations
  retransmitMult: 4, // each update sent 4 * ceil(log10(n + 1)) times
  pushPullIntervalMs: 30_000, // full anti-entropy every 30 s (digest first)
  reconnectIntervalMs: 2_000, // reach for a dead member every 2 s (heals partitions: what a healed member missed arrives whole, not by gossip spent while it was cut off)
  gossipToTheDeadMs: 30_000, // dead members still hear gossip for 30 s
  deadReclaimMs: 300_000, // dead and left members are forgotten after 5 min
  awarenessMax: 8, // timeouts stretch up to 9x on an unhealthy member
  maxPiggybackBytes: 1_200, // updates ride on pings and acks up to ~1.2 KB
  lifeguard: true,
  leaveWaitMs: 300, // leave() lets its news spread for 300 ms
  maxMembers: 10_000, // EBB_SWIM_MAX_MEMBERS: a bound on the member table, so gossip cannot fill memory
};
