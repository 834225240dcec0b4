import { Awareness } from "./awareness.ts";
import { BroadcastQueue } from "./broadcast-queue.ts";
import { MAX_INCARNATION, MAX_INCARNATION_STEP, MAX_UPDATES_PER_MESSAGE } from "./schema.ts";
import { baseSuspicionMs, retransmitLimit, Suspicion } from "./suspicion.ts";
import { digestOf, StateSync, updateBytes } from "./sync.ts";
import {
  type Clock,
  DEFAULT_SWIM_CONFIG,
  type Member,
  type MemberEvent,
  type MemberEventType,
  type MemberMeta,
  type MemberStatus,
  type SwimConfig,
  type SwimMessage,
  type SwimTransport,
  type TimerHandle,
  type Update,
} from "./types.ts";

/** A timer this late means the member itself stalled: its silence-based judgments are suspect. */
const LATE_TIMER_MS = 50;
/**
 * A verdict held (the suspect talked to us since it was suspected, or we are the unhealthy one, whose
 * refutations arrive late: TCP on a lossy link backs off for seconds) waits up to this many times the
 * longest suspicion; a bound, since the word "from" is not proof without a cluster key.
 */
const HOLD_MULT = 4;

/** A helper asked to probe indirectly gives up (and nacks) after this share of the probe timeout (Lifeguard's 80%). */
const HELPER_TIMEOUT_SHARE = 0.8;

/** Options of a `Membership`. */
export interface MembershipOptions {
  id: string;
  /** `host:port` others use to reach this member. */
  addr: string;
  meta: MemberMeta;
  clock: Clock;
  transport: SwimTransport;
  config?: Partial<SwimConfig>;
  /** A source of randomness in [0, 1); seeded in the simulator. */
  random?: () => number;
  onEvent?(event: MemberEvent): void;
  /** A step that threw (a timer, a reply, a listener): reported here, and the membership carries on. */
  onError?(error: unknown, where: string): void;
}

/** What the membership refused, for metrics. */
export interface MembershipStats {
  /** News of new members dropped because the table was full (`maxMembers`). */
  overCap: number;
  /** Alive claims that would have moved a live member to another address. */
  addressConflicts: number;
  /** Updates that would have raised a live member's incarnation (or ours) by more than MAX_INCARNATION_STEP. */
  incarnationJumps: number;
}

/** The highest incarnation this member takes: one above any accusation (see MAX_INCARNATION). */
const MAX_OWN_INCARNATION = MAX_INCARNATION + 1;

interface MemberState {
  id: string;
  addr: string;
  inc: number;
  status: MemberStatus;
  meta: MemberMeta;
  since: number;
  suspicion?: Suspicion;
  suspicionTimer?: TimerHandle;
  /** This suspicion was sent to the suspect itself on hearing from it (see tellSuspect). */
  toldSuspect?: boolean;
  /** When we last told it (see tellSuspect). */
  toldAt?: number;
}

/**
 * SWIM with Lifeguard: a pure state machine. Time and network come in through
 * `clock` and `transport`, so the same code runs in a node and, a thousand at
 * a time, in the simulator.
 */
export class Membership {
  readonly id: string;
  readonly config: SwimConfig;
  private readonly clock: Clock;
  private readonly transport: SwimTransport;
  private readonly random: () => number;
  private readonly onEvent: (event: MemberEvent) => void;
  private readonly onError: (error: unknown, where: string) => void;
  /** What the membership refused. */
  readonly stats: MembershipStats = { overCap: 0, addressConflicts: 0, incarnationJumps: 0 };
  private readonly conflictsReported = new Set<string>();
  private readonly awareness: Awareness;
  private readonly queue: BroadcastQueue<Update>;
  private readonly members = new Map<string, MemberState>();
  /** Members that can be probed and gossiped to (alive or suspect, not self), for O(1) random picks. */
  private live: MemberState[] = [];
  private liveIndex = new Map<string, number>();
  private probeOrder: string[] = [];
  /** Members declared dead, oldest first, still within gossipToTheDeadMs. */
  private recentlyDead: MemberState[] = [];
  private probeCursor = 0;
  private readonly self: MemberState;
  private timers: TimerHandle[] = [];
  private probeTimer: TimerHandle | undefined;
  private running = false;
  private leaving = false;
  /** When another member last suspected us (we refuted): a sign that we, not they, are the lossy one. */
  private accusedAt: number | undefined;
  private readonly sync: StateSync;

