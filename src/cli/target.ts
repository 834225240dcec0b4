import type { ClusterClientOptions } from "../cluster/client.ts";
import { ConfigError, defaultValue, readVariables } from "../config/table.ts";
import type { Keyring } from "../rpc/auth.ts";
import { MAIN_VARIABLES, TLS_VARIABLES } from "../config/variables.ts";
import { splitAddress } from "../runtime/address.ts";
import type { Runtime, Socket } from "../runtime/types.ts";
import { clientTlsSettings, withTls } from "../security/tls.ts";
import { addressList, type OptionSpec, UsageError } from "./command.ts";

/** `--addr` and `--seeds`: which nodes a client command talks to. */
export const TARGET_OPTIONS: Record<string, OptionSpec> = {
  addr: { type: "string", value: "host:port,...", description: "call these nodes directly (no discovery)" },
  seeds: { type: "string", value: "host:port,...", description: "discover the cluster through these nodes (default: EBB_SEEDS)" },
};

/** The flags' part that names the target. */
export const targetFlags = { addr: addressList.optional(), seeds: addressList.optional() };

/** Where a client command sends its calls. */
export interface Target {
  mode: "addr" | "seeds";
  addresses: string[];
  /** For messages: `seeds 127.0.0.1:7400`. */
  label: string;
}

/**
 * `--addr` wins, then `--seeds`, then `EBB_SEEDS`; with none of them, the
 * default RPC port on this machine.
 */
export function resolveTarget(flags: { addr?: string[]; seeds?: string[] }, env: Record<string, string | undefined>): Target {
  if (flags.addr && flags.seeds) throw new UsageError("Give --addr or --seeds, not both");
  let target: Target;
  if (flags.addr) target = { mode: "addr", addresses: flags.addr, label: "" };
  else if (flags.seeds) target = { mode: "seeds", addresses: flags.seeds, label: "" };
  else if (env.EBB_SEEDS) {
    const parsed = MAIN_VARIABLES.seeds.schema.safeParse(env.EBB_SEEDS);
    if (!parsed.success) throw new UsageError(`EBB_SEEDS="${env.EBB_SEEDS}" ${parsed.error.issues[0]?.message}`);
    target = { mode: "seeds", addresses: parsed.data, label: "" };
  } else target = { mode: "addr", addresses: [`127.0.0.1:${defaultValue(MAIN_VARIABLES.rpcPort)}`], label: "" };
  target.label = `${target.mode} ${target.addresses.join(",")}`;
  return target;
}

/** The cluster client options that reach `target`, with the cluster key from EBB_CLUSTER_KEY when it is set. */
export function clusterOptions(target: Target, env: Record<string, string | undefined>): Omit<ClusterClientOptions, "runtime"> {
  const where = target.mode === "addr" ? { addresses: target.addresses } : { seeds: target.addresses };
  return { ...where, clusterKey: clusterKeyFrom(env) };
}

/** EBB_CLUSTER_KEY (a key or a keyring) and EBB_CLUSTER_ID, when a key is set: client commands prove them as nodes do. */
export function clusterKeyFrom(env: Record<string, string | undefined>): Keyring | undefined {
  let values: { clusterKey: readonly string[] | undefined; clusterId: string };
  try {
    values = readVariables({ clusterKey: MAIN_VARIABLES.clusterKey, clusterId: MAIN_VARIABLES.clusterId }, env);
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(error.problems.join("; "));
    throw error;
  }
  return values.clusterKey && { keys: values.clusterKey, clusterId: values.clusterId };
}

/** `runtime` speaking TLS when EBB_TLS_CA is set (with EBB_TLS_CERT/KEY as a client certificate), as nodes do; a bad variable is a usage error. */
export function clientRuntime(runtime: Runtime, env: Record<string, string | undefined>): Runtime {
  try {
    const client = clientTlsSettings(readVariables(TLS_VARIABLES, env));
    return client ? withTls(runtime, { client }) : runtime;
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(error.problems.join("; "));
    throw error;
  }
}

/** `[0, 0, "$ping", []]` in msgpack: what the probe sends; an ebb node answers it, an HTTP server answers 400. */
const PING_REQUEST = new Uint8Array([0x94, 0x00, 0x00, 0xa5, ...new TextEncoder().encode("$ping"), 0x90]);

/**
 * Whether `address` answers a msgpack-rpc request in HTTP: someone gave a node's
 * HTTP port where its RPC port belongs. Asked only after a call there failed, so a
 * working node never sees the probe.
 */
export function answersHttp(runtime: Runtime, address: string, timeoutMs = 1_000): Promise<boolean> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve) => {
    let head = "";
    let socket: Socket | undefined;
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      resolve(head.startsWith("HTTP/"));
      socket?.close();
    };
    const timer = setTimeout(done, timeoutMs);
    const decoder = new TextDecoder();
    runtime
      .connect({
        host,
        port,
        open: (opened) => {
          socket = opened;
          return {
            data(chunk) {
              head += decoder.decode(chunk, { stream: true });
              if (head.length >= 5) done();
            },
            close: done,
          };
        },
      })
      // A connection that opens after the timeout is closed unused.
      .then((opened) => (finished ? opened.close() : opened.write(PING_REQUEST)), done);
  });
}

/** A hint for the addresses of `target` that answer in HTTP, or undefined when none does. */
export async function httpPortHint(runtime: Runtime, target: Target): Promise<string | undefined> {
  const http = (await Promise.all(target.addresses.map(async (addr) => ((await answersHttp(runtime, addr)) ? addr : undefined)))).filter((a) => a !== undefined);
  if (http.length === 0) return undefined;
  return `hint: ${http.join(", ")} answer${http.length === 1 ? "s" : ""} in HTTP: that is a node's EBB_HTTP_PORT; ebb's client commands speak msgpack-rpc to its EBB_RPC_PORT (${defaultValue(MAIN_VARIABLES.rpcPort)} by default)`;
}
