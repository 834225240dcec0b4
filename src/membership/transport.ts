import type { Logger } from "../log.ts";
import { Channel, type ChannelOptions, DEFAULT_KEEPALIVE_MS } from "../rpc/channel.ts";
import type { ClusterKey } from "../rpc/auth.ts";
import { RpcError } from "../rpc/errors.ts";
import { splitAddress } from "../runtime/address.ts";
import type { Runtime } from "../runtime/types.ts";
import { SwimGate } from "./schema.ts";
import type { SwimMessage, SwimTransport } from "./types.ts";
import { errorText } from "../error-text.ts";

/** Most pooled membership connections; past it the least recently used one is closed. */
export const MAX_POOLED_CHANNELS = 1_024;

/** A pooled membership connection unused this long is closed (the next message opens a new one). */
export const IDLE_CHANNEL_MS = 60_000;

/**
 * Longest wait for a membership connection to open. A peer behind a partition never answers
 * the SYN, and the kernel's own connect timeout is minutes: without this bound a probe would
 * hang there, and the probe loop, which waits for each probe's answer, with it.
 */
export const SWIM_CONNECT_TIMEOUT_MS = 1_000;

/** Settings of `RpcSwimTransport`. */
export interface TransportSettings {
  /** Most pooled connections. */
  maxChannels: number;
  /** A pooled connection unused this long is closed. */
  idleMs: number;
  /** Keep-alive pings of the pooled connections (`ChannelOptions.keepaliveMs`). */
  keepaliveMs: number;
}

interface Pooled {
  channel: Promise<Channel | undefined>;
  lastUsed: number;
}

/**
 * Membership over the RPC port: a request is a `$swim.<t>` call, a one-way
 * message a `$swim.<t>` notification, on one pooled connection per peer.
 * The pool is bounded (MAX_POOLED_CHANNELS) and idle connections are closed (IDLE_CHANNEL_MS).
 *
 * A request that gets no answer retires its pooled connection: after a partition, a
 * connection that lived through it is stuck in TCP retransmission back-off (its next
 * retransmission may be tens of seconds away, and everything sent after queues behind it),
 * so the next message opens a fresh one, within SWIM_CONNECT_TIMEOUT_MS. The membership
 * also retires the connection of a member it declares dead (`forget`).
 */
export class RpcSwimTransport implements SwimTransport {
  /** In least-recently-used order: a use moves an entry to the end. */
  private readonly channels = new Map<string, Pooled>();
  /**
   * Addresses with a connection attempt still open past its timeout (it may yet complete,
   * and is then closed): no second attempt to them meanwhile, so a peer that never answers
   * holds at most one socket of ours. At most MAX_POOLED_CHANNELS attempts at once.
   */
  private readonly connecting = new Set<string>();
  private closed = false;
  private lastSweep = Date.now();
  private readonly pool: TransportSettings;

  constructor(
    private readonly runtime: Runtime,
    private readonly log: Logger,
    private readonly maxMessageBytes: number,
    /** EBB_CLUSTER_KEY and EBB_CLUSTER_ID: membership connections prove them, so only key holders join. */
    private readonly clusterKey?: ClusterKey,
    /** Parses replies, the one typed entry point for inbound membership messages; the node passes its own, to count and log refusals. */
    private readonly gate: SwimGate = new SwimGate(log),
    /** Bounds of the connection pool (tests shrink them), and the keep-alive of its connections (EBB_KEEPALIVE_MS). */
    settings: Partial<TransportSettings> = {},
  ) {
    this.pool = { maxChannels: settings.maxChannels ?? MAX_POOLED_CHANNELS, idleMs: settings.idleMs ?? IDLE_CHANNEL_MS, keepaliveMs: settings.keepaliveMs ?? DEFAULT_KEEPALIVE_MS };
  }

  /** Pooled connections open or opening now. */
  get pooled(): number {
    return this.channels.size;
  }

  /**
   * Addresses that refused our key, and until when we leave them alone: each
   * failed handshake costs the other side a token of its per-host throttle
   * (auth-guard.ts), which honest clients on our host share. Warned once.
   */
  private readonly refusedUntil = new Map<string, number>();

  request(to: string, message: SwimMessage, timeoutMs: number, onReply: (reply: SwimMessage | undefined) => void): void {
    const deliver = (reply: SwimMessage | undefined) => {
      try {
        onReply(reply);
      } catch (error) {
        this.log.error("membership reply handling failed", { address: to, error: errorText(error) });
      }
    };
    // A join goes to a seed, often a DNS name for many nodes (a Kubernetes headless
    // Service): a new connection each time resolves it again, so a node whose first
    // try reached itself (or a dying pod) reaches another on the next.
    const join = message.t === "sync" && message.join === true;
    const started = Date.now();
    void (join ? this.open(to, undefined, Math.min(timeoutMs, SWIM_CONNECT_TIMEOUT_MS)) : this.channel(to, Math.min(timeoutMs, SWIM_CONNECT_TIMEOUT_MS))).then((channel) => {
      if (!channel) return deliver(undefined);
      // The timeout covers the whole request, connecting included.
      const leftMs = Math.max(1, timeoutMs - (Date.now() - started));
      channel
        .request(`$swim.${message.t}`, [message], { timeoutMs: leftMs })
        .then(
          (reply) => deliver(this.gate.admit(reply, to)),
          (error: unknown) => {
            // No answer in time: this connection may be stuck in retransmission back-off; the next message opens a fresh one.
            if (!join && error instanceof RpcError && error.code === "DEADLINE_EXCEEDED") this.retire(to, channel);
            deliver(undefined);
          },
        )
        .finally(() => join && channel.close());
    });
  }

