import type { Member } from "../membership/types.ts";
import { errorText } from "../error-text.ts";
import { RpcError } from "../rpc/errors.ts";
import { warmupWeight } from "./balancer.ts";
import type { OutlierState } from "./outliers.ts";

/** What the endpoint table needs of a connection (a `Channel` in the client, a fake in tests). */
export interface Connection {
  /** The reason of the server's `$goaway`, once it sent one. */
  readonly goaway: string | undefined;
  readonly closed: boolean;
  close(): void;
  /** Resolves once no call is in flight. */
  whenIdle(): Promise<void>;
}

/** One node as this client sees it. */
export interface Endpoint<C extends Connection = Connection> extends OutlierState {
  id: string;
  addr: string;
  services: string[] | undefined;
  ready: boolean;
  /** Client-local time the node was last seen becoming ready: the start of its warm-up. */
  readySince: number | undefined;
  inflight: number;
  channel: C | undefined;
  connecting: Promise<C> | undefined;
  /** Not eligible before this time (a connection attempt failed). */
  backoffUntil: number;
  backoffMs: number;
  /** Why the last connection attempt failed (a refused port, a TLS handshake), for "no node to call" errors; cleared on connect. */
  connectError?: string;
  /** Client-local time a call to the node that later succeeded was sent: the client's own evidence that the node lives. */
  answeredAt?: number;
  /** Member lists in a row that left the node out (see OMITTED_LISTS). */
  omitted?: number;
  /** The node's id as its `$info` says, once asked: a static address's endpoint is named by its address. */
  nodeId?: string;
  gone: boolean;
}

export const BACKOFF_MIN_MS = 100;
export const BACKOFF_MAX_MS = 5_000;
/**
 * How recent a call the node answered must be for the client to trust its own
 * connection over one member's word that the node is dead, left or unknown.
 */
export const ANSWERED_TRUST_MS = 1_000;
/**
 * Member lists in a row that must leave a node out before it is retired, and only while the client
 * has no open connection to it. A member that left or died is listed so (`left`, `dead`) for minutes;
 * left out is what a node whose view is partial says (one that went ready before its join was
 * answered knows only itself), and one such list must not empty the table.
 */
export const OMITTED_LISTS = 3;
/** Most nodes a table holds: past it, members it does not know are not taken (a bound on what a node's list or watch can make a client hold). */
export const MAX_ENDPOINTS = 4_096;

/** Options of the endpoint table. */
export interface EndpointTableOptions {
  /** Ramp of a node's share after it became ready. */
  warmupMs: number;
  /** Weight of a node at the start of its warm-up. */
  warmupFloor: number;
  /** Static addresses: ready when reachable, kept when a member list leaves them out. */
  addresses?: readonly string[];
}

/**
 * The nodes a client knows: member lists and static addresses in, eligible
 * candidates and their weights out, with connection backoff bookkeeping.
 * Pure but for the clock reading its callers pass as `now`.
 */
export class EndpointTable<C extends Connection = Connection> {
  private readonly byId = new Map<string, Endpoint<C>>();
  private readonly staticAddresses: ReadonlySet<string>;

  constructor(private readonly options: EndpointTableOptions) {
    this.staticAddresses = new Set(options.addresses ?? []);
  }

  get size(): number {
    return this.byId.size;
  }

  values(): IterableIterator<Endpoint<C>> {
    return this.byId.values();
  }

  /** Adds or updates a node; a known id at a new address is a restarted node and starts afresh. */
  upsert(id: string, addr: string, services: string[] | undefined, ready: boolean, now: number): Endpoint<C> {
    let endpoint = this.byId.get(id);
    if (endpoint && endpoint.addr !== addr) {
      this.retire(endpoint);
      endpoint = undefined;
    }
    if (!endpoint) {
      endpoint = { id, addr, services, ready: false, readySince: undefined, inflight: 0, channel: undefined, connecting: undefined, backoffUntil: 0, backoffMs: 0, gone: false, faults: 0, ejectedUntil: 0, ejections: 0 };
      this.byId.set(id, endpoint);
    }
    endpoint.gone = false;
    endpoint.services = services;
    if (ready && !endpoint.ready) {
      endpoint.readySince = now;
      // A new life (a restart on the same address): what the client held against the old one is forgotten.
      endpoint.faults = endpoint.ejections = endpoint.ejectedUntil = 0;
      // Ready again after a drain on the same address (a restart there, or a stale list naming the draining node
      // ready): the old connection said goaway, so new calls get a new one; the calls on it finish first, as the
      // node answers every call it read (closing it now cancelled them: seen in a rolling restart).
      const old = endpoint.channel;
      if (old?.goaway !== undefined) {
        endpoint.channel = undefined;
        void old.whenIdle().then(() => old.close());
      }
    }
    if (!ready) endpoint.readySince = this.staticAddresses.has(addr) ? endpoint.readySince : undefined;
    endpoint.ready = ready;
    return endpoint;
  }

