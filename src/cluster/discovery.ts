import { type Logger, silentLogger } from "../log.ts";
import type { Member, MemberEvent } from "../membership/types.ts";
import type { Clock, TimerHandle } from "../runtime/clock.ts";
import { RpcError } from "../rpc/errors.ts";
import { parseMemberList } from "../membership/schema.ts";
import type { Endpoint, EndpointTable } from "./endpoints.ts";

/** Where the client learns about nodes. */
export interface MembershipView {
  members(): Member[];
  onMemberEvent(listener: (event: MemberEvent) => void): () => void;
}

/** Where a client's nodes come from: exactly what `ClusterClientOptions` says. */
export interface DiscoveryOptions {
  /** Nodes to ask for the member list (`$members`), every `refreshMs`. */
  seeds?: string[];
  /** Fixed node addresses. */
  addresses?: string[];
  /** A node's own membership view. */
  membership?: MembershipView;
  refreshMs: number;
  clock: Clock;
  /** Asks the node at `addr` for its member list. */
  membersFrom(addr: string): Promise<Member[]>;
  /** The table changed, or a refresh reached no node. */
  onChange(): void;
  /** Debug lines: each list taken (and from where) and each node that failed to give one. */
  log?: Logger;
  /**
   * Seeds mode: subscribes to a connected node's membership changes (`$watch`), resolving with its
   * member list and a promise that resolves when the watch ends (its connection closed); the
   * changes then come to `changed`. Without it (or with nodes that do not offer `$watch`)
   * discovery polls every `refreshMs`.
   */
  watch?(endpoint: Endpoint): Promise<{ members: Member[]; ended: Promise<void> }>;
  /** The poll's interval while a watch runs: a safety net for what one node's view misses. Default 60 s. */
  watchRefreshMs?: number;
  /** How long after a watch begins the poll keeps its `refreshMs` pace (WATCH_SETTLE_MS). */
  watchSettleMs?: number;
}

/** Changes kept that a watched node sent before its `$watch` answer was taken (more: the next poll catches up). */
const MAX_EARLY_CHANGES = 1_024;

/**
 * For this long after a watch begins, the poll keeps its fast pace (asking the connected nodes in
 * turn): the watched node's own view may be partial (a node just restarted, not yet told of every
 * member), and during a rolling restart one such view must not be the client's only source.
 */
export const WATCH_SETTLE_MS = 10_000;

/** Default of `DiscoveryOptions.watchRefreshMs`. */
export const WATCH_REFRESH_MS = 60_000;

/** Most addresses of members discovery remembers, to ask when every seed is gone. */
const MAX_LEARNED = 64;
/** Refreshes in a row a learned address may fail to answer before it is forgotten (while lists come from elsewhere). */
const MAX_LEARNED_FAILURES = 5;
/**
 * Member lists in a row that shared no member with the table before one is believed: a seed's
 * address may now belong to a node of another cluster (a port or an IP reused), whose list would
 * replace ours; but a cluster replaced whole while this client looked away must be taken at last.
 */
const MAX_STRANGER_LISTS = 5;

/**
 * Keeps an endpoint table filled: from a membership view (on every member
 * event), from seeds (asking the nodes already connected first, then the
 * seeds, for `$members`), or from static addresses (once).
 */
export class Discovery {
  /** Why the last member-list refresh reached no node, if it did not. */
  error: RpcError | undefined;
  private timer: TimerHandle | undefined;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  /**
   * Addresses of live members seen in member lists, newest first: asked after the seeds, which a
   * rolling restart may all replace. Kept across lists (one node's list may leave live members out)
   * and across failures: a client that forgot every address that failed to answer once (a moment of
   * CPU starvation, a refresh during a restart) could lose the cluster for good. An address is
   * dropped when a list says it is dead or left, or once it has failed MAX_LEARNED_FAILURES refreshes
   * in a row and a list was taken since. At most MAX_LEARNED, the oldest dropped first.
   */
  private learned: { addr: string; failures: number }[] = [];
  /** Refreshes so far: which connected node is asked first turns with it. */
  private rounds = 0;
  /** Member lists in a row that shared no member with the table (see MAX_STRANGER_LISTS). */
  private strangerLists = 0;
  /** The refresh under way, which a timer tick or a caller joins rather than start another. */
  private refreshing: Promise<void> | undefined;
  private readonly log: Logger;
  /** The node whose membership changes this client watches (`$watch`), while its connection lasts. */
  private watched: Endpoint | undefined;
  /** When the watch began (client clock). */
  private watchedSince = 0;
  /** A watch being set up. */
  private watching: Promise<void> | undefined;
  /** A node answered `$watch` METHOD_NOT_FOUND (an older node): polling only, from then on. */
  private watchUnsupported = false;
  /** The node asked for a watch, and the changes it sent before its answer was taken (they may come in the same read). */
  private pendingWatch: { endpoint: Endpoint; early: unknown[][] } | undefined;

