import type { Logger } from "../log.ts";
import { sourceHost } from "../runtime/address.ts";
import type { AuthFailure } from "./auth.ts";

/**
 * Failed cluster key handshakes, limited per source host (not host:port: one
 * machine opens as many ports as it likes). Each host has a token bucket of
 * AUTH_FAILURE_BURST failures, refilled at AUTH_FAILURES_PER_SECOND; only
 * failures take a token, so successful handshakes (members and clients on the
 * same host) never throttle anyone. While a host's bucket is empty, its new
 * connections are closed before any handshake work. A guesser thus gets
 * AUTH_FAILURES_PER_SECOND guesses per second, down from thousands.
 */
export const AUTH_FAILURE_BURST = 20; // failed handshakes a host may make at once before it is turned away
export const AUTH_FAILURES_PER_SECOND = 5; // then one more failure every 200 ms
export const AUTH_GUARD_MAX_SOURCES = 4_096; // hosts remembered; the least recently seen is forgotten first
export const AUTH_LOG_WINDOW_MS = 10_000; // at most one log line per host per window, with counts

/** One source host's bucket and its events not yet logged. */
interface Source {
  tokens: number;
  refilledAtMs: number;
  lastLineAtMs: number;
  failed: number;
  turnedAway: number;
  /** The first unlogged failure, said as it was when it is alone in its window. */
  detail: string | undefined;
}

/** Limits of an `AuthThrottle`; defaults are the constants above. */
export interface AuthThrottleLimits {
  burst: number;
  perSecond: number;
  maxSources: number;
}

/** The per-host token buckets alone: pure, the clock injected (tested with a table). */
export class AuthThrottle {
  private readonly sources = new Map<string, Source>();

  constructor(
    private readonly limits: AuthThrottleLimits = { burst: AUTH_FAILURE_BURST, perSecond: AUTH_FAILURES_PER_SECOND, maxSources: AUTH_GUARD_MAX_SOURCES },
    private readonly now: () => number = Date.now,
  ) {}

  /** True while `host` has used up its failures: its connections are to be closed unheard. */
  throttled(host: string): boolean {
    const source = this.sources.get(host);
    return source !== undefined && this.refill(source) < 1;
  }

  /** Takes one token from `host`'s bucket. */
  failed(host: string): void {
    const source = this.source(host);
    source.tokens = Math.max(0, this.refill(source) - 1);
  }

  /** Hosts remembered now (bounded by `maxSources`). */
  get size(): number {
    return this.sources.size;
  }

  /** @internal The record of `host`, created full and moved to the most recently seen end. */
  source(host: string): Source {
    let source = this.sources.get(host);
    if (source) this.sources.delete(host);
    else {
      source = { tokens: this.limits.burst, refilledAtMs: this.now(), lastLineAtMs: -Infinity, failed: 0, turnedAway: 0, detail: undefined };
      // A Map iterates in insertion order: the first key is the least recently seen host.
      if (this.sources.size >= this.limits.maxSources) this.sources.delete(this.sources.keys().next().value!);
    }
    this.sources.set(host, source);
    return source;
  }

  /** @internal Every remembered host, least recently seen first. */
  entries(): IterableIterator<[string, Source]> {
    return this.sources.entries();
  }

  private refill(source: Source): number {
    const now = this.now();
    source.tokens = Math.min(this.limits.burst, source.tokens + ((now - source.refilledAtMs) / 1000) * this.limits.perSecond);
    source.refilledAtMs = now;
    return source.tokens;
  }
}

/**
 * A keyed server's guard over its handshakes: the throttle, counters for
 * metrics, and logging in aggregate (the first failure of a host in a window
 * is logged as it is; the rest of the window becomes one line with counts).
 */
export class AuthGuard {
  /**
   * Counters for metrics and tests: handshakes that failed (all, and by reason), connections turned
   * away unheard, handshakes that shared only a secondary key of ours (the peer is a rotation step behind).
   */
  readonly stats = { failures: 0, throttled: 0, secondary: 0, byReason: { unknown_key: 0, wrong_cluster: 0, handshake: 0 } as Record<AuthFailure, number> };
  private readonly throttle: AuthThrottle;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** After `stop` no timer is armed: the few connections still open are logged as they fail. */
  private stopped = false;
  /** When each host last had a secondary-key line, least recently first. */
  private readonly secondaryLoggedAtMs = new Map<string, number>();

