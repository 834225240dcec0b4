import type { Clock, MemberMeta, MemberStatus, SwimMessage, SwimTransport, Update } from "./types.ts";

const STATUS_CODE: Record<MemberStatus, number> = { alive: 1, suspect: 2, dead: 3, left: 4 };

/** FNV-1a of a string, 32-bit. */
function fnv1a(text: string, seed = 0x811c9dc5): number {
  let hash = seed;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * An order-independent digest of a view: the XOR of each member's hash of
 * (id, incarnation, status). Equal digests mean, with high probability, equal
 * views, so anti-entropy sends 4 bytes instead of the whole table.
 */
export function digestOf(members: Iterable<{ id: string; inc: number; status: MemberStatus }>): number {
  let digest = 0;
  for (const m of members) digest ^= fnv1a(`${m.inc}:${STATUS_CODE[m.status]}`, fnv1a(m.id));
  return digest >>> 0;
}

const metaBytesCache = new WeakMap<MemberMeta, number>();

/** Approximate encoded size of metadata (msgpack is close to JSON's length for these shapes). */
export function metaBytes(meta: MemberMeta): number {
  let bytes = metaBytesCache.get(meta);
  if (bytes === undefined) {
    bytes = JSON.stringify(meta).length;
    metaBytesCache.set(meta, bytes);
  }
  return bytes;
}

/** Approximate encoded size of an update, for packing piggybacked gossip. */
export function updateBytes(update: Update): number {
  return 24 + update.id.length + update.addr.length + (update.meta ? metaBytes(update.meta) : 0) + (update.by?.length ?? 0);
}

/**
 * The whole view in pages of at most `perPage` updates, in the order given (self first),
 * so a state exchange stays well under the message limit however large the cluster.
 */
export function statePages(view: Iterable<Update>, perPage: number): Update[][] {
  const pages: Update[][] = [[]];
  for (const update of view) {
    if (pages[pages.length - 1]!.length >= perPage) pages.push([]);
    pages[pages.length - 1]!.push(update);
  }
  return pages;
}

/** What the state exchange needs from the member table it keeps in step. */
export interface SyncView {
  /** This member's id. */
  readonly id: string;
  /** True while the member runs (not stopped). */
  isRunning(): boolean;
  /** The view as updates, self first. */
  updates(): Iterable<Update>;
  /** Order-independent digest of the view (digestOf). */
  digest(): number;
  /** Merges a state received from member `from`. */
  merge(updates: Update[], from: string): void;
  /** Address of member `id` when it is known and not us. */
  addressOf(id: string): string | undefined;
  /** Runs `fn`, reporting rather than throwing what it throws. */
  guard(where: string, fn: () => unknown): void;
}

/**
 * Paged state exchange (memberlist's push/pull): joining through seeds, answering a
 * peer's sync, periodic anti-entropy by digest, and the full exchange that heals partitions.
 */
export class StateSync {
  private seeds: string[] = [];
  private joined = false;
  /** A join round is out, or waiting to retry. */
  private joining = false;
  /** Join rounds started. */
  private rounds = 0;

  constructor(
    private readonly view: SyncView,
    private readonly transport: SwimTransport,
    private readonly clock: Clock,
    /** Probe interval: a sync request waits twice this, a join retries after it. */
    private readonly probeIntervalMs: number,
    /** Most updates in one message (MAX_UPDATES_PER_MESSAGE, what a peer's schema accepts). */
    private readonly pageSize: number,
  ) {}

  /** True once a seed answered (or there were none to ask). */
  get hasJoined(): boolean {
    return this.joined;
  }

  /** True when there are seeds to go back to. */
  get hasSeeds(): boolean {
    return this.seeds.length > 0;
  }

  /** Joins through `seeds`, retrying them every probe interval until one answers. */
  start(seeds: string[]): void {
    this.seeds = seeds;
    if (this.seeds.length === 0) this.joined = true;
    else this.join();
  }

  /** Answers a peer's sync: merges its state, then replies same-digest or with our state. */
  answer(message: Extract<SwimMessage, { t: "sync" }>, reply: (answer: SwimMessage) => void): void {
    if (message.state) this.view.merge(message.state, message.from);
    if (message.push) return;
    if (!message.state && message.digest === this.view.digest()) {
      reply({ t: "sync", from: this.view.id, same: true });
      return;
    }
    // The first page answers; the rest follow as pushes to the asker, when we know where it is.
    const [first, ...rest] = this.pages();
    reply({ t: "sync", from: this.view.id, state: first! });
    const asker = this.view.addressOf(message.from);
    if (asker !== undefined && rest.length > 0) for (const page of rest) this.transport.send(asker, { t: "sync", from: this.view.id, state: page, push: true });
  }

  /** Alone: forget having joined and go back to the seeds. */
  rejoin(): void {
    // A join already retrying (every probe interval until a seed answers) is not doubled.
    if (this.joining) return;
    this.joined = false;
    this.join();
  }

  /** Anti-entropy with `addr`: digests first; when they differ, both sides get the other's state. */
  pushPull(addr: string): void {
    this.transport.request(addr, { t: "sync", from: this.view.id, digest: this.view.digest() }, this.probeIntervalMs * 2, (answer) => {
      if (answer?.t !== "sync" || !answer.state) return;
      this.view.merge(answer.state, answer.from);
      // Digests differed: the peer may miss what we know too.
      for (const page of this.pages()) this.transport.send(addr, { t: "sync", from: this.view.id, state: page, push: true });
    });
  }

  /** A full exchange with `addr` (a member believed dead), to heal a partition. */
  exchange(addr: string): void {
    this.transport.request(addr, { t: "sync", from: this.view.id, state: this.pages()[0]! }, this.probeIntervalMs * 2, (answer) => {
      if (answer?.t === "sync" && answer.state) this.view.merge(answer.state, answer.from);
    });
  }

  private join(): void {
    if (this.seeds.length === 0) return;
    this.joining = true;
    // A later round (a rejoin after this one joined) owns the retrying from then on.
    const round = ++this.rounds;
    let pending = this.seeds.length;
    for (const seed of this.seeds) {
      this.transport.request(seed, { t: "sync", from: this.view.id, join: true, state: this.pages()[0]! }, this.probeIntervalMs * 2, (answer) => {
        pending--;
        if (answer?.t === "sync" && answer.state) {
          this.joined = true;
          // Joined: a rejoin (alone again) may start a round at once, whatever other seeds still owe us.
          this.joining = false;
          this.view.guard("join reply", () => this.view.merge(answer.state!, answer.from));
        }
        if (pending > 0 || round !== this.rounds) return;
        // No seed answered: try again after a probe interval.
        if (!this.joined && this.view.isRunning()) this.clock.setTimer(this.probeIntervalMs, () => (this.view.isRunning() && !this.joined ? this.join() : (this.joining = false)));
        else if (!this.joined) this.joining = false;
      });
    }
  }

  private pages(): Update[][] {
    return statePages(this.view.updates(), this.pageSize);
  }
}
