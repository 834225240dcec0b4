import type { Logger } from "../log.ts";
import { parseMemberList } from "../membership/schema.ts";
import type { Member } from "../membership/types.ts";
import type { ClusterKey } from "../rpc/auth.ts";
import { Channel, type ChannelOptions } from "../rpc/channel.ts";
import { RpcError } from "../rpc/errors.ts";
import { splitAddress } from "../runtime/address.ts";
import type { Clock, TimerHandle } from "../runtime/clock.ts";
import { runtimeOf, type RuntimeSource } from "../runtime/source.ts";
import type { Runtime } from "../runtime/types.ts";
import type { Endpoint, EndpointTable } from "./endpoints.ts";

/** Options of the connection pool. */
export interface ConnectionPoolOptions {
  /** The runtime, or how to get it at the first connection. */
  runtime: RuntimeSource;
  clock: Clock;
  log: Logger;
  maxMessageBytes: number;
  clusterKey: ClusterKey | undefined;
  connectTimeoutMs?: number;
  keepaliveMs?: number;
  /** Something a waiting call may care about happened: a connection closed or a server said `$goaway`. */
  onChange(): void;
  /** A connection to an endpoint opened, before any call is sent on it. */
  onConnected?(channel: Channel): void;
  /** A notification other than `$goaway` arrived on an endpoint's connection (`$watch`). */
  onNotification?(method: string, params: unknown[], endpoint: Endpoint<Channel>): void;
}

/** How long a seed has to answer `$members`. */
const MEMBERS_TIMEOUT_MS = 2_000;

/**
 * One connection per endpoint, opened on first use and shared by concurrent
 * callers; a failed attempt puts the endpoint in backoff (see EndpointTable).
 */
export class ConnectionPool {
  private runtime: Runtime | undefined;

  constructor(
    private readonly table: EndpointTable<Channel>,
    private readonly options: ConnectionPoolOptions,
  ) {}

  /**
   * The endpoint's open connection, or a new one (a single attempt however many callers ask).
   * A caller waits at most `waitMs`; the attempt itself goes on for the others.
   */
  connect(endpoint: Endpoint<Channel>, waitMs = Infinity): Promise<Channel> {
    if (endpoint.channel && !endpoint.channel.closed) return Promise.resolve(endpoint.channel);
    const attempt = this.attempt(endpoint);
    if (waitMs === Infinity) return attempt;
    let timer: TimerHandle | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = this.options.clock.setTimer(Math.max(0, waitMs), () =>
        reject(new RpcError(`Cannot connect to ${endpoint.addr}: not connected within ${Math.max(0, Math.round(waitMs))} ms`, "UNAVAILABLE", { processed: false })),
      );
    });
    return Promise.race([attempt, expired]).finally(() => timer?.cancel());
  }

  /** The endpoint's connection attempt: one at a time, its failure puts the endpoint in backoff. */
  private attempt(endpoint: Endpoint<Channel>): Promise<Channel> {
    endpoint.connecting ??= (async () => {
      // Declared first: a connection that fails after its socket opened (a key mismatch) closes before `open` returns.
      let channel: Channel | undefined;
      try {
        channel = await this.open(endpoint.addr, {
          maxMessageBytes: this.options.maxMessageBytes,
          log: this.options.log,
          onNotification: (method, params) => (method === "$goaway" ? this.options.onChange() : this.options.onNotification?.(method, params, endpoint)),
          onClose: () => {
            if (endpoint.channel === channel) endpoint.channel = undefined;
            this.options.onChange();
          },
        });
        endpoint.channel = channel;
        this.table.connected(endpoint, this.options.clock.now());
        this.options.onConnected?.(channel);
        return channel;
      } catch (error) {
        this.table.connectFailed(endpoint, this.options.clock.now(), error);
        this.options.log.debug("connection failed", { id: endpoint.id, addr: endpoint.addr, backoffMs: endpoint.backoffMs, error: endpoint.connectError });
        throw error;
      } finally {
        endpoint.connecting = undefined;
      }
    })();
    return endpoint.connecting;
  }

  /** The member list of the node at `addr`: over its open connection if there is one, else a short-lived one. */
  async membersFrom(addr: string): Promise<Member[]> {
    const existing = [...this.table.values()].find((e) => e.addr === addr && e.channel && !e.channel.closed);
    if (existing?.channel) return memberList(await existing.channel.call("$members", undefined, { timeoutMs: MEMBERS_TIMEOUT_MS }), addr);
    const channel = await this.open(addr, {});
    try {
      return memberList(await channel.call("$members", undefined, { timeoutMs: MEMBERS_TIMEOUT_MS }), addr);
    } finally {
      channel.close();
    }
  }

  /**
   * Watches the membership of the node behind `endpoint` (`$watch` on its connection): its member
   * list, and a promise that resolves when the watch ends with the connection. The changes come as
   * notifications, through `onNotification`.
   */
  async watch(endpoint: Endpoint<Channel>): Promise<{ members: Member[]; ended: Promise<void> }> {
    const channel = await this.connect(endpoint, MEMBERS_TIMEOUT_MS);
    const answer = await channel.call("$watch", undefined, { timeoutMs: MEMBERS_TIMEOUT_MS });
    const members = memberList(typeof answer === "object" && answer !== null ? (answer as { members?: unknown }).members : undefined, endpoint.addr);
    return { members, ended: channel.whenClosed() };
  }

  /** Closes every connection. */
  closeAll(): void {
    for (const endpoint of this.table.values()) endpoint.channel?.close();
  }

  private async open(addr: string, options: Pick<ChannelOptions, "maxMessageBytes" | "log" | "onNotification" | "onClose">): Promise<Channel> {
    this.runtime ??= await runtimeOf(this.options.runtime);
    const [host, port] = splitAddress(addr);
    const { clusterKey, connectTimeoutMs, keepaliveMs } = this.options;
    return await Channel.connect(this.runtime, { host, port, clusterKey, connectTimeoutMs, keepaliveMs, ...options });
  }
}

/** A seed's `$members` answer, parsed: a malformed one fails this discovery like an unreachable seed. */
function memberList(value: unknown, addr: string): Member[] {
  const members = parseMemberList(value);
  if (!members) throw new RpcError(`Member list from "${addr}" is malformed`, "UNAVAILABLE");
  return members;
}
