import { z } from "zod";
import { KEYGEN_BYTES, newClusterKey } from "../config/cluster-key.ts";
import { defineCommand } from "./command.ts";

/** `ebb keygen`: a fresh EBB_CLUSTER_KEY on stdout. */
export const keygenCommand = defineCommand({
  name: "keygen",
  summary: "print a new random cluster key for EBB_CLUSTER_KEY",
  usage: ["keygen"],
  options: {},
  flags: z.object({}),
  details: `Prints ${KEYGEN_BYTES} random bytes (${KEYGEN_BYTES * 8} bits) in base64, one line. Give every node and
client of a cluster the same key, e.g. EBB_CLUSTER_KEY=$(ebb keygen) once, then
keep it in your secret store. Keys that are not random enough are refused at startup.
To rotate, list the new key beside the old one (EBB_CLUSTER_KEY=old,new, then new,old,
then new; README "Rotating the cluster key"); "ebb token" prints the HTTP token of a key.`,
  run(runtime) {
    runtime.write("stdout", `${newClusterKey()}\n`);
    return Promise.resolve(0);
  },
});