  constructor(options: MembershipOptions) {
    this.id = options.id;
    this.config = { ...DEFAULT_SWIM_CONFIG, ...options.config };
    this.clock = options.clock;
    this.transport = options.transport;
    this.random = options.random ?? Math.random;
    this.onEvent = options.onEvent ?? (() => {});
    this.onError = options.onError ?? (() => {});
    this.awareness = new Awareness(this.config.lifeguard ? this.config.awarenessMax : 0);
    this.queue = new BroadcastQueue(() => retransmitLimit(this.config.retransmitMult, this.members.size));
    // A restarted member starts above any incarnation its previous life reached in the same second or before.
    this.self = { id: options.id, addr: options.addr, inc: Math.floor(this.clock.now() / 1000), status: "alive", meta: options.meta, since: this.clock.now() };
    this.members.set(this.self.id, this.self);
    this.sync = new StateSync(
      {
        id: this.id,
        isRunning: () => this.running,
        updates: () => this.updates(),
        digest: () => this.digest(),
        merge: (updates, from) => this.merge(updates, true, from),
        addressOf: (id) => {
          const member = this.members.get(id);
          return member && member !== this.self ? member.addr : undefined;
        },
        guard: (where, fn) => this.guard(where, fn),
      },
      this.transport,
      this.clock,
      this.config.probeIntervalMs,
      MAX_UPDATES_PER_MESSAGE,
    );
  }

  /** Every known member, self included. */
  list(): Member[] {
    return [...this.members.values()].map(view);
  }

  /** One member by id. */
  get(id: string): Member | undefined {
    const state = this.members.get(id);
    return state && view(state);
  }

  /** Members alive or suspect, other than self. */
  get liveCount(): number {
    return this.live.length;
  }

  /** Lifeguard's local health score (0 is healthy). */
  get healthScore(): number {
    return this.awareness.score;
  }

  /** True once a seed answered (or there were none to ask). */
  get hasJoined(): boolean {
    return this.sync.hasJoined;
  }

  /** Order-independent digest of the whole view, for cheap anti-entropy. */
  digest(): number {
    return digestOf(this.members.values());
  }

  /** Starts probing and gossiping, and joins through `seeds` (addresses); retries them until one answers. */
  start(seeds: string[] = []): void {
    if (this.running) return;
    this.running = true;
    this.queueUpdate(this.self);
    this.scheduleProbe(this.config.probeIntervalMs * this.random());
    this.every(this.config.gossipIntervalMs, () => this.gossip());
    this.every(this.config.pushPullIntervalMs, () => {
      const peer = this.randomLive(1)[0];
      if (peer) this.sync.pushPull(peer.addr);
    });
    this.every(this.config.reconnectIntervalMs, () => this.reconnect());
    this.sync.start(seeds.filter((s) => s !== this.self.addr));
  }

  /** Changes this member's metadata: raises the incarnation and pushes the news to every member, then gossip carries it. */
  updateMeta(meta: MemberMeta): void {
    this.self.meta = meta;
    this.bumpSelf(this.self.inc + 1);
    this.announce(this.toUpdate(this.self));
  }

  /** Leaves gracefully: announces `left` to every member and stops after the news had `leaveWaitMs` to spread. Idempotent. */
  leave(done?: () => void): void {
    if (this.leaving) {
      done?.();
      return;
    }
    this.leaving = true;
    this.bumpSelf(this.self.inc + 1);
    this.self.status = "left";
    this.announce(this.toUpdate(this.self));
    this.clock.setTimer(this.config.leaveWaitMs, () => {
      this.stop();
      this.guard("leave", () => done?.());
    });
  }

