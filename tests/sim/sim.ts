/**
 * A virtual-time simulator: N members of the real membership state machine in
 * one process, over a simulated network with delay, TCP-like loss (retransmit
 * delay and the occasional reset), partitions, crashes and stalls; optionally over
 * pooled TCP-like connections that stay stuck through a partition.
 */
import { encode } from "@msgpack/msgpack";
import { Membership } from "../../src/membership/membership.ts";
import type { Clock, MemberEvent, MemberMeta, SwimConfig, SwimMessage, SwimTransport, TimerHandle } from "../../src/membership/types.ts";

/** A seeded PRNG (mulberry32): the same seed gives the same run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Event {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** Virtual time: a binary heap of events, run in time order. */
export class Scheduler {
  now = 0;
  private heap: Event[] = [];
  private seq = 0;
  /** Events run so far. */
  processed = 0;

  at(time: number, fn: () => void): Event {
    const event: Event = { at: Math.max(time, this.now), seq: this.seq++, fn, cancelled: false };
    const heap = this.heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (before(heap[parent]!, event)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = event;
    return event;
  }

  /** Runs events until virtual time `until` (inclusive). */
  runUntil(until: number): void {
    const heap = this.heap;
    while (heap.length > 0 && heap[0]!.at <= until) {
      const event = this.pop();
      if (event.cancelled) continue;
      this.now = event.at;
      this.processed++;
      event.fn();
    }
    this.now = Math.max(this.now, until);
  }

  private pop(): Event {
    const heap = this.heap;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      const n = heap.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const child = r < n && before(heap[r]!, heap[l]!) ? r : l;
        if (before(last, heap[child]!)) break;
        heap[i] = heap[child]!;
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }
}

function before(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** Network conditions. */
export interface NetworkOptions {
  /** One-way delay range in ms. */
  minDelayMs: number;
  maxDelayMs: number;
  /** Per-message loss: modelled as TCP would see it, a retransmission after `rtoMs` (doubling), or rarely a reset. */
  loss: number;
  rtoMs: number;
  /** Of lost messages, the share that ends in a connection reset (the message never arrives). */
  resetShare: number;
}

export const LAN: NetworkOptions = { minDelayMs: 0.2, maxDelayMs: 2, loss: 0, rtoMs: 200, resetShare: 0.02 };

/** Linux's ceiling on the TCP retransmission timeout (TCP_RTO_MAX). */
const MAX_RTO_MS = 120_000;

/**
 * One direction of a simulated TCP connection: bytes arrive in order, and bytes
 * sent while the path is cut wait in the send queue, retransmitted with
 * exponential back-off, so they (and everything queued behind them) arrive only
 * at the first retransmission after the path heals — seconds late, all at once.
 */
class Direction {
  private readonly queue: (() => void)[] = [];
  private rtoMs: number;
  private retransmitting = false;
  /** When the last message on this direction arrives (in-order delivery). */
  private lastArrival = 0;

  constructor(
    private readonly net: { scheduler: Scheduler; reachable(): boolean; delay(): number | undefined },
    private readonly baseRtoMs: number,
  ) {
    this.rtoMs = baseRtoMs;
  }

  /** Sends one message; `arrive` runs when (and if) it reaches the other end. */
  send(arrive: () => void): void {
    if (this.queue.length > 0 || !this.net.reachable()) {
      this.queue.push(arrive);
      this.armRetransmit();
      return;
    }
    this.transmit(arrive);
  }

  private transmit(arrive: () => void): void {
    const delay = this.net.delay();
    if (delay === undefined) return;
    const scheduler = this.net.scheduler;
    this.lastArrival = Math.max(scheduler.now + delay, this.lastArrival);
    scheduler.at(this.lastArrival, arrive);
  }

  private armRetransmit(): void {
    if (this.retransmitting) return;
    this.retransmitting = true;
    const scheduler = this.net.scheduler;
    const attempt = () => {
      if (!this.net.reachable()) {
        this.rtoMs = Math.min(this.rtoMs * 2, MAX_RTO_MS);
        scheduler.at(scheduler.now + this.rtoMs, attempt);
        return;
      }
      this.retransmitting = false;
      this.rtoMs = this.baseRtoMs;
      for (const arrive of this.queue.splice(0)) this.transmit(arrive);
    };
    scheduler.at(scheduler.now + this.rtoMs, attempt);
  }
}

/** A simulated TCP connection between two members: requests one way, replies the other. */
interface SimConnection {
  out: Direction;
  back: Direction;
}

/** One simulated member. */
export class SimMember {
  membership!: Membership;
  down = false;
  stalledUntil = 0;
  bytesSent = 0;
  constructor(
    readonly id: string,
    readonly addr: string,
  ) {}
}

/** A cluster of simulated members on one virtual network. */
export class SimCluster {
  readonly scheduler = new Scheduler();
  readonly members = new Map<string, SimMember>();
  readonly random: () => number;
  /** Partition: members in different groups cannot reach each other. */
  private group = new Map<string, number>();
  countBytes = false;
  private eventListeners: ((observer: string, event: MemberEvent) => void)[] = [];

  constructor(
    readonly options: {
      seed: number;
      network: NetworkOptions;
      config?: Partial<SwimConfig>;
      /**
       * Model TCP connections, pooled one per peer as RpcSwimTransport does: a connection
       * established before a partition stays open through it, its messages stuck in
       * retransmission back-off (see Direction). Off: a partition simply drops messages.
       */
      connections?: {
        /** Mirror of RpcSwimTransport: a request that got no answer retires its pooled connection, so the next message opens a fresh one. */
        freshAfterTimeout: boolean;
      };
    },
  ) {
    this.random = seededRandom(options.seed);
  }

  get now(): number {
    return this.scheduler.now;
  }

  /** Listens to every member's membership events. */
  onEvent(listener: (observer: string, event: MemberEvent) => void): void {
    this.eventListeners.push(listener);
  }

  /** Adds and starts a member that joins through `seeds` (member ids). */
  add(id: string, seeds: string[] = [], meta: Partial<MemberMeta> = {}): SimMember {
    const member = new SimMember(id, `${id}:7400`);
    this.members.set(member.addr, member);
    member.membership = new Membership({
      id,
      addr: member.addr,
      meta: { state: "ready", services: ["demo"], version: "0.1.0", http: 7401, ...meta },
      clock: this.clockFor(member),
      transport: this.transportFor(member),
      config: this.options.config,
      random: seededRandom(Math.floor(this.random() * 2 ** 32)),
      onEvent: (event) => {
        for (const listener of this.eventListeners) listener(id, event);
      },
    });
    member.membership.start(seeds.map((s) => `${s}:7400`));
    return member;
  }

  member(id: string): SimMember {
    return this.members.get(`${id}:7400`)!;
  }

  /** Stops a member at once, as kill -9 would. */
  crash(id: string): void {
    const member = this.member(id);
    member.down = true;
    member.membership.stop();
  }

  /** Removes a member entirely (so a new one may take its id). */
  remove(id: string): void {
    this.crash(id);
    this.members.delete(`${id}:7400`);
  }

  /** Freezes a member for `ms`: its timers and messages wait, as in a long GC pause. */
  stall(id: string, ms: number): void {
    const member = this.member(id);
    member.stalledUntil = Math.max(member.stalledUntil, this.now + ms);
  }

  /** Splits members into groups that cannot reach each other. */
  partition(groups: string[][]): void {
    this.group.clear();
    groups.forEach((ids, g) => ids.forEach((id) => this.group.set(`${id}:7400`, g)));
  }

  /** Ends any partition. */
  heal(): void {
    this.group.clear();
  }

  run(ms: number): void {
    this.scheduler.runUntil(this.now + ms);
  }

  private reachable(from: string, to: string): boolean {
    if (this.group.size === 0) return true;
    return this.group.get(from) === this.group.get(to);
  }

  private clockFor(member: SimMember): Clock {
    const scheduler = this.scheduler;
    return {
      now: () => scheduler.now,
      setTimer: (ms, fn): TimerHandle => {
        let event = scheduler.at(scheduler.now + ms, run);
        function run() {
          if (member.down) return;
          // A stalled member runs its timers late, all at once when it wakes.
          if (member.stalledUntil > scheduler.now) {
            event = scheduler.at(member.stalledUntil, run);
            return;
          }
          fn();
        }
        return { cancel: () => void (event.cancelled = true) };
      },
    };
  }

  /** One-way delay of one message, or undefined when the connection resets. */
  private delay(): number | undefined {
    const { minDelayMs, maxDelayMs, loss, rtoMs, resetShare } = this.options.network;
    let delay = minDelayMs + this.random() * (maxDelayMs - minDelayMs);
    let rto = rtoMs;
    while (loss > 0 && this.random() < loss) {
      if (this.random() < resetShare) return undefined;
      delay += rto;
      rto *= 2;
    }
    return delay;
  }

  private deliver(to: string, fn: (target: SimMember) => void): void {
    const target = this.members.get(to);
    if (!target || target.down) return;
    const run = () => {
      if (target.down) return;
      if (target.stalledUntil > this.scheduler.now) {
        // As in a real event loop after a pause, expired timers run before pending I/O is read.
        this.scheduler.at(target.stalledUntil + 1, run);
        return;
      }
      fn(target);
    };
    run();
  }

  private account(member: SimMember, message: SwimMessage): void {
    // Real size: what the $swim request would put on the wire, framing included.
    if (this.countBytes) member.bytesSent += encode([0, 0, `$swim.${message.t}`, [message]]).byteLength;
  }

  private transportFor(member: SimMember): SwimTransport {
    if (this.options.connections) return this.pooledTransportFor(member, this.options.connections.freshAfterTimeout);
    const scheduler = this.scheduler;
    return {
      request: (to, message, timeoutMs, onReply) => {
        let settled = false;
        const timeout = scheduler.at(scheduler.now + timeoutMs, () => {
          if (settled || member.down) return;
          settled = true;
          // The caller's own timer: late if the caller is stalled.
          if (member.stalledUntil > scheduler.now) scheduler.at(member.stalledUntil, () => onReply(undefined));
          else onReply(undefined);
        });
        this.account(member, message);
        if (!this.reachable(member.addr, to)) return;
        const there = this.delay();
        if (there === undefined) return;
        scheduler.at(scheduler.now + there, () =>
          this.deliver(to, (target) =>
            target.membership.handle(message, (answer) => {
              this.account(target, answer);
              if (!this.reachable(to, member.addr)) return;
              const back = this.delay();
              if (back === undefined) return;
              scheduler.at(scheduler.now + back, () => {
                if (settled || member.down) return;
                this.deliver(member.addr, () => {
                  if (settled) return;
                  settled = true;
                  timeout.cancelled = true;
                  onReply(answer);
                });
              });
            }),
          ),
        );
      },
      send: (to, message) => {
        this.account(member, message);
        if (!this.reachable(member.addr, to)) return;
        const there = this.delay();
        if (there === undefined) return;
        scheduler.at(scheduler.now + there, () => this.deliver(to, (target) => target.membership.handle(message, () => {})));
      },
    };
  }

  /**
   * A transport over simulated TCP connections, one pooled per peer. A new connection needs
   * the path open (a connect into a partition fails within the transport's connect timeout,
   * dropping what was sent on it); an open one carries messages in order and holds them
   * through a partition. A retired connection is never used again, but what it already
   * holds still arrives: a closed socket's unsent bytes are retransmitted all the same.
   */
  private pooledTransportFor(member: SimMember, freshAfterTimeout: boolean): SwimTransport {
    const scheduler = this.scheduler;
    const pool = new Map<string, SimConnection | undefined>();
    const connection = (to: string): SimConnection | undefined => {
      if (pool.has(to)) return pool.get(to);
      if (!this.reachable(member.addr, to)) return undefined;
      const net = (from: string, dest: string) => ({ scheduler, reachable: () => this.reachable(from, dest), delay: () => this.delay() });
      const opened: SimConnection = { out: new Direction(net(member.addr, to), this.options.network.rtoMs), back: new Direction(net(to, member.addr), this.options.network.rtoMs) };
      pool.set(to, opened);
      return opened;
    };
    return {
      request: (to, message, timeoutMs, onReply) => {
        let settled = false;
        const conn = connection(to);
        const timeout = scheduler.at(scheduler.now + timeoutMs, () => {
          if (settled || member.down) return;
          settled = true;
          // No answer: the connection may be stuck in back-off; the transport opens a fresh one next time.
          if (freshAfterTimeout && pool.get(to) === conn) pool.delete(to);
          if (member.stalledUntil > scheduler.now) scheduler.at(member.stalledUntil, () => onReply(undefined));
          else onReply(undefined);
        });
        this.account(member, message);
        if (!conn) return;
        conn.out.send(() =>
          this.deliver(to, (target) =>
            target.membership.handle(message, (answer) => {
              this.account(target, answer);
              conn.back.send(() => {
                if (settled || member.down) return;
                this.deliver(member.addr, () => {
                  if (settled) return;
                  settled = true;
                  timeout.cancelled = true;
                  onReply(answer);
                });
              });
            }),
          ),
        );
      },
      send: (to, message) => {
        this.account(member, message);
        connection(to)?.out.send(() => this.deliver(to, (target) => target.membership.handle(message, () => {})));
      },
      forget: (to) => void pool.delete(to),
    };
  }
}

/** Starts `n` members m0..m(n-1), all joining through m0, started `spreadMs` apart; runs until all are up. */
export function bootCluster(cluster: SimCluster, n: number, spreadMs = 2): string[] {
  const ids = Array.from({ length: n }, (_, i) => `m${i}`);
  cluster.add(ids[0]!);
  for (let i = 1; i < n; i++) {
    cluster.run(spreadMs);
    cluster.add(ids[i]!, [ids[0]!]);
  }
  return ids;
}

/** True when every running member sees exactly the running members as alive. */
export function converged(cluster: SimCluster): boolean {
  const up = [...cluster.members.values()].filter((m) => !m.down);
  for (const member of up) {
    if (member.membership.liveCount !== up.length - 1) return false;
  }
  return true;
}
