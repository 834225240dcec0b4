import { z } from "zod";

/** Documented defaults of every EBB_* variable. */
export const DEFAULTS = {
  host: "127.0.0.1", // EBB_HOST: address the RPC listener binds
  rpcPort: 7400, // EBB_RPC_PORT: msgpack-rpc TCP port; 0 picks a free one
  maxMessageBytes: 8 * 1024 * 1024, // EBB_MAX_MESSAGE_BYTES: larger messages close their connection
} as const;

const port = z.coerce
  .number({ error: "must be a number" })
  .int({ error: "must be a whole number" })
  .min(0, { error: "must be between 0 and 65535" })
  .max(65535, { error: "must be between 0 and 65535" });

/** The EBB_* environment, parsed. Unset variables take their defaults. */
export const ConfigSchema = z.object({
  EBB_NODE_ID: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,64}$/, { error: "must be 1-64 letters, digits or _ . : -" })
    .optional(),
  EBB_HOST: z.string().min(1, { error: "must not be empty" }).default(DEFAULTS.host),
  EBB_RPC_PORT: port.default(DEFAULTS.rpcPort),
  EBB_MAX_MESSAGE_BYTES: z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be a whole number" })
    .min(1024, { error: "must be at least 1024" })
    .max(1024 * 1024 * 1024, { error: "must be at most 1 GiB (1073741824)" })
    .default(DEFAULTS.maxMessageBytes),
});

/** Descriptions for `--help`, one per variable. */
export const DESCRIPTIONS: Record<keyof z.input<typeof ConfigSchema>, string> = {
  EBB_NODE_ID: "this node's id in logs and $info (default: random, e.g. n-3f9a1c)",
  EBB_HOST: `address the RPC port binds (default ${DEFAULTS.host})`,
  EBB_RPC_PORT: `msgpack-rpc TCP port, 0 picks a free one (default ${DEFAULTS.rpcPort})`,
  EBB_MAX_MESSAGE_BYTES: `largest message accepted; a larger one closes its connection (default ${DEFAULTS.maxMessageBytes})`,
};