  /** Stops every timer; answers nothing more. Idempotent. */
  stop(): void {
    this.running = false;
    this.probeTimer?.cancel();
    for (const timer of this.timers) timer.cancel();
    this.timers = [];
    for (const member of this.members.values()) member.suspicionTimer?.cancel();
  }

  /** Raises local health awareness by `delta` (the node's event-loop lag monitor calls this). */
  reportLag(delta: number): void {
    if (this.config.lifeguard) this.awareness.apply(delta);
  }

  /**
   * Handles a message from another member, already parsed (src/membership/schema.ts);
   * `reply` answers every request (ping, ping-req, sync) exactly once.
   */
  handle(message: SwimMessage, reply: (answer: SwimMessage) => void): void {
    const nack = () => reply({ t: "nack", from: this.id });
    if (!this.running && message.t !== "sync") {
      if (message.t === "ping" || message.t === "ping-req") nack();
      return;
    }
    this.tellSuspect(message.from);
    switch (message.t) {
      case "ping":
        if (message.u) this.merge(message.u, false, message.from);
        if (message.target === this.id) reply({ t: "ack", from: this.id, u: this.piggyback() });
        else nack();
        return;
      case "ping-req": {
        if (message.u) this.merge(message.u, false, message.from);
        // Indirect probes go only to a member we know and believe live, at the address we know
        // for it: a ping-req cannot make this node connect to an address of the sender's choosing.
        const target = this.members.get(message.target);
        if (!target || target === this.self || (target.status !== "alive" && target.status !== "suspect")) {
          nack();
          return;
        }
        // Lifeguard: a helper nacks within 80% of the probe timeout, so the nack reaches the asker
        // before it gives up; a nack that arrived too late would count as missed and raise the
        // asker's health score, as if it were the slow one, whenever a third member is lossy.
        const helperTimeoutMs = Math.floor(this.config.probeTimeoutMs * HELPER_TIMEOUT_SHARE);
        this.transport.request(target.addr, { t: "ping", from: this.id, target: target.id, u: this.piggyback() }, helperTimeoutMs, (answer) => {
          if (answer?.t === "ack") {
            this.guard("ping-req reply", () => answer.u && this.merge(answer.u, false, answer.from));
            reply({ t: "ack", from: this.id });
          } else nack();
        });
        return;
      }
      case "gossip":
        this.merge(message.u, false, message.from);
        return;
      case "sync":
        this.sync.answer(message, reply);
        return;
      case "ack":
      case "nack":
        return;
    }
  }

  // ---- joining and anti-entropy -------------------------------------------------------------

  /** Heals partitions: reach for a random dead member with a full exchange; alone, go back to the seeds. */
  private reconnect(): void {
    this.reap();
    if (this.live.length === 0 && this.sync.hasSeeds) {
      this.sync.rejoin();
      return;
    }
    const dead = [...this.members.values()].filter((m) => m.status === "dead");
    if (dead.length === 0) return;
    const target = dead[Math.floor(this.random() * dead.length)]!;
    this.sync.exchange(target.addr);
  }

  private reap(): void {
    const now = this.clock.now();
    for (const member of this.members.values()) {
      if ((member.status === "dead" || member.status === "left") && now - member.since > this.config.deadReclaimMs) {
        this.members.delete(member.id);
        if (!this.isAddressInUse(member.addr)) this.transport.forget?.(member.addr);
      }
    }
  }

  /** The view as updates, self first. */
  private *updates(): Iterable<Update> {
    yield this.toUpdate(this.self);
    for (const member of this.members.values()) if (member !== this.self) yield this.toUpdate(member);
  }

  private isAddressInUse(addr: string): boolean {
    for (const member of this.members.values()) if (member.addr === addr) return true;
    return false;
  }

  // ---- probing ---------------------------------------------------------------------------------

  private scheduleProbe(ms: number): void {
    if (!this.running) return;
    this.probeTimer = this.clock.setTimer(ms, () => {
      try {
        this.probe();
      } catch (error) {
        // One failed step must not end failure detection: report it and probe again next interval.
        this.onError(error, "probe");
        this.scheduleProbe(this.config.probeIntervalMs);
      }
    });
  }