  send(to: string, message: SwimMessage): void {
    void this.channel(to)
      .then((channel) => channel?.notify(`$swim.${message.t}`, [message]))
      .catch((error: unknown) => this.log.debug("membership cannot send to a member", { address: to, error: errorText(error) }));
  }

  /** Closes every pooled connection; later sends go nowhere. */
  close(): void {
    this.closed = true;
    for (const address of [...this.channels.keys()]) this.drop(address);
  }

  /** Drops the pooled connection to `address` at once, if any (its member was declared dead or reaped). */
  forget(address: string): void {
    this.drop(address, "its member was declared dead");
  }

  /** Drops the pooled connection to `address` if it is still `channel` (a newer one is kept). */
  private retire(address: string, channel: Channel): void {
    const pooled = this.channels.get(address);
    if (!pooled) return;
    void pooled.channel.then((current) => {
      if (current === channel && this.channels.get(address) === pooled) this.drop(address, "a request on it went unanswered");
    });
  }

  /** Closes the pooled connection to `address`: gracefully, or at once when `destroyed` says why it is given up. */
  private drop(address: string, destroyed?: string): void {
    const pooled = this.channels.get(address);
    if (!pooled) return;
    this.channels.delete(address);
    void pooled.channel.then((channel) => (destroyed === undefined ? channel?.close() : channel?.destroy(destroyed)));
  }

  /** Closes connections idle past IDLE_CHANNEL_MS; runs at most every quarter of it, on use. */
  private sweep(now: number): void {
    if (now - this.lastSweep < this.pool.idleMs / 4) return;
    this.lastSweep = now;
    for (const [address, pooled] of this.channels) {
      // Least recently used first: the first one still in use ends the sweep.
      if (now - pooled.lastUsed < this.pool.idleMs) break;
      this.drop(address);
    }
  }

  /** A new connection to `address` within `connectTimeoutMs`, or undefined when it cannot be reached. */
  private open(address: string, onClose: (() => void) | undefined, connectTimeoutMs: number): Promise<Channel | undefined> {
    if (this.closed || (this.refusedUntil.get(address) ?? 0) > Date.now()) return Promise.resolve(undefined);
    if (this.connecting.has(address) || this.connecting.size >= MAX_POOLED_CHANNELS) {
      onClose?.();
      return Promise.resolve(undefined);
    }
    const [host, port] = splitAddress(address);
    const options: ChannelOptions = {
      host,
      port,
      maxMessageBytes: this.maxMessageBytes,
      // Members keep talking to a draining member until it has left.
      ignoreGoaway: true,
      clusterKey: this.clusterKey,
      // Bounds the TCP connect; the race below bounds the cluster-key handshake too.
      connectTimeoutMs,
      keepaliveMs: this.pool.keepaliveMs,
      onClose,
    };
    const connecting = this.connectOnce(address, options);
    return new Promise((resolve) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        this.log.debug("membership cannot reach a member", { address, error: `no connection within ${connectTimeoutMs} ms` });
        onClose?.();
        resolve(undefined);
      }, connectTimeoutMs);
      void connecting.then((channel) => {
        clearTimeout(timer);
        if (!settled) resolve(channel);
        // Opened after we gave up on it: nobody waits for it any more.
        else channel?.close();
      });
    });
  }

  /** One connection attempt to `address`, marked in `connecting` until it settles. */
  private connectOnce(address: string, options: ChannelOptions): Promise<Channel | undefined> {
    this.connecting.add(address);
    return Channel.connect(this.runtime, options).then(
      (channel) => {
        this.connecting.delete(address);
        return channel;
      },
      (error: unknown) => {
        this.connecting.delete(address);
        this.connectFailed(address, error, options.onClose);
        return undefined;
      },
    );
  }

  private connectFailed(address: string, error: unknown, onClose: (() => void) | undefined): void {
    if (error instanceof RpcError && error.code === "UNAUTHENTICATED") {
      if (!this.refusedUntil.has(address)) this.log.warn(`membership: peer ${error.rawMessage}`, { address });
      this.refusedUntil.delete(address);
      if (this.refusedUntil.size >= this.pool.maxChannels) this.refusedUntil.delete(this.refusedUntil.keys().next().value!);
      this.refusedUntil.set(address, Date.now() + REFUSED_BACKOFF_MS);
    } else this.log.debug("membership cannot reach a member", { address, error: errorText(error) });
    onClose?.();
  }

  private channel(address: string, connectTimeoutMs = SWIM_CONNECT_TIMEOUT_MS): Promise<Channel | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const now = Date.now();
    this.sweep(now);
    const existing = this.channels.get(address);
    if (existing) {
      this.channels.delete(address);
      existing.lastUsed = now;
      this.channels.set(address, existing);
      return existing.channel;
    }
    while (this.channels.size >= this.pool.maxChannels) this.drop(this.channels.keys().next().value!);
    const pooled: Pooled = { channel: Promise.resolve(undefined), lastUsed: now };
    pooled.channel = this.open(
      address,
      () => {
        if (this.channels.get(address) === pooled) this.channels.delete(address);
      },
      connectTimeoutMs,
    );
    this.channels.set(address, pooled);
    return pooled.channel;
  }
}

/** After a member refused our cluster key, no new connection to it for this long. */
export const REFUSED_BACKOFF_MS = 10_000;
