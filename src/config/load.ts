import { BENCH_SWITCHES, DEMO_SWITCHES } from "../demo/switches.ts";
import { ConfigError, type Env, parseVariables, unknownVariables, type ValuesOf, valuesOf } from "./table.ts";
import { checkExposure } from "./secure.ts";
import { type TlsSettings, tlsSettings } from "../security/tls.ts";
import { CONFIG_VARIABLES, LIMIT_VARIABLES, MAIN_VARIABLES, SWIM_VARIABLES, TLS_VARIABLES } from "./variables.ts";

export { ConfigError };

/** The node's configuration, read from EBB_* variables; its shape follows the groups of variables.ts. */
export interface Config extends ValuesOf<typeof MAIN_VARIABLES> {
  /** What one peer can make the RPC server hold: EBB_MAX_CONNECTIONS, EBB_READ_TIMEOUT_MS and the rest. */
  limits: ValuesOf<typeof LIMIT_VARIABLES>;
  /** Membership timings: the EBB_SWIM_* subset of SwimConfig. */
  swim: ValuesOf<typeof SWIM_VARIABLES>;
  /** EBB_TLS_*: undefined when TLS is off. */
  tls: TlsSettings | undefined;
  /** EBB_* variables set but unknown (likely typos), as warnings to log. */
  warnings: string[];
}

// Read by the demo service and the restart bench, not by the node: known, so never "unknown".
const KNOWN = [...CONFIG_VARIABLES, ...Object.values(DEMO_SWITCHES), ...Object.values(BENCH_SWITCHES)].map((row) => row.name);

/** Reads the configuration from an environment; throws `ConfigError` naming every bad variable. */
export function loadConfig(env: Env): Config {
  const parsed = parseVariables(CONFIG_VARIABLES, env);
  const main = valuesOf(MAIN_VARIABLES, parsed);
  const tls = tlsSettings(valuesOf(TLS_VARIABLES, parsed));
  checkExposure({ ...main, tls: tls !== undefined });
  return {
    ...main,
    limits: valuesOf(LIMIT_VARIABLES, parsed),
    swim: valuesOf(SWIM_VARIABLES, parsed),
    tls,
    warnings: unknownVariables(env, KNOWN),
  };
}

/** A complete configuration from defaults and overrides, for embedding and tests. */
export function configWith(overrides: Partial<Config> = {}): Config {
  return { ...loadConfig({}), ...overrides };
}