  private nextProbeTarget(): MemberState | undefined {
    for (let tries = 0; tries < 2; tries++) {
      while (this.probeCursor < this.probeOrder.length) {
        const member = this.members.get(this.probeOrder[this.probeCursor++]!);
        if (member && member !== this.self && (member.status === "alive" || member.status === "suspect")) return member;
      }
      // A full round done: shuffle again (SWIM's round-robin over a random order).
      this.probeOrder = this.live.map((m) => m.id);
      shuffle(this.probeOrder, this.random);
      this.probeCursor = 0;
    }
    return undefined;
  }

  private probe(): void {
    if (!this.running) return;
    const interval = this.awareness.scale(this.config.probeIntervalMs);
    const target = this.nextProbeTarget();
    if (!target) {
      this.scheduleProbe(interval);
      return;
    }
    const started = this.clock.now();
    let rearmed = false;
    const next = () => {
      if (rearmed) return;
      rearmed = true;
      this.scheduleProbe(Math.max(0, interval - (this.clock.now() - started)));
    };
    const u = this.piggyback();
    // Buddy system: a suspect hears of it on our very next probe, so it can refute at once.
    if (this.config.lifeguard && target.status === "suspect") u.unshift(this.toUpdate(target));
    const timeoutMs = this.awareness.scale(this.config.probeTimeoutMs);
    this.transport.request(target.addr, { t: "ping", from: this.id, target: target.id, u }, timeoutMs, (answer) => {
      if (answer?.t === "ack") {
        this.awareness.apply(-1);
        this.guard("ack", () => answer.u && this.merge(answer.u, false, answer.from));
        next();
        return;
      }
      if (this.ranLate(started, timeoutMs)) {
        next();
        return;
      }
      try {
        this.indirectProbe(target, started, interval, next);
      } catch (error) {
        this.onError(error, "probe");
        next();
      }
    });
  }

  private indirectProbe(target: MemberState, started: number, interval: number, next: () => void): void {
    const helpers = this.randomLive(this.config.indirectChecks, target);
    if (helpers.length === 0) {
      this.guard("probe", () => this.probeFailed(target, 0, 0));
      next();
      return;
    }
    let pending = helpers.length;
    let nacks = 0;
    let settled = false;
    const waitMs = Math.max(this.awareness.scale(this.config.probeTimeoutMs), interval - (this.clock.now() - started));
    for (const helper of helpers) {
      this.transport.request(helper.addr, { t: "ping-req", from: this.id, target: target.id, addr: target.addr, u: this.piggyback() }, waitMs, (answer) => {
        if (settled) return;
        if (answer?.t === "ack") {
          settled = true;
          next();
          return;
        }
        if (answer?.t === "nack") nacks++;
        if (--pending === 0) {
          settled = true;
          this.guard("probe", () => !this.ranLate(started, interval + waitMs) && this.probeFailed(target, helpers.length, nacks));
          next();
        }
      });
    }
  }

  /**
   * Lifeguard: a timeout that fires well after it was due means this member
   * stalled (a pause, a starved event loop), so silence from others proves
   * nothing. Raise local health instead of accusing anyone.
   */
  private ranLate(started: number, expectedMs: number): boolean {
    if (!this.config.lifeguard) return false;
    if (this.clock.now() - started <= expectedMs + LATE_TIMER_MS) return false;
    this.awareness.apply(1);
    return true;
  }

  private probeFailed(target: MemberState, expectedNacks: number, nacks: number): void {
    // Lifeguard: helpers that did not even nack suggest we are the slow one.
    if (this.config.lifeguard) this.awareness.apply(expectedNacks > 0 ? expectedNacks - nacks : 1);
    if (target.status === "alive" || target.status === "suspect") {
      this.merge([{ id: target.id, addr: target.addr, inc: target.inc, status: "suspect", by: this.id }], false);
    }
  }

  // ---- gossip ----------------------------------------------------------------------------------

