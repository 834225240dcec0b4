import { errorText } from "../error-text.ts";

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
