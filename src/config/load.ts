import { ConfigSchema } from "./schema.ts";

/** The node's configuration, read from EBB_* variables. */
export interface Config {
  nodeId: string;
  host: string;
  rpcPort: number;
  maxMessageBytes: number;
}

/** Every bad EBB_* variable at once, named with the reason. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`Invalid configuration: ${problems.join("; ")}`);
  }
}

/** Reads the configuration from an environment; throws `ConfigError` naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const relevant: Record<string, string> = {};
  for (const key of Object.keys(ConfigSchema.shape)) {
    const value = env[key];
    // An empty variable is unset, as shells and orchestrators often leave them.
    if (value !== undefined && value !== "") relevant[key] = value;
  }
  const parsed = ConfigSchema.safeParse(relevant);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        const name = String(issue.path[0]);
        return `${name}=${JSON.stringify(relevant[name] ?? "")} ${issue.message}`;
      }),
    );
  }
  const c = parsed.data;
  return {
    nodeId: c.EBB_NODE_ID ?? `n-${crypto.randomUUID().slice(0, 6)}`,
    host: c.EBB_HOST,
    rpcPort: c.EBB_RPC_PORT,
    maxMessageBytes: c.EBB_MAX_MESSAGE_BYTES,
  };
}
