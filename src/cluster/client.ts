import { type Logger, silentLogger } from "../log.ts";
import { parseMemberList } from "../membership/schema.ts";
import { splitAddress } from "../runtime/address.ts";
import type { Member, MemberEvent } from "../membership/types.ts";
import { type CallOptions, Channel, DEFAULT_CALL_TIMEOUT_MS, type Transport } from "../rpc/channel.ts";
import { createClient, type ServiceClient } from "../rpc/client.ts";
import type { ServiceContract } from "../rpc/contract.ts";
import { RpcError } from "../rpc/errors.ts";
import { detectRuntime } from "../runtime/detect.ts";
import type { Runtime } from "../runtime/types.ts";
import type { ErrorCode } from "../wire/codes.ts";
import { pickTwoChoices, warmupWeight } from "./balancer.ts";

/** Where the client learns about nodes. */
export interface MembershipView {
  members(): Member[];
  onMemberEvent(listener: (event: MemberEvent) => void): () => void;
}

/** Options of `createClusterClient`. */
export interface ClusterClientOptions {
  /** Discovery: nodes to ask for the member list (`$members`), refreshed every `refreshMs`. */
  seeds?: string[];
  /** Static mode: fixed node addresses, no membership. */
  addresses?: string[];
  /** A node's own membership view (what `node.client()` uses). */
  membership?: MembershipView;
  runtime?: Runtime;
  log?: Logger;
  /** Ramp of a node's share after this client first saw it ready. Default 10 s. */
  warmupMs?: number;
  /** Weight of a node at the start of its warm-up. Default 0.1. */
  warmupFloor?: number;
  /** Member-list refresh interval in seeds mode. Default 1 s. */
  refreshMs?: number;
  /** Deadline of calls that set none. Default 30 s. */
  timeoutMs?: number;
  /** Retry calls of idempotent methods whose connection was lost mid-call. Default true. */
  idempotentRetries?: boolean;
  /** How long a call waits for a candidate to appear before failing UNAVAILABLE. Default 1 s. */
  candidateWaitMs?: number;
  maxMessageBytes?: number;
  /** EBB_CLUSTER_KEY of the cluster: every connection proves it. */
  clusterKey?: string;
}

/** Counters the client keeps. */
export interface ClusterClientMetrics {
  calls: number;
  /** Calls that failed, by the code the caller saw. */
  errors: Partial<Record<ErrorCode, number>>;
  /** Transparent retries by reason: baffled (SHUTTING_DOWN), overloaded, not ready, unreachable, connection lost (idempotent). */
  retries: Record<string, number>;
  /** Calls in flight per node id. */
  inflight: Record<string, number>;
  /** Calls sent to each node id (tries, retries included). */
  sentByNode: Record<string, number>;
}

interface Endpoint {
  id: string;
  addr: string;
  services: string[] | undefined;
  ready: boolean;
  readySince: number | undefined;
  inflight: number;
  channel: Channel | undefined;
  connecting: Promise<Channel> | undefined;
  backoffUntil: number;
  backoffMs: number;
  gone: boolean;
}

/** A seed's `$members` answer, parsed: a malformed one fails this discovery like an unreachable seed. */
function memberList(value: unknown, addr: string): Member[] {
  const members = parseMemberList(value);
  if (!members) throw new RpcError(`Member list from "${addr}" is malformed`, "UNAVAILABLE");
  return members;
}

