import type { Lifecycle } from "../lifecycle/state.ts";
import type { NodeMembership } from "../membership/node-membership.ts";
import type { Runtime } from "../runtime/types.ts";
import type { BuiltinMethod, CallerConnection } from "./dispatch.ts";
import { RpcError } from "./errors.ts";
import type { Router } from "./router.ts";

/** What a node's `$` methods read. */
export interface BuiltinSources {
  nodeId: string;
  version: string;
  lifecycle: Lifecycle;
  router: Router;
  membership: NodeMembership;
  /** The runtime, once the node started. */
  runtime(): Runtime | undefined;
}

/** Most connections watching one node's membership at once (`$watch`). */
export const MAX_WATCHERS = 1_024;
/** A watcher that leaves this many bytes of notifications unread is closed: a client that stopped reading (1,024 of them hold 256 MiB at most). */
export const MAX_WATCH_BACKLOG_BYTES = 256 * 1024;

/** ebb's own methods on every node: `$ping`, `$info`, `$members`, `$watch`, and the membership's `$swim.*`. */
export function nodeBuiltins(sources: BuiltinSources): Record<string, BuiltinMethod> {
  const { nodeId, version, lifecycle, router, membership } = sources;
  const swim: BuiltinMethod = (input, peer) => membership.request(input, peer);
  const watching = new WeakSet<CallerConnection>();
  let watchers = 0;
  /**
   * `$watch`: the member list now (`{members}`, as `$members`), then a notification
   * `[2, "$watch", [{type, member}]]` on this connection for every membership event, until it
   * closes. Asked again on the same connection, only the list. Instead of polling `$members`.
   */
  const watch: BuiltinMethod = (_input, _peer, connection) => {
    if (!connection) throw new RpcError("$watch needs a connection of its own", "INVALID_REQUEST");
    if (!watching.has(connection)) {
      if (watchers >= MAX_WATCHERS) throw new RpcError(`This node has ${watchers} watchers, its limit: poll $members instead`, "OVERLOADED", { processed: false });
      watching.add(connection);
      watchers++;
      const unsubscribe = membership.onMemberEvent(({ type, member }) => {
        if (connection.bufferedBytes > MAX_WATCH_BACKLOG_BYTES) connection.close();
        else connection.notify("$watch", [{ type, member }]);
      });
      connection.onClose(() => {
        unsubscribe();
        watchers--;
      });
    }
    // Subscribed first, in the same turn: the list is answered before any change it does not hold.
    return { members: membership.list() };
  };
  return {
    $ping: () => ({ node: nodeId, time: Date.now(), state: lifecycle.state }),
    $info: () => {
      const runtime = sources.runtime();
      return { node: nodeId, version, runtime: runtime?.name, runtimeVersion: runtime?.version, state: lifecycle.state, services: router.describe() };
    },
    $members: () => membership.list(),
    $watch: watch,
    "$swim.ping": swim,
    "$swim.ping-req": swim,
    "$swim.sync": swim,
  };
}
