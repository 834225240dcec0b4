import { errorText } from "../error-text.ts";
import type { Logger } from "../log.ts";

/** The variables that set each listener's host and port, for the error that names the one to change. */
const LISTENER_VARIABLES = {
  RPC: { host: "EBB_HOST", port: "EBB_RPC_PORT" },
  HTTP: { host: "EBB_HOST", port: "EBB_HTTP_PORT" },
  metrics: { host: "EBB_METRICS_ADDR", port: "EBB_METRICS_ADDR" },
} as const;

/** Opens a listener; a failure names the listener, the address, the variable to change and why, the same on every runtime. */
export async function bound<T>(what: keyof typeof LISTENER_VARIABLES, host: string, port: number, open: () => Promise<T>): Promise<T> {
  try {
    return await open();
  } catch (error) {
    const { blame, reason } = listenFailure(error, host, port);
    const variables = LISTENER_VARIABLES[what];
    const variable = blame === "both" ? [...new Set([variables.host, variables.port])].join(", ") : variables[blame];
    throw new Error(`Cannot listen for ${what} on ${host}:${port} (${variable}): ${reason}`, { cause: error });
  }
}

/**
 * Why a listener could not open, in words that read the same on Bun and Deno, and
 * whether the host or the port is to blame. Both runtimes set Node's error codes
 * (EADDRINUSE, EADDRNOTAVAIL, EACCES); a name that does not resolve has none on
 * Bun ("Failed to listen at …", or EADDRINUSE from its HTTP server) and a lookup
 * message on Deno.
 */
export function listenFailure(error: unknown, host: string, port: number): { blame: "host" | "port" | "both"; reason: string } {
  const code = (error as { code?: unknown } | null)?.code;
  const text = errorText(error);
  // Port 0 is never in use: Bun's HTTP server says EADDRINUSE for a host it cannot bind.
  if (code === "EADDRINUSE" && port !== 0) return { blame: "port", reason: `address already in use: another process listens on port ${port}` };
  if (code === "EACCES") return { blame: "port", reason: `permission denied: port ${port} needs privileges (ports below 1024 do)` };
  if (code === "EADDRNOTAVAIL") return { blame: "host", reason: `${JSON.stringify(host)} is not an address of this machine (${text})` };
  // Besides lookup errors, only Bun's ways of saying it (no code, or EADDRINUSE on port 0) are put down to a name
  // that does not resolve: any other error (EMFILE, say) is shown as the runtime gave it.
  const bunLookup = code === undefined || (code === "EADDRINUSE" && port === 0);
  if (/lookup|resolve|getaddrinfo|ENOTFOUND|EAI_/i.test(`${String(code)} ${text}`) || (bunLookup && !isIpAddress(host))) {
    return { blame: "host", reason: `${JSON.stringify(host)} does not resolve to an address of this machine` };
  }
  return { blame: "both", reason: text };
}

/** An IPv4 or IPv6 literal (no lookup needed). */
function isIpAddress(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(":");
}

/** Logs where a node listens, in one line: RPC, then HTTP and the metrics listener when they exist. */
export function logListening(log: Logger, runtime: string, listeners: { rpc: Address; http?: Address; metrics?: Address }): void {
  const where = Object.entries(listeners).flatMap(([name, at]) => (at ? [[name, `${at.host}:${at.port}`] as const] : []));
  const text = where.map(([name, at], i) => (i === 0 ? at : `${name} ${at}`)).join(", ");
  log.info(`listening on ${text}`, { ...Object.fromEntries(where), runtime });
}

interface Address {
  host: string;
  port: number;
}