  constructor(
    private readonly log: Logger,
    limits?: AuthThrottleLimits,
    private readonly now: () => number = Date.now,
    private readonly windowMs = AUTH_LOG_WINDOW_MS,
  ) {
    this.throttle = new AuthThrottle(limits, now);
  }

  /** True when a new connection from `peer` is to be closed before any handshake work; counted and logged in aggregate. */
  turnsAway(peer: string): boolean {
    const host = sourceHost(peer);
    if (!this.throttle.throttled(host)) return false;
    this.stats.throttled++;
    this.note(host, (source) => source.turnedAway++);
    return true;
  }

  /** A handshake from `peer` failed (`reason` as said to it, `kind` as counted): takes a token, counted and logged in aggregate. */
  failed(peer: string, reason: string, kind: AuthFailure = "handshake"): void {
    const host = sourceHost(peer);
    this.stats.failures++;
    this.stats.byReason[kind]++;
    this.throttle.failed(host);
    this.note(host, (source) => {
      source.failed++;
      // A key we do not hold is what a node a rotation step apart shows: said plainly, not as a wrong guess.
      source.detail ??= kind === "unknown_key" ? `peer ${peer} proved an unknown key: it shares none of this node's keys (EBB_CLUSTER_KEY); a rotation step skipped, or not a member` : `closing connection from ${peer}: ${reason}`;
    });
  }

  /** A handshake from `peer` shared only a secondary key of ours: counted, and logged once per host per window (info). */
  provedSecondary(peer: string): void {
    this.stats.secondary++;
    const host = sourceHost(peer);
    const now = this.now();
    const last = this.secondaryLoggedAtMs.get(host);
    if (last !== undefined && now - last < this.windowMs) return;
    this.secondaryLoggedAtMs.delete(host);
    if (this.secondaryLoggedAtMs.size >= AUTH_GUARD_MAX_SOURCES) this.secondaryLoggedAtMs.delete(this.secondaryLoggedAtMs.keys().next().value!);
    this.secondaryLoggedAtMs.set(host, now);
    this.log.info(`peer ${peer} proved only a secondary cluster key: it does not hold this node's primary yet (a rotation step behind)`, { peer: host });
  }

  /** Writes the line of every host whose window is over; with `all`, of every host with something unlogged. */
  flush(all = false): void {
    const now = this.now();
    let pending = false;
    for (const [host, source] of this.throttle.entries()) {
      if (source.failed + source.turnedAway === 0) continue;
      if (all || now - source.lastLineAtMs >= this.windowMs) this.line(host, source, now);
      else pending = true;
    }
    if (pending) this.arm();
    else this.stopTimer();
  }

  /** Logs what is left and stops the window timer. Idempotent. */
  stop(): void {
    this.stopped = true;
    this.flush(true);
    this.stopTimer();
  }

  private note(host: string, count: (source: Source) => void): void {
    const source = this.throttle.source(host);
    count(source);
    const now = this.now();
    if (this.stopped || now - source.lastLineAtMs >= this.windowMs) this.line(host, source, now);
    else this.arm();
  }

  /** One timer for all hosts, running only while some line is owed. */
  private arm(): void {
    if (this.stopped) return;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.windowMs);
  }

  private line(host: string, source: Source, now: number): void {
    const { failed, turnedAway } = source;
    if (failed === 1 && turnedAway === 0) this.log.warn(source.detail!, { peer: host });
    else {
      const seconds = Math.max(1, Math.round(Math.min(now - source.lastLineAtMs, this.windowMs) / 1000));
      this.log.warn(`refused ${failed + turnedAway} cluster key handshakes from "${host}" in the last ${seconds} s`, { peer: host, failed, turnedAway });
    }
    source.failed = 0;
    source.turnedAway = 0;
    source.detail = undefined;
    source.lastLineAtMs = now;
  }

  private stopTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