  /** Forgets a node; its connection closes once the calls in flight on it are done. */
  retire(endpoint: Endpoint<C>): void {
    if (endpoint.gone) return;
    endpoint.gone = true;
    endpoint.ready = false;
    const channel = endpoint.channel;
    if (channel) void channel.whenIdle().then(() => channel.close());
    if (this.byId.get(endpoint.id) === endpoint) this.byId.delete(endpoint.id);
  }

  /**
   * Brings the table in line with a member list: alive members are added or
   * updated; a member listed dead or left (at the address the table has) is
   * retired, unless the client's own connection to it says otherwise; one left
   * out (without static addresses) too, but when the list is `partial` (one
   * node's answer to `$members`, not this node's own membership view) only after
   * OMITTED_LISTS such lists in a row, and never while connected.
   * A member list is one node's view, and a node starved of CPU may call every
   * other node dead: a client that trusted it would forget live nodes, and
   * could lose the whole cluster once that node restarts elsewhere. So an
   * endpoint whose open connection has not said `$goaway` and answered a call
   * within ANSWERED_TRUST_MS stays as it is; a node that really died stops
   * answering, and the next list retires it.
   */
  apply(members: readonly Member[], now: number, partial = false): void {
    const seen = new Set<string>();
    for (const member of members) {
      seen.add(member.id);
      this.change(member, now, partial);
    }
    if (this.staticAddresses.size === 0) {
      for (const endpoint of this.byId.values()) {
        if (seen.has(endpoint.id)) endpoint.omitted = 0;
        else if (!partial) {
          if (!this.answering(endpoint, now)) this.retire(endpoint);
        } else if ((endpoint.omitted = (endpoint.omitted ?? 0) + 1) >= OMITTED_LISTS && !this.isConnected(endpoint)) this.retire(endpoint);
      }
    }
  }

  /**
   * One member as a list or a watched node's event (`partial`: one node's view) tells of it, the
   * others untouched: alive and ready is callable; dead or left is retired, at that address only.
   */
  change(member: Member, now: number, partial = true): void {
    const known = this.byId.get(member.id);
    if (!known && this.byId.size >= MAX_ENDPOINTS) return;
    if (member.status === "dead" || member.status === "left") {
      // At another address it is an earlier life of a node that restarted there: news of the old one is not news of this one.
      if (known && known.addr === member.addr && !this.answering(known, now)) this.retire(known);
      return;
    }
    // Suspect in one node's view (perhaps a lossy node's, which suspects everyone): usable still while
    // the client's own connection answers; in this node's own membership view, a suspect is not used.
    const usable = member.meta.state === "ready" && (member.status === "alive" || (partial && known !== undefined && this.answering(known, now)));
    this.upsert(member.id, member.addr, member.meta.services, usable, now);
  }

  /** An open connection to the node that has not said `$goaway`. */
  private isConnected(endpoint: Endpoint<C>): boolean {
    return endpoint.channel !== undefined && !endpoint.channel.closed && endpoint.channel.goaway === undefined;
  }

  /** The client's own evidence that the node lives: an open connection, no `$goaway`, a call answered lately. */
  private answering(endpoint: Endpoint<C>, now: number): boolean {
    const channel = endpoint.channel;
    return this.isConnected(endpoint) && endpoint.answeredAt !== undefined && now - endpoint.answeredAt <= ANSWERED_TRUST_MS;
  }

