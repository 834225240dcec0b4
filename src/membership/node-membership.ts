import { errorText } from "../error-text.ts";
import type { Logger } from "../log.ts";
import type { ClusterKey } from "../rpc/auth.ts";
import { RpcError } from "../rpc/errors.ts";
import { type Clock, realClock, type TimerHandle } from "../runtime/clock.ts";
import type { Runtime } from "../runtime/types.ts";
import { Membership, type MembershipStats } from "./membership.ts";
import { SwimGate } from "./schema.ts";
import { RpcSwimTransport } from "./transport.ts";
import type { Member, MemberEvent, MemberMeta, SwimConfig } from "./types.ts";

/** Event-loop lag check: every LAG_CHECK_MS, a tick later than LAG_THRESHOLD_MS raises Lifeguard's health score. */
const LAG_CHECK_MS = 250;
const LAG_THRESHOLD_MS = 100;

/** Options of a node's membership. */
export interface NodeMembershipOptions {
  id: string;
  log: Logger;
  /** EBB_MAX_MESSAGE_BYTES of membership connections. */
  maxMessageBytes: number;
  /** EBB_CLUSTER_KEY: membership connections prove it. */
  clusterKey?: ClusterKey;
  swim: Partial<SwimConfig>;
  /** EBB_KEEPALIVE_MS of membership connections. */
  keepaliveMs?: number;
  clock?: Clock;
}

/** Where this member is reached: the advertised address, else the bound one (loopback for a wildcard bind, with a warning). */
export function advertisedAddress(host: string, port: number, advertise: string | undefined, log: Logger): string {
  if (advertise) return advertise;
  const wildcard = host === "0.0.0.0" || host === "::";
  const addr = `${wildcard ? "127.0.0.1" : host}:${port}`;
  if (wildcard) log.warn(`bound to ${host} without EBB_ADVERTISE: other members are told ${addr}`);
  return addr;
}

/**
 * A node's place in the cluster: the SWIM membership over the RPC port, the
 * gate every inbound `$swim.*` message passes, the event-loop lag monitor
 * (Lifeguard), and the node's member-event listeners.
 */
export class NodeMembership {
  /** Parses every inbound `$swim.*` message before the membership sees it. */
  readonly gate: SwimGate;
  /** Event-loop lag seen by the last check, in ms. */
  lastLagMs = 0;
  private membership: Membership | undefined;
  private transport: RpcSwimTransport | undefined;
  private lagTimer: TimerHandle | undefined;
  private readonly listeners = new Set<(event: MemberEvent) => void>();
  private readonly clock: Clock;

  constructor(private readonly options: NodeMembershipOptions) {
    this.gate = new SwimGate(options.log);
    this.clock = options.clock ?? realClock;
  }

  /** Joins through `seeds` as the member at `addr`: the node learns the cluster while its hooks run. */
  start(runtime: Runtime, addr: string, meta: MemberMeta, seeds: string[]): void {
    const { id, log } = this.options;
    this.transport = new RpcSwimTransport(runtime, log, this.options.maxMessageBytes, this.options.clusterKey, this.gate, { keepaliveMs: this.options.keepaliveMs });
    this.membership = new Membership({
      id,
      addr,
      meta,
      clock: this.clock,
      transport: this.transport,
      config: this.options.swim,
      onEvent: (event) => this.emit(event),
      onError: (error, where) => log.warn(`membership: ${errorText(error)}`, { where }),
    });
    this.membership.start(seeds);
    this.watchLag(this.clock.now());
  }

  /** The cluster as this node sees it (itself included); empty before `start`. */
  list(): Member[] {
    return this.membership?.list() ?? [];
  }

  onMemberEvent(listener: (event: MemberEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Pushes this node's new meta (state, services) to every member at once, and tells this node's
   * own listeners: the list includes this node, so its clients (`node.client()`) may call it too.
   */
  updateMeta(meta: MemberMeta): void {
    const membership = this.membership;
    if (!membership) return;
    membership.updateMeta(meta);
    const self = membership.list().find((member) => member.id === this.options.id);
    if (self) this.tell({ type: "update", member: self });
  }

  /** Answers a `$swim.*` request. */
  request(input: unknown, peer: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const membership = this.membership;
      if (!membership) return reject(new RpcError("Membership is not running", "UNAVAILABLE"));
      const message = this.gate.admit(input, peer);
      if (!message) return reject(new RpcError("Invalid membership message", "INVALID_PARAMS"));
      membership.handle(message, resolve);
    });
  }

  /** Takes a `$swim.*` notification (true, even when malformed: the gate counts those); any other is not the membership's (false). */
  notify(method: string, params: unknown[], peer: string): boolean {
    if (!method.startsWith("$swim.")) return false;
    const message = this.membership && this.gate.admit(params[0], peer);
    if (message) this.membership!.handle(message, () => {});
    return true;
  }

  /** Announces `left`, lets it spread briefly, then stops the membership and its connections. */
  async leave(): Promise<void> {
    this.lagTimer?.cancel();
    this.lagTimer = undefined;
    const leaving = this.membership;
    if (!leaving) return;
    await new Promise<void>((resolve) => leaving.leave(resolve));
    this.transport?.close();
  }

  get stats(): MembershipStats | undefined {
    return this.membership?.stats;
  }

  get healthScore(): number {
    return this.membership?.healthScore ?? 0;
  }

  private emit(event: MemberEvent): void {
    const { id, status, incarnation, meta } = event.member;
    const { log } = this.options;
    log.info(`member ${id} ${event.type}`, { member: id, event: event.type, status, incarnation, memberState: meta.state });
    this.tell(event);
  }

  /** Hands `event` to every listener; one that throws is logged and the others still hear it. */
  private tell(event: MemberEvent): void {
    const { log } = this.options;
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        log.error("a member event listener failed", { event: event.type, member: event.member.id, error: errorText(error) });
      }
    }
  }

  /** Lifeguard: a lagging event loop means our own timeouts are unreliable. */
  private watchLag(last: number): void {
    this.lagTimer = this.clock.setTimer(LAG_CHECK_MS, () => {
      const now = this.clock.now();
      this.lastLagMs = Math.max(0, now - last - LAG_CHECK_MS);
      if (this.lastLagMs > LAG_THRESHOLD_MS) this.membership?.reportLag(1);
      this.watchLag(now);
    });
  }
}