  private gossip(): void {
    if (this.queue.size === 0) return;
    const targets = this.randomLive(this.config.gossipNodes);
    const now = this.clock.now();
    // Recently dead members still hear gossip, so one that was wrongly declared dead can refute.
    while (this.recentlyDead.length > 0 && (this.recentlyDead[0]!.status !== "dead" || now - this.recentlyDead[0]!.since >= this.config.gossipToTheDeadMs)) {
      this.recentlyDead.shift();
    }
    if (this.recentlyDead.length > 0) {
      const pick = this.recentlyDead[Math.floor(this.random() * this.recentlyDead.length)]!;
      if (pick.status === "dead") targets.push(pick);
    }
    for (const target of targets) {
      const u = this.queue.take(this.config.maxPiggybackBytes);
      if (u.length === 0) return;
      this.transport.send(target.addr, { t: "gossip", from: this.id, u });
    }
  }

  private piggyback(): Update[] {
    return this.queue.take(this.config.maxPiggybackBytes);
  }

  /** Queues news for gossip and pushes it straight to every member we know. */
  private announce(update: Update): void {
    this.queue.push({ key: update.id, item: update, bytes: updateBytes(update) });
    for (const member of this.live) this.transport.send(member.addr, { t: "gossip", from: this.id, u: [update] });
  }

  private queueUpdate(member: MemberState, by?: string): void {
    const update = this.toUpdate(member);
    if (by !== undefined) update.by = by;
    this.queue.push({ key: member.id, item: update, bytes: updateBytes(update) });
  }

  // ---- merging news ----------------------------------------------------------------------------

  /** `from`: the member that sent the message, as it says; only a member itself can say it left. */
  private merge(updates: Update[], viaSync: boolean, from?: string): void {
    for (const update of updates) {
      if (update.id === this.id) this.aboutSelf(update);
      else this.apply(update, viaSync, from);
    }
  }

  /** Raises this member's incarnation to `inc`, never past MAX_OWN_INCARNATION. */
  private bumpSelf(inc: number): void {
    this.self.inc = Math.min(Math.max(this.self.inc, inc), MAX_OWN_INCARNATION);
  }

  /**
   * Buddy system, on any contact: a member we suspect that talks to us hears of it at once, so it
   * can refute. After a partition heals, the cut-off member's suspicions of the others outlive it
   * (its gossip about them was spent while nothing got through, and its own probes are stretched
   * by its health score), and only the suspect can end them. Once per suspicion. The same for a
   * member we hold dead: after a heal, the cut-off member's dead verdicts about the others are
   * ended at its first contact with them, not at its next reach for a dead member (every 2 s).
   */
  private tellSuspect(from: string): void {
    const member = this.members.get(from);
    if (!this.config.lifeguard || (member?.status !== "suspect" && member?.status !== "dead")) return;
    // Once a probe interval, not once a suspicion: right after a heal the first telling, or the refutation
    // it brings, may be lost on a connection still stuck from the partition.
    const now = this.clock.now();
    if (member.toldSuspect && member.toldAt !== undefined && now - member.toldAt < this.config.probeIntervalMs) return;
    member.toldSuspect = true;
    member.toldAt = now;
    this.transport.send(member.addr, { t: "gossip", from: this.id, u: [{ ...this.toUpdate(member), by: this.id }] });
  }

  private aboutSelf(update: Update): void {
    if (this.leaving) return;
    const stale = update.status === "alive" ? update.inc > this.self.inc : update.inc >= this.self.inc;
    if (!stale || this.jumps(this.self, update.inc)) return;
    // Someone holds an older life of ours, or suspects us: refute with a higher incarnation.
    if (update.status !== "alive" && this.config.lifeguard) {
      this.awareness.apply(1);
      this.accusedAt = this.clock.now();
    }
    this.bumpSelf(update.inc + 1);
    // Refutations race suspicion timers all over the cluster: push them to every member at once.
    this.announce(this.toUpdate(this.self));
  }

  /** True (and counted) when `inc` raises a live member's incarnation further than one honest update can. */
  private jumps(member: MemberState, inc: number): boolean {
    if (member.status !== "alive" && member.status !== "suspect") return false;
    if (inc - member.inc <= MAX_INCARNATION_STEP) return false;
    this.stats.incarnationJumps++;
    return true;
  }