  /** Nodes a call to `service` may go to now: ready, not tried, not backing off, not draining, offering it. */
  eligible(service: string | undefined, tried: ReadonlySet<Endpoint<C>> | undefined, now: number, ejectedToo = false): Endpoint<C>[] {
    const out: Endpoint<C>[] = [];
    for (const e of this.byId.values()) {
      if (e.gone || !e.ready || tried?.has(e) || e.backoffUntil > now || (e.ejectedUntil > now && !ejectedToo)) continue;
      if (e.channel?.goaway !== undefined) continue;
      if (service !== undefined && e.services !== undefined && !e.services.includes(service)) continue;
      out.push(e);
    }
    return out;
  }

  /** The node's share in the balancer: the floor until first seen ready, then the warm-up ramp. */
  weight(endpoint: Endpoint<C>, now: number): number {
    const { warmupMs, warmupFloor } = this.options;
    return endpoint.readySince === undefined ? warmupFloor : warmupWeight(endpoint.readySince, now, warmupMs, warmupFloor);
  }

  /** The earliest end of a backoff (a failed connection, a pushback) still running, if any. */
  nextBackoffEnd(now: number): number | undefined {
    let next: number | undefined;
    for (const e of this.byId.values()) if (!e.gone && e.backoffUntil > now && (next === undefined || e.backoffUntil < next)) next = e.backoffUntil;
    return next;
  }

  /** Nodes ejected now (outlier ejection), and nodes that could be called but for that: the share is of those. */
  ejectedCount(now: number): { ejected: number; total: number } {
    let ejected = 0;
    let total = 0;
    for (const e of this.byId.values()) {
      // Not ready, or backing off from a failed connection (a static address that is down): not callable anyway.
      if (e.gone || !e.ready || (e.backoffUntil > now && e.ejectedUntil <= now)) continue;
      total++;
      if (e.ejectedUntil > now) ejected++;
    }
    return { ejected, total };
  }

  /** A connection to the node opened: backoff resets; a static address starts its warm-up on first reach. */
  connected(endpoint: Endpoint<C>, now: number): void {
    endpoint.backoffMs = 0;
    endpoint.connectError = undefined;
    if (this.staticAddresses.has(endpoint.addr) && endpoint.readySince === undefined) endpoint.readySince = now;
  }

  /** A connection attempt failed: the node sits out 100 ms, doubling per failure up to 5 s. */
  connectFailed(endpoint: Endpoint<C>, now: number, error?: unknown): void {
    if (error !== undefined) endpoint.connectError = error instanceof RpcError ? error.rawMessage : errorText(error);
    endpoint.backoffMs = Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_MIN_MS, endpoint.backoffMs * 2));
    endpoint.backoffUntil = now + endpoint.backoffMs;
  }

  /** The error of a call that found no node to call, saying why. */
  noCandidate(service: string | undefined, tried: ReadonlySet<Endpoint<C>>, discoveryError: RpcError | undefined): RpcError {
    const all = [...this.byId.values()].filter((e) => !e.gone);
    const offering = all.filter((e) => service === undefined || e.services === undefined || e.services.includes(service));
    const what = service === undefined ? "nodes" : `nodes offering "${service}"`;
    let why: string;
    if (all.length === 0 && discoveryError?.code === "UNAUTHENTICATED") return discoveryError;
    if (all.length === 0) why = discoveryError ? `no node is known (asking the seeds for members failed: ${discoveryError.rawMessage})` : "no node is known";
    else if (offering.length === 0) why = `no member offers the service "${service}"`;
    else if (offering.every((e) => e.channel?.goaway !== undefined || !e.ready)) why = `all ${offering.length} ${what} are draining or not ready`;
    else if (tried.size > 0) {
      const addrs = [...tried].map((e) => e.addr);
      const reason = [...tried].find((e) => e.connectError !== undefined)?.connectError;
      why = `every one of the ${what} refused or could not be reached (tried ${addrs.slice(0, 3).join(", ")}${addrs.length > 3 ? ` and ${addrs.length - 3} more` : ""})${reason ? `; last connection error: ${reason}` : ""}`;
    }
    else why = `none of the ${offering.length} ${what} is reachable`;
    return new RpcError(`No node to call: ${why}`, "UNAVAILABLE", { processed: false });
  }
}
