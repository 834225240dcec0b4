import { errorText } from "../error-text.ts";
import type { Logger } from "../log.ts";

/** The variable that sets each listener's port, for the error that names it. */
const PORT_VARIABLES = { RPC: "EBB_RPC_PORT", HTTP: "EBB_HTTP_PORT", metrics: "EBB_METRICS_ADDR" } as const;

/** Opens a listener; a failure names the listener, address and variable (a port in use is the usual one). */
export async function bound<T>(what: keyof typeof PORT_VARIABLES, host: string, port: number, open: () => Promise<T>): Promise<T> {
  try {
    return await open();
  } catch (error) {
    throw new Error(`Cannot listen for ${what} on ${host}:${port} (${PORT_VARIABLES[what]}): ${errorText(error)}`, { cause: error });
  }
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