  constructor(
    private readonly table: EndpointTable,
    private readonly options: DiscoveryOptions,
  ) {
    this.log = options.log ?? silentLogger;
  }

  /** Static addresses and no membership: no other node can turn up. */
  get isStatic(): boolean {
    return !this.options.seeds?.length && !this.options.membership;
  }

  /** Fills the table for the first time and keeps it up to date. */
  start(): void {
    const { membership, addresses, seeds, clock } = this.options;
    if (membership) {
      this.apply(membership.members());
      this.unsubscribe = membership.onMemberEvent(() => this.apply(membership.members()));
    }
    for (const addr of addresses ?? []) this.table.upsert(addr, addr, undefined, true, clock.now());
    if (seeds?.length) {
      void this.refresh();
      this.schedule();
    }
  }

  /**
   * Arms the next poll: after `refreshMs`, or `watchRefreshMs` while a watch runs (changes then come
   * as they happen, and the poll only backs the watch up). Re-armed when a watch ends, so that a
   * poll 60 s away does not leave the client blind.
   */
  private schedule(): void {
    this.timer?.cancel();
    if (this.stopped) return;
    const settled = this.watched !== undefined && this.options.clock.now() - this.watchedSince >= (this.options.watchSettleMs ?? WATCH_SETTLE_MS);
    const interval = settled ? Math.max(this.options.refreshMs, this.options.watchRefreshMs ?? WATCH_REFRESH_MS) : this.options.refreshMs;
    this.timer = this.options.clock.setTimer(interval, () => {
      this.schedule();
      void this.refresh();
    });
  }

  /**
   * Asks the connected nodes, then the seeds, then the learned addresses (those answering lately
   * first) for the member list; the first answer wins. One refresh at a time: a call while one is
   * under way joins it.
   */
  refresh(): Promise<void> {
    return (this.refreshing ??= this.askAround().finally(() => (this.refreshing = undefined)));
  }

  private async askAround(): Promise<void> {
    if (this.stopped) return;
    const known = [...this.table.values()].filter((e) => !e.gone && e.channel && !e.channel.closed && e.channel.goaway === undefined).map((e) => e.addr);
    // The connected nodes take turns to be asked first: one whose view is partial (started and ready
    // before its join was answered, or starved) must not be the only voice the client hears.
    const turn = known.length > 0 ? this.rounds++ % known.length : 0;
    const learned = [...this.learned].sort((x, y) => x.failures - y.failures).map((l) => l.addr);
    const ask = new Set([...known.slice(turn), ...known.slice(0, turn), ...(this.options.seeds ?? []), ...learned]);
    for (const addr of ask) {
      if (this.stopped) return;
      try {
        const members = await this.options.membersFrom(addr);
        if (this.stopped) return;
        // A node not yet (or no longer) in a membership knows of no one, itself included: no answer.
        if (members.length === 0) throw new RpcError(`The node at ${addr} answered an empty member list`, "UNAVAILABLE");
        if (!this.related(members) && ++this.strangerLists < MAX_STRANGER_LISTS) {
          this.error = new RpcError(`The member list from ${addr} shares no member with this client's view: a node of another cluster?`, "UNAVAILABLE");
          this.log.debug("member list passed over", { from: addr, reason: this.error.rawMessage });
          continue;
        }
        this.strangerLists = 0;
        this.error = undefined;
        this.log.debug("member list", { from: addr, members: members.map((m) => `${m.id}@${m.addr} ${m.status} ${m.meta.state}`) });
        this.apply(members, true);
        this.learn(members);
        void this.watch();
        return;
      } catch (error) {
        // Try the next one; remember why, for the error of a call that finds no node.
        this.error = RpcError.from(error, "UNAVAILABLE");
        for (const l of this.learned) if (l.addr === addr) l.failures++;
        this.log.debug("no member list", { from: addr, error: this.error.rawMessage });
      }
    }
    this.log.debug("member list refresh reached no node", { asked: [...ask] });
    this.options.onChange();
  }

