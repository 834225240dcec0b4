import { z } from "zod";
import { httpToken } from "../rpc/auth.ts";
import { defineCommand, UsageError } from "./command.ts";
import { clusterKeyFrom } from "./target.ts";

/** `ebb token`: the HTTP bearer token of the cluster key in EBB_CLUSTER_KEY, for EBB_CLUSTER_ID. */
export const tokenCommand = defineCommand({
  name: "token",
  summary: "print the HTTP bearer token of the cluster key (EBB_CLUSTER_KEY, EBB_CLUSTER_ID)",
  usage: ["token"],
  options: {},
  flags: z.object({}),
  details: `Prints the token HTTP callers send as "Authorization: Bearer <token>" to /rpc/:method and /cluster
of a keyed node: base64url(HMAC-SHA256(key, "ebb-http-token/1/" + length of id + ":" + id)), derived
from the first (primary) key of EBB_CLUSTER_KEY and from EBB_CLUSTER_ID (default "ebb"). The key
itself never crosses the wire; nodes accept the token of any key of their ring.
  EBB_CLUSTER_KEY=... ebb token`,
  run(runtime) {
    const ring = clusterKeyFrom(runtime.env());
    if (!ring) throw new UsageError('EBB_CLUSTER_KEY is not set: "ebb token" derives the token from it (make a key with "ebb keygen")');
    runtime.write("stdout", `${httpToken(ring.keys[0]!, ring.clusterId)}\n`);
    return Promise.resolve(0);
  },
});