  private apply(update: Update, viaSync: boolean, from?: string): void {
    const local = this.members.get(update.id);
    const now = this.clock.now();
    if (local && this.jumps(local, update.inc)) return;
    switch (update.status) {
      case "alive": {
        if (!local) {
          if (!update.meta) return;
          if (this.members.size >= this.config.maxMembers) {
            this.stats.overCap++;
            return;
          }
          const member: MemberState = { id: update.id, addr: update.addr, inc: update.inc, status: "alive", meta: update.meta, since: now };
          this.members.set(member.id, member);
          this.addLive(member);
          this.queueUpdate(member);
          this.emit("join", member);
          return;
        }
        if (update.inc <= local.inc) return;
        const wasGone = local.status === "dead" || local.status === "left";
        if (!wasGone && update.addr !== local.addr) {
          // Gossip alone never moves a live member to another address (memberlist refuses such
          // conflicts too): a restart elsewhere is taken once the old life is dead or left. One
          // exception: a member we suspect (it stopped answering where we knew it) that tells us
          // itself, in its own message, that it lives elsewhere: a restart whose `left` we missed
          // (we joined while it drained). Waiting for our verdict on the old life would hide the new
          // one from our view, and from every client that asks us, for the whole suspicion.
          const movedItself = local.status === "suspect" && from === update.id;
          if (!movedItself) {
            this.stats.addressConflicts++;
            this.guard("address conflict", () => this.onAddressConflict(local, update));
            return;
          }
          this.closeConnection(local);
        }
        const wasSuspect = local.status === "suspect";
        this.clearSuspicion(local);
        local.inc = update.inc;
        local.addr = update.addr;
        if (update.meta) local.meta = update.meta;
        local.status = "alive";
        if (wasGone || wasSuspect) local.since = now;
        this.addLive(local);
        this.queueUpdate(local);
        this.emit(wasGone ? "join" : "update", local);
        return;
      }
      case "suspect":
        this.suspect(local, update.inc, update.by ?? "unknown", now);
        return;
      case "dead":
      case "left": {
        if (!local || update.inc < local.inc) return;
        if (local.status === "dead" || local.status === "left") return;
        if (update.status === "dead" || from !== update.id) {
          // A dead verdict, or a `left` not said by the member itself, may be stale, a partition's
          // or a forgery: it is never taken outright. The member is suspected and has its chance
          // to refute; one that is really gone answers no probe and is declared dead by our own
          // timer. Someone's suspicion already ran out, so a new one runs the shortest timeout,
          // not the longest; a running one counts the verdict as one more confirmation (Lifeguard),
          // which can never bring it under the shortest timeout from its start: a burst of stale
          // news (suspect, then dead, a millisecond apart) cannot cut a fresh suspicion to nothing.
          const by = update.by ?? from ?? (viaSync ? "sync" : "gossip");
          this.suspect(local, update.inc, by, now, true);
          return;
        }
        this.clearSuspicion(local);
        local.inc = update.inc;
        local.status = update.status;
        local.since = now;
        this.removeLive(local);
        this.closeConnection(local);
        this.queueUpdate(local);
        this.emit(update.status, local);
        return;
      }
    }
  }

  private suspect(local: MemberState | undefined, inc: number, by: string, now: number, wasDead = false): void {
    if (!local || inc < local.inc) return;
    if (local.status === "suspect" && inc === local.inc) {
      // Lifeguard: each independent confirmation shortens the suspicion.
      if (local.suspicion?.confirm(by) && this.config.lifeguard) {
        this.armSuspicion(local);
        this.queueUpdate(local, by);
      }
      return;
    }
    if (local.status !== "alive" && !(local.status === "suspect" && inc > local.inc)) return;
    const n = this.members.size;
    const minMs = baseSuspicionMs(this.config.suspicionMult, n, this.config.probeIntervalMs);
    const maxMs = this.config.lifeguard && !wasDead ? minMs * this.config.suspicionMaxTimeoutMult : minMs;
    const k = this.config.lifeguard && n - 2 >= this.config.suspicionMult - 2 ? this.config.suspicionMult - 2 : 0;
    this.clearSuspicion(local);
    local.inc = inc;
    local.status = "suspect";
    local.toldSuspect = false;
    local.since = now;
    local.suspicion = new Suspicion(now, k, minMs, maxMs, by);
    this.armSuspicion(local);
    this.queueUpdate(local, by);
    this.emit("suspect", local);
  }