  /**
   * Watches a connected node's membership (`$watch`) when none is watched: its member list is taken
   * as a refresh's, its changes come to `changed`. When its connection closes, the poll takes over at
   * once and the next list taken starts a watch on another node (a fresh snapshot: nothing is missed).
   */
  private watch(): Promise<void> {
    const watch = this.options.watch;
    if (!watch || this.watched || this.watchUnsupported || this.stopped) return Promise.resolve();
    return (this.watching ??= (async () => {
      // A node the client is connected to, else any ready one (the watch opens the connection).
      const usable = [...this.table.values()].filter((e) => !e.gone && e.ready && e.channel?.goaway === undefined);
      const connected = usable.filter((e) => e.channel && !e.channel.closed);
      const choices = connected.length > 0 ? connected : usable;
      const endpoint = choices[this.rounds % Math.max(1, choices.length)];
      if (!endpoint) return;
      const pending = (this.pendingWatch = { endpoint, early: [] });
      try {
        const { members, ended } = await watch(endpoint);
        this.pendingWatch = undefined;
        if (this.stopped || endpoint.gone || !endpoint.channel || endpoint.channel.closed) return;
        this.watched = endpoint;
        this.watchedSince = this.options.clock.now();
        this.log.debug("watching membership", { on: endpoint.addr, members: members.length });
        if (members.length > 0 && this.related(members)) {
          this.apply(members, true);
          this.learn(members);
        }
        // Changes sent right after the answer, read before it was taken: after the list, in order.
        for (const params of pending.early) this.changed(params, endpoint);

        void ended.then(() => {
          if (this.watched !== endpoint) return;
          this.watched = undefined;
          this.log.debug("membership watch ended: polling", { on: endpoint.addr });
          this.schedule();
          void this.refresh();
        });
      } catch (error) {
        this.pendingWatch = undefined;
        const rpcError = RpcError.from(error, "UNAVAILABLE");
        if (rpcError.code === "METHOD_NOT_FOUND") this.watchUnsupported = true;
        this.log.debug("no membership watch", { on: endpoint.addr, error: rpcError.rawMessage });
      }
    })().finally(() => (this.watching = undefined)));
  }

  /** A `$watch` notification from `from`'s connection: one member changed, as that node sees it. */
  changed(params: unknown[], from: Endpoint): void {
    if (this.pendingWatch?.endpoint === from && this.pendingWatch.early.length < MAX_EARLY_CHANGES) {
      this.pendingWatch.early.push(params);
      return;
    }
    if (from !== this.watched || this.stopped) return;
    const event = params[0];
    const member = typeof event === "object" && event !== null ? (event as { member?: unknown }).member : undefined;
    const [parsed] = parseMemberList([member]) ?? [];
    if (!parsed) {
      this.log.debug("malformed $watch notification dropped", { from: from.addr });
      return;
    }
    this.table.change(parsed, this.options.clock.now());
    // The learned addresses, kept by hand here: learn() walks the whole table, too much for every change.
    this.learned = this.learned.filter((l) => l.addr !== parsed.addr);
    if (parsed.status === "alive" || parsed.status === "suspect") this.learned = [{ addr: parsed.addr, failures: 0 }, ...this.learned].slice(0, MAX_LEARNED);
    this.options.onChange();
  }

  /** Stops refreshing and listening to the membership view. */
  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.unsubscribe?.();
  }

  /** The list names a member the table knows, or the table knows none. */
  private related(members: Member[]): boolean {
    const known = new Set<string>();
    for (const e of this.table.values()) if (!e.gone) known.add(e.id);
    return known.size === 0 || members.some((m) => known.has(m.id));
  }

  /**
   * Named alive: first, and answering; named dead or left: dropped; one that failed to answer
   * MAX_LEARNED_FAILURES refreshes in a row: dropped. Left out of one list, it stays: a node whose view
   * is partial leaves live members out. Run after the list is applied: an address the table still
   * holds (its connection answering, whatever the list says) stays too.
   */
  private learn(members: Member[]): void {
    const live = new Set(members.filter((m) => m.status === "alive" || m.status === "suspect").map((m) => m.addr));
    for (const e of this.table.values()) if (!e.gone) live.add(e.addr);
    const gone = new Set(members.filter((m) => m.status === "dead" || m.status === "left").map((m) => m.addr));
    const kept = this.learned.filter((l) => !live.has(l.addr) && !gone.has(l.addr) && l.failures < MAX_LEARNED_FAILURES);
    this.learned = [...[...live].map((addr) => ({ addr, failures: 0 })), ...kept].slice(0, MAX_LEARNED);
  }

  /** A membership view is this node's own; a `$members` answer is one node's, perhaps partial. */
  private apply(members: Member[], partial = false): void {
    this.table.apply(members, this.options.clock.now(), partial);
    this.options.onChange();
  }
}