/** The service a method belongs to; undefined for ebb's own `$` methods, which every node offers. */
export function serviceOf(method: string): string | undefined {
  const dot = method.indexOf(".");
  return method.startsWith("$") || dot < 0 ? undefined : method.slice(0, dot);
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5_000;

/**
 * Calls a cluster: finds nodes (membership, seeds or static addresses),
 * balances by power of two choices with warm-up, and retries at once on
 * another node whatever a node promised it did not process.
 */
export class ClusterClient implements Transport {
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly idempotent = new Set<string>();
  private readonly options: Required<Omit<ClusterClientOptions, "seeds" | "addresses" | "membership" | "runtime" | "log" | "clusterKey">>;
  private readonly log: Logger;
  private runtime: Runtime | undefined;
  private refreshTimer: ReturnType<typeof setInterval> | undefined;
  private unsubscribe: (() => void) | undefined;
  private waiters: (() => void)[] = [];
  private closed = false;
  /** About 55 random bits in base 36, then "-": ids stay unique across clients. */
  private readonly idPrefix = `${crypto.getRandomValues(new Uint32Array(2)).reduce((text, word) => text + word.toString(36).padStart(7, "0"), "").slice(0, 12)}-`;
  private idCounter = 0;
  /** Why the last member-list refresh reached no node, if it did not. */
  private discoveryError: RpcError | undefined;
  private readonly stats: ClusterClientMetrics = { calls: 0, errors: {}, retries: {}, inflight: {}, sentByNode: {} };

  constructor(private readonly source: ClusterClientOptions) {
    this.runtime = source.runtime;
    this.log = source.log ?? silentLogger;
    this.options = {
      warmupMs: source.warmupMs ?? 10_000,
      warmupFloor: source.warmupFloor ?? 0.1,
      refreshMs: source.refreshMs ?? 1_000,
      timeoutMs: source.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
      idempotentRetries: source.idempotentRetries ?? true,
      candidateWaitMs: source.candidateWaitMs ?? 1_000,
      maxMessageBytes: source.maxMessageBytes ?? 8 * 1024 * 1024,
    };
    if (source.membership) {
      this.apply(source.membership.members());
      this.unsubscribe = source.membership.onMemberEvent(() => this.apply(source.membership!.members()));
    }
    for (const addr of source.addresses ?? []) this.upsert(addr, addr, undefined, true);
    if (source.seeds?.length) {
      void this.refresh();
      this.refreshTimer = setInterval(() => void this.refresh(), this.options.refreshMs);
    }
  }

  /** A typed client of one service over this cluster; its idempotent methods may be retried after a lost connection. */
  client<C extends ServiceContract>(contract: C): ServiceClient<C> {
    for (const [method, spec] of Object.entries(contract.methods)) {
      if (spec.idempotent) this.idempotent.add(`${contract.name}.${method}`);
    }
    return createClient(contract, this);
  }

  /** Counters: calls, errors by code, retries by reason, in flight per node. */
  metrics(): ClusterClientMetrics {
    const inflight: Record<string, number> = {};
    for (const e of this.endpoints.values()) if (e.inflight > 0) inflight[e.id] = e.inflight;
    return { calls: this.stats.calls, errors: { ...this.stats.errors }, retries: { ...this.stats.retries }, inflight, sentByNode: { ...this.stats.sentByNode } };
  }

  /** Nodes this client may call now: ids and weights, for tools and tests. */
  candidates(service?: string): { id: string; addr: string; weight: number; inflight: number }[] {
    const now = Date.now();
    return this.eligible(service, new Set()).map((e) => ({ id: e.id, addr: e.addr, weight: this.weight(e, now), inflight: e.inflight }));
  }

  /** Resolves once at least `count` nodes offering `service` can be called; rejects after `timeoutMs`. */
  async whenAvailable(service: string | undefined, count = 1, timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.eligible(service, new Set()).length < count) {
      if (this.discoveryError?.code === "UNAUTHENTICATED" && this.endpoints.size === 0) throw this.discoveryError;
      if (this.closed || Date.now() >= until) throw new RpcError(`Fewer than ${count} nodes offering "${service ?? "$"}" within ${timeoutMs} ms`, "UNAVAILABLE", { processed: false });
      await this.changed(until - Date.now());
    }
  }

  /** Calls `method` on some node; see the class comment for the retry rules. */
  async call(method: string, input: unknown, options: CallOptions = {}): Promise<unknown> {
    this.stats.calls++;
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    const service = serviceOf(method);
    // The nodes this call already tried; allocated on the first retry only.
    let tried: Set<Endpoint> | undefined;
    const requestId = options.requestId ?? this.nextRequestId();
    for (;;) {
      // The hot path stays synchronous: a node to call now, on an open connection.
      const endpoint = this.pick(service, tried) ?? (await this.choose(service, (tried ??= new Set()), deadline, options.signal));
      if (!endpoint) return this.fail(this.noCandidate(service, tried ?? new Set()));
      let channel: Channel;
      try {
        channel = endpoint.channel && !endpoint.channel.closed ? endpoint.channel : await this.connect(endpoint);
      } catch (error) {
        // A key mismatch is the same on every node: say so rather than try them all.
        if (error instanceof RpcError && error.code === "UNAUTHENTICATED") return this.fail(error);
        (tried ??= new Set()).add(endpoint);
        this.retried("unreachable");
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) return this.fail(new RpcError(`Deadline of ${timeoutMs} ms passed before "${method}" could be sent`, "DEADLINE_EXCEEDED"));
      endpoint.inflight++;
      this.stats.sentByNode[endpoint.id] = (this.stats.sentByNode[endpoint.id] ?? 0) + 1;
      try {
        return await channel.call(method, input, { timeoutMs: left, signal: options.signal, requestId });
      } catch (error) {
        const rpcError = RpcError.from(error);
        const reason = this.retryReason(rpcError, method);
        if (!reason) return this.fail(rpcError);
        (tried ??= new Set()).add(endpoint);
        this.retried(reason);
      } finally {
        endpoint.inflight--;
      }
    }
  }

  /**
   * A request id unique to this call, kept across its retries: this client's
   * random prefix and a counter. A third the length of a UUID, which matters
   * here: decoding a string costs the server about 13 ns per character.
   */
  private nextRequestId(): string {
    return `${this.idPrefix}${(this.idCounter++).toString(36)}`;
  }

  /** Closes every connection and stops discovery. */
  close(): void {
    this.closed = true;
    if (this.refreshTimer !== undefined) clearInterval(this.refreshTimer);
    this.unsubscribe?.();
    for (const endpoint of this.endpoints.values()) endpoint.channel?.close();
    this.wake();
  }

  // ---- choosing -----------------------------------------------------------------------------

  /** A node to call now, by weighted power of two choices; undefined when none is eligible. */
  private pick(service: string | undefined, tried: Set<Endpoint> | undefined): Endpoint | undefined {
    const candidates = this.eligible(service, tried);
    if (candidates.length <= 1) return candidates[0];
    const now = Date.now();
    return pickTwoChoices(candidates, (e) => this.weight(e, now));
  }

  /** Waits (up to `candidateWaitMs`) for a node to call when none is eligible now. */
  private async choose(service: string | undefined, tried: Set<Endpoint>, deadline: number, signal: AbortSignal | undefined): Promise<Endpoint | undefined> {
    const waitUntil = Math.min(deadline, Date.now() + this.options.candidateWaitMs);
    for (;;) {
      const picked = this.pick(service, tried);
      if (picked) return picked;
      if (this.closed || signal?.aborted || Date.now() >= waitUntil) return undefined;
      // The seeds refuse our cluster key: waiting changes nothing.
      if (this.discoveryError?.code === "UNAUTHENTICATED" && this.endpoints.size === 0) return undefined;
      // Static addresses, all tried by this call: no other node can turn up, so waiting cannot help.
      if (this.isStatic && tried.size >= this.endpoints.size) return undefined;
      // Nothing to call right now (a restart in progress): wait for the view to change.
      await this.changed(waitUntil - Date.now());
    }
  }

  private eligible(service: string | undefined, tried: Set<Endpoint> | undefined): Endpoint[] {
    const now = Date.now();
    const out: Endpoint[] = [];
    for (const e of this.endpoints.values()) {
      if (e.gone || !e.ready || tried?.has(e) || e.backoffUntil > now) continue;
      if (e.channel?.goaway !== undefined) continue;
      if (service !== undefined && e.services !== undefined && !e.services.includes(service)) continue;
      out.push(e);
    }
    return out;
  }

  private get isStatic(): boolean {
    return !this.source.seeds?.length && !this.source.membership;
  }

  private weight(endpoint: Endpoint, now: number): number {
    return endpoint.readySince === undefined ? this.options.warmupFloor : warmupWeight(endpoint.readySince, now, this.options.warmupMs, this.options.warmupFloor);
  }

  private noCandidate(service: string | undefined, tried: Set<Endpoint>): RpcError {
    const all = [...this.endpoints.values()].filter((e) => !e.gone);
    const offering = all.filter((e) => service === undefined || e.services === undefined || e.services.includes(service));
    const what = service === undefined ? "nodes" : `nodes offering "${service}"`;
    let why: string;
    if (all.length === 0 && this.discoveryError?.code === "UNAUTHENTICATED") return this.discoveryError;
    if (all.length === 0) why = this.discoveryError ? `no node is known (asking the seeds for members failed: ${this.discoveryError.rawMessage})` : "no node is known";
    else if (offering.length === 0) why = `no member offers the service "${service}"`;
    else if (offering.every((e) => e.channel?.goaway !== undefined || !e.ready)) why = `all ${offering.length} ${what} are draining or not ready`;
    else if (tried.size > 0) {
      const addrs = [...tried].map((e) => e.addr);
      why = `every one of the ${what} refused or could not be reached (tried ${addrs.slice(0, 3).join(", ")}${addrs.length > 3 ? ` and ${addrs.length - 3} more` : ""})`;
    }
    else why = `none of the ${offering.length} ${what} is reachable`;
    return new RpcError(`No node to call: ${why}`, "UNAVAILABLE", { processed: false });
  }

  private retryReason(error: RpcError, method: string): string | undefined {
    if (error.processed === false) {
      if (error.code === "SHUTTING_DOWN") return "baffled";
      if (error.code === "OVERLOADED") return "overloaded";
      if (error.code === "UNAVAILABLE") return "not ready";
      return "unprocessed";
    }
    // Outcome unknown: only a method declared idempotent may run again.
    if (error.code === "UNAVAILABLE" && this.options.idempotentRetries && this.idempotent.has(method)) return "connection lost (idempotent)";
    return undefined;
  }

  private retried(reason: string): void {
    this.stats.retries[reason] = (this.stats.retries[reason] ?? 0) + 1;
  }

  private fail(error: RpcError): never {
    this.stats.errors[error.code] = (this.stats.errors[error.code] ?? 0) + 1;
    throw error;
  }

  // ---- connections --------------------------------------------------------------------------

  private async connect(endpoint: Endpoint): Promise<Channel> {
    if (endpoint.channel && !endpoint.channel.closed) return endpoint.channel;
    endpoint.connecting ??= (async () => {
      this.runtime ??= await detectRuntime();
      const [host, port] = splitAddress(endpoint.addr);
      try {
        const channel = await Channel.connect(this.runtime, {
          host,
          port,
          maxMessageBytes: this.options.maxMessageBytes,
          clusterKey: this.source.clusterKey,
          log: this.log,
          onNotification: (method) => method === "$goaway" && this.wake(),
          onClose: () => {
            if (endpoint.channel === channel) endpoint.channel = undefined;
            this.wake();
          },
        });
        endpoint.channel = channel;
        endpoint.backoffMs = 0;
        // Static mode: ready when reachable; the warm-up runs from (re)connection.
        if (this.source.addresses?.includes(endpoint.addr) && endpoint.readySince === undefined) endpoint.readySince = Date.now();
        return channel;
      } catch (error) {
        endpoint.backoffMs = Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_MIN_MS, endpoint.backoffMs * 2));
        endpoint.backoffUntil = Date.now() + endpoint.backoffMs;
        throw error;
      } finally {
        endpoint.connecting = undefined;
      }
    })();
    return endpoint.connecting;
  }

  // ---- discovery ----------------------------------------------------------------------------

  private async refresh(): Promise<void> {
    if (this.closed) return;
    const known = [...this.endpoints.values()].filter((e) => !e.gone && e.channel && !e.channel.closed && e.channel.goaway === undefined);
    const ask = [...known.map((e) => e.addr), ...(this.source.seeds ?? [])];
    for (const addr of ask) {
      try {
        const members = await this.membersFrom(addr);
        this.discoveryError = undefined;
        this.apply(members);
        return;
      } catch (error) {
        // Try the next one; remember why, for the error of a call that finds no node.
        this.discoveryError = RpcError.from(error, "UNAVAILABLE");
      }
    }
    this.wake();
  }

  private async membersFrom(addr: string): Promise<Member[]> {
    const existing = [...this.endpoints.values()].find((e) => e.addr === addr && e.channel && !e.channel.closed);
    if (existing?.channel) return memberList(await existing.channel.call("$members", undefined, { timeoutMs: 2_000 }), addr);
    this.runtime ??= await detectRuntime();
    const [host, port] = splitAddress(addr);
    const channel = await Channel.connect(this.runtime, { host, port, clusterKey: this.source.clusterKey });
    try {
      return memberList(await channel.call("$members", undefined, { timeoutMs: 2_000 }), addr);
    } finally {
      channel.close();
    }
  }

  /** Brings endpoints in line with a member list. */
  private apply(members: Member[]): void {
    const seen = new Set<string>();
    for (const member of members) {
      seen.add(member.id);
      const usable = member.status === "alive" && member.meta.state === "ready";
      const endpoint = this.upsert(member.id, member.addr, member.meta.services, usable);
      if (member.status === "dead" || member.status === "left") this.retire(endpoint);
    }
    if (!this.source.addresses?.length) {
      for (const endpoint of this.endpoints.values()) if (!seen.has(endpoint.id)) this.retire(endpoint);
    }
    this.wake();
  }

  private upsert(id: string, addr: string, services: string[] | undefined, ready: boolean): Endpoint {
    let endpoint = this.endpoints.get(id);
    if (endpoint && endpoint.addr !== addr) {
      // Same id, new address: a restarted node. Start afresh.
      this.retire(endpoint);
      endpoint = undefined;
    }
    if (!endpoint) {
      endpoint = { id, addr, services, ready: false, readySince: undefined, inflight: 0, channel: undefined, connecting: undefined, backoffUntil: 0, backoffMs: 0, gone: false };
      this.endpoints.set(id, endpoint);
    }
    endpoint.gone = false;
    endpoint.services = services;
    if (ready && !endpoint.ready) {
      endpoint.readySince = Date.now();
      // Ready again after a drain on the same address: the old connection said goaway; use a new one.
      if (endpoint.channel?.goaway !== undefined) endpoint.channel.close();
    }
    if (!ready) endpoint.readySince = this.source.addresses?.includes(addr) ? endpoint.readySince : undefined;
    endpoint.ready = ready;
    return endpoint;
  }

  private retire(endpoint: Endpoint): void {
    if (endpoint.gone) return;
    endpoint.gone = true;
    endpoint.ready = false;
    const channel = endpoint.channel;
    // Calls in flight finish first; then the connection goes.
    if (channel) void channel.whenIdle().then(() => channel.close());
    if (this.endpoints.get(endpoint.id) === endpoint) this.endpoints.delete(endpoint.id);
  }

  private changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, ms));
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** Creates a client of a cluster from seeds, static addresses, or a node's membership view. */
export function createClusterClient(options: ClusterClientOptions): ClusterClient {
  if (!options.seeds?.length && !options.addresses?.length && !options.membership) {
    throw new Error("createClusterClient needs seeds, addresses or a membership view");
  }
  return new ClusterClient(options);
}