  /**
   * Others suspected us within the longest suspicion: the fault is likelier ours. (Not the health score:
   * it rises on both sides of a real partition, whose verdicts must still come.)
   */
  private unhealthy(): boolean {
    return this.accusedAt !== undefined && this.clock.now() - this.accusedAt < this.longestSuspicionMs();
  }

  /** Lifeguard's longest suspicion timeout in a cluster of this size. */
  private longestSuspicionMs(): number {
    return baseSuspicionMs(this.config.suspicionMult, this.members.size, this.config.probeIntervalMs) * this.config.suspicionMaxTimeoutMult;
  }

  /** Arms the verdict timer: after `delayMs` (a final grace), or when the suspicion runs out; `held` re-judges after `delayMs` instead. */
  private armSuspicion(member: MemberState, delayMs?: number, held = false): void {
    member.suspicionTimer?.cancel();
    const suspicion = member.suspicion!;
    const inc = member.inc;
    const waitMs = delayMs ?? suspicion.remainingMs(this.clock.now());
    const due = this.clock.now() + waitMs;
    const final = held ? undefined : delayMs;
    member.suspicionTimer = this.clock.setTimer(waitMs, () => this.guard("suspicion", () => this.suspicionDue(member, inc, due, final)));
  }

  private suspicionDue(member: MemberState, inc: number, due: number, delayMs: number | undefined): void {
    if (member.status !== "suspect" || member.inc !== inc || !this.running) return;
    if (this.config.lifeguard && delayMs === undefined) {
      if (this.clock.now() - due > LATE_TIMER_MS) {
        // This timer ran late: we were the stalled one, and the refutation may be waiting
        // unread. Local health awareness: judge again once we have caught up.
        this.awareness.apply(1);
        this.armSuspicion(member, this.awareness.scale(this.config.probeIntervalMs));
      } else if ((this.unhealthy() || member.toldSuspect) && this.clock.now() - member.since < this.longestSuspicionMs() * HOLD_MULT) {
        // On time, but the suspect has talked to us since we suspected it (it lives: its refutation
        // is on its way), or others suspected us lately (we are likely the lossy one, whose
        // refutations arrive late). Hold the verdict and judge again
        // a probe interval later, up to HOLD_MULT times the longest suspicion; healthy members still
        // judge a member that really died.
        this.armSuspicion(member, this.awareness.scale(this.config.probeIntervalMs), true);
      } else if (this.clock.now() - member.since < this.awareness.scale(member.suspicion!.minMs)) {
        // Our own health is poor (helpers' nacks missed, timers late, accusations refuted): as our
        // probe timeouts stretch by (score + 1), so does the shortest time from suspicion to verdict.
        // A lossy member that hears nothing for a while blames itself before it blames the others,
        // and a member cut off alone holds the others suspect rather than dead (a cap of 3x was
        // tried: the cut-off member's verdicts then fell around a 20 s partition's heal, before it
        // had heard anyone, in 4 of 6 runs). The price: a survivor whose peers all died scores like
        // a lossy member and judges them after up to 9x the shortest suspicion (a suspect is out of
        // every client's rotation meanwhile).
        this.armSuspicion(member, this.awareness.scale(this.config.probeIntervalMs), true);
      } else {
        // On time: still give the messages already waiting for us one turn to be read.
        this.armSuspicion(member, LATE_TIMER_MS);
      }
      return;
    }
    member.suspicion = undefined;
    member.suspicionTimer = undefined;
    member.status = "dead";
    // If it talks to us again, it hears of its death at once, so it can refute (a healed partition).
    member.toldSuspect = false;
    member.since = this.clock.now();
    this.removeLive(member);
    this.recentlyDead.push(member);
    this.closeConnection(member);
    this.queueUpdate(member);
    this.emit("dead", member);
  }

