import type { Logger } from "../log.ts";
import type { Runtime, SignalName } from "../runtime/types.ts";

/** Exit codes of a node process. */
export const EXIT_CODES = {
  /** Drained cleanly. */
  ok: 0,
  /** The drain timed out and work was cancelled. */
  drainTimedOut: 1,
  /** Bad configuration. */
  badConfig: 2,
  /** Startup failed: a hook failed or timed out, or a listener could not bind its port. */
  startupFailed: 3,
  /** Forced by a second SIGINT. */
  forcedInt: 130,
  /** Forced by a second SIGTERM. */
  forcedTerm: 143,
} as const;

/** What a signal drains: a node. */
export interface Drainable {
  shutdown(reason: string): Promise<{ exitCode: number }>;
}

/**
 * The first SIGTERM or SIGINT drains the node and exits with the drain's code;
 * a second one exits at once with 130 (SIGINT) or 143 (SIGTERM).
 */
export function exitOnSignals(runtime: Runtime, node: Drainable, log: Logger): () => void {
  let received = 0;
  const on = (signal: SignalName) => () => {
    received++;
    if (received > 1) {
      log.warn(`${signal} received again: exiting now`);
      runtime.exit(signal === "SIGINT" ? EXIT_CODES.forcedInt : EXIT_CODES.forcedTerm);
    }
    log.info(`${signal} received: draining`);
    void node.shutdown(signal).then((summary) => runtime.exit(summary.exitCode));
  };
  const removers = [runtime.onSignal("SIGTERM", on("SIGTERM")), runtime.onSignal("SIGINT", on("SIGINT"))];
  return () => removers.forEach((remove) => remove());
}
