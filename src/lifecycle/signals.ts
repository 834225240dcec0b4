import type { Logger } from "../log.ts";
import { type Clock, realClock } from "../runtime/clock.ts";
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
 * A second signal this soon after the first is the same one delivered twice: a terminal sends
 * Ctrl-C's SIGINT to the whole foreground process group, and a launcher in that group (`deno
 * task`, `npx`) forwards it to the node as well, within a millisecond or so. A person pressing
 * Ctrl-C again takes longer than this.
 */
export const DUPLICATE_SIGNAL_MS = 500;

/** The window is measured on a monotonic clock: a wall clock stepped back must not swallow every later Ctrl-C. */
const MONOTONIC: Clock = { now: () => performance.now(), setTimer: realClock.setTimer };

/**
 * The first SIGTERM or SIGINT drains the node and exits with the drain's code;
 * a second one, DUPLICATE_SIGNAL_MS or more later, exits at once with 130 (SIGINT) or 143 (SIGTERM).
 */
export function exitOnSignals(runtime: Runtime, node: Drainable, log: Logger, clock: Clock = MONOTONIC): () => void {
  let firstAt: number | undefined;
  const on = (signal: SignalName) => () => {
    const now = clock.now();
    if (firstAt !== undefined && now - firstAt < DUPLICATE_SIGNAL_MS) {
      log.debug(`${signal} received again ${now - firstAt} ms after the first: the same signal delivered twice (terminal and launcher), still draining`);
      return;
    }
    if (firstAt !== undefined) {
      log.warn(`${signal} received again: exiting now`);
      runtime.exit(signal === "SIGINT" ? EXIT_CODES.forcedInt : EXIT_CODES.forcedTerm);
      return;
    }
    firstAt = now;
    log.info(`${signal} received: draining`);
    void node.shutdown(signal).then((summary) => runtime.exit(summary.exitCode));
  };
  const removers = [runtime.onSignal("SIGTERM", on("SIGTERM")), runtime.onSignal("SIGINT", on("SIGINT"))];
  return () => removers.forEach((remove) => remove());
}