  /**
   * Closes the pooled connection to a member declared dead or gone: it may be stuck in TCP
   * retransmission back-off, and what we send it from now on (gossip to the dead, partition
   * healing) should go on a fresh one. Kept when a live member has the same address.
   */
  private closeConnection(member: MemberState): void {
    for (const other of this.live) if (other !== member && other.addr === member.addr) return;
    this.transport.forget?.(member.addr);
  }

  private clearSuspicion(member: MemberState): void {
    member.suspicionTimer?.cancel();
    member.suspicionTimer = undefined;
    member.suspicion = undefined;
  }

  // ---- bookkeeping -----------------------------------------------------------------------------

  private addLive(member: MemberState): void {
    if (this.liveIndex.has(member.id)) return;
    this.liveIndex.set(member.id, this.live.length);
    this.live.push(member);
    // A newcomer is probed within this round, at a random place among those not yet probed.
    this.probeOrder.push(member.id);
    const last = this.probeOrder.length - 1;
    const at = this.probeCursor + Math.floor(this.random() * (last - this.probeCursor + 1));
    [this.probeOrder[at], this.probeOrder[last]] = [this.probeOrder[last]!, this.probeOrder[at]!];
  }

  private removeLive(member: MemberState): void {
    const index = this.liveIndex.get(member.id);
    if (index === undefined) return;
    const last = this.live.pop()!;
    if (last !== member) {
      this.live[index] = last;
      this.liveIndex.set(last.id, index);
    }
    this.liveIndex.delete(member.id);
  }

  private randomLive(count: number, exclude?: MemberState): MemberState[] {
    const pool = this.live;
    const out: MemberState[] = [];
    if (pool.length === 0) return out;
    const wanted = Math.min(count, pool.length - (exclude && this.liveIndex.has(exclude.id) ? 1 : 0));
    let guard = 0;
    while (out.length < wanted && guard++ < wanted * 8) {
      const pick = pool[Math.floor(this.random() * pool.length)]!;
      if (pick !== exclude && !out.includes(pick)) out.push(pick);
    }
    return out;
  }

  private every(ms: number, fn: () => void): void {
    const slot = this.timers.length;
    const tick = () => {
      if (!this.running) return;
      // Re-armed first: a step that throws is reported and the loop goes on.
      this.timers[slot] = this.clock.setTimer(ms, tick);
      this.guard("timer", fn);
    };
    // Spread the first tick so members started together do not beat in step.
    this.timers.push(this.clock.setTimer(ms * this.random(), tick));
  }

  private toUpdate(member: MemberState): Update {
    return { id: member.id, addr: member.addr, inc: member.inc, status: member.status, meta: member.meta };
  }

  private emit(type: MemberEventType, member: MemberState): void {
    this.guard("event listener", () => this.onEvent({ type, member: view(member) }));
  }

  /** Reported once per member (up to a bound), not once per gossiped copy. */
  private onAddressConflict(local: MemberState, update: Update): void {
    if (this.conflictsReported.has(local.id) || this.conflictsReported.size >= 1_024) return;
    this.conflictsReported.add(local.id);
    this.onError(new Error(`Member "${local.id}" is live at "${local.addr}": its move to "${update.addr}" is ignored`), "address conflict");
  }

  /** Runs `fn`; an exception is reported, never thrown into a timer or a transport callback. */
  private guard(where: string, fn: () => unknown): void {
    try {
      fn();
    } catch (error) {
      try {
        this.onError(error, where);
      } catch {
        // The reporter itself failed: nothing more to do.
      }
    }
  }
}

function view(state: MemberState): Member {
  return { id: state.id, addr: state.addr, incarnation: state.inc, status: state.status, meta: state.meta, since: state.since };
}

function shuffle<T>(items: T[], random: () => number): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
}
