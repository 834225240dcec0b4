import type { Logger } from "../log.ts";
import { Channel } from "../rpc/channel.ts";
import { RpcError } from "../rpc/errors.ts";
import type { Runtime } from "../runtime/types.ts";
import type { Clock, SwimMessage, SwimTransport } from "./types.ts";

/** The real clock: wall time and runtime timers. */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fn) {
    const timer = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(timer) };
  },
};

/**
 * Membership over the RPC port: a request is a `$swim.<t>` call, a one-way
 * message a `$swim.<t>` notification, on one pooled connection per peer.
 */
export class RpcSwimTransport implements SwimTransport {
  private readonly channels = new Map<string, Promise<Channel | undefined>>();
  private closed = false;

  constructor(
    private readonly runtime: Runtime,
    private readonly log: Logger,
    private readonly maxMessageBytes: number,
    /** EBB_CLUSTER_KEY: membership connections prove it, so only key holders join. */
    private readonly clusterKey?: string,
  ) {}

  /** Addresses already warned about for refusing our key: warned once, then only at debug. */
  private readonly refusedBy = new Set<string>();

  request(to: string, message: SwimMessage, timeoutMs: number, onReply: (reply: SwimMessage | undefined) => void): void {
    // A join goes to a seed, often a DNS name for many nodes (a Kubernetes headless
    // Service): a new connection each time resolves it again, so a node whose first
    // try reached itself (or a dying pod) reaches another on the next.
    const join = message.t === "sync" && message.join === true;
    void (join ? this.open(to) : this.channel(to)).then((channel) => {
      if (!channel) return onReply(undefined);
      channel
        .request(`$swim.${message.t}`, [message], { timeoutMs })
        .then(
          (reply) => onReply(isSwimMessage(reply) ? reply : undefined),
          () => onReply(undefined),
        )
        .finally(() => join && channel.close());
    });
  }

  send(to: string, message: SwimMessage): void {
    void this.channel(to).then((channel) => channel?.notify(`$swim.${message.t}`, [message]));
  }

  /** Closes every pooled connection; later sends go nowhere. */
  close(): void {
    this.closed = true;
    for (const pending of this.channels.values()) void pending.then((channel) => channel?.close());
    this.channels.clear();
  }

  /** A new connection to `address`, or undefined when it cannot be reached. */
  private open(address: string, onClose?: () => void): Promise<Channel | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const [host, port] = splitAddress(address);
    return Channel.connect(this.runtime, {
      host,
      port,
      maxMessageBytes: this.maxMessageBytes,
      // Members keep talking to a draining member until it has left.
      ignoreGoaway: true,
      clusterKey: this.clusterKey,
      onClose,
    }).catch((error: unknown) => {
      const reason = error instanceof Error ? error.message : String(error);
      if (error instanceof RpcError && error.code === "UNAUTHENTICATED" && !this.refusedBy.has(address)) {
        this.refusedBy.add(address);
        this.log.warn(`membership: ${error.rawMessage}`, { address });
      } else this.log.debug("membership cannot reach a member", { address, error: reason });
      onClose?.();
      return undefined;
    });
  }

  private channel(address: string): Promise<Channel | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const existing = this.channels.get(address);
    if (existing) return existing;
    const opening = this.open(address, () => {
      if (this.channels.get(address) === opening) this.channels.delete(address);
    });
    this.channels.set(address, opening);
    return opening;
  }
}

/** Splits `host:port` (IPv6 in brackets allowed). */
export function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  return [host, Number(address.slice(colon + 1))];
}

function isSwimMessage(value: unknown): value is SwimMessage {
  return typeof value === "object" && value !== null && typeof (value as { t?: unknown }).t === "string";
}
