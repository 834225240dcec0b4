import type { Lifecycle } from "../lifecycle/state.ts";
import type { NodeMembership } from "../membership/node-membership.ts";
import type { Runtime } from "../runtime/types.ts";
import type { BuiltinMethod } from "./dispatch.ts";
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

/** ebb's own methods on every node: `$ping`, `$info`, `$members`, and the membership's `$swim.*`. */
export function nodeBuiltins(sources: BuiltinSources): Record<string, BuiltinMethod> {
  const { nodeId, version, lifecycle, router, membership } = sources;
  const swim: BuiltinMethod = (input, peer) => membership.request(input, peer);
  return {
    $ping: () => ({ node: nodeId, time: Date.now(), state: lifecycle.state }),
    $info: () => {
      const runtime = sources.runtime();
      return { node: nodeId, version, runtime: runtime?.name, runtimeVersion: runtime?.version, state: lifecycle.state, services: router.describe() };
    },
    $members: () => membership.list(),
    "$swim.ping": swim,
    "$swim.ping-req": swim,
    "$swim.sync": swim,
  };
}
