import type { Logger } from "../log.ts";
import { errorText } from "../error-text.ts";

/** What a startup hook may use besides its signal. */
export interface StartupContext {
  /**
   * A warm-up call to this node's own service, in process: validation, handler
   * and counter as for any call, but admitted while the node is still starting
   * (callers from outside get UNAVAILABLE until the hooks are done).
   */
  call(method: string, input?: unknown): Promise<unknown>;
}

const NO_SERVICES: StartupContext = { call: (method) => Promise.reject(new Error(`No node to run "${method}" on`)) };

/** A startup hook: warm a cache, make warm-up calls. It should stop early when `signal` aborts. */
export type StartupHook = (signal: AbortSignal, context: StartupContext) => void | Promise<void>;

/** Why startup did not finish. */
export class StartupError extends Error {
  override readonly name = "StartupError";
  constructor(
    message: string,
    /** The hook that failed or was running, if any. */
    readonly hook: string | undefined,
    /** True when startup was aborted from outside (a signal, shutdown()). */
    readonly aborted: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Runs hooks one after another, in registration order, bounded by `timeoutMs`
 * in all. Each hook gets a signal that aborts on the timeout or on `abort`.
 */
export async function runStartupHooks(
  hooks: readonly { name: string; run: StartupHook }[],
  options: { timeoutMs: number; abort: AbortSignal; log: Logger; context?: StartupContext },
): Promise<void> {
  const context = options.context ?? NO_SERVICES;
  const deadline = AbortSignal.timeout(options.timeoutMs);
  const signal = AbortSignal.any([deadline, options.abort]);
  for (const { name, run } of hooks) {
    if (signal.aborted) throw stopped(name, options);
    const started = Date.now();
    options.log.info(`startup hook "${name}" running`);
    try {
      // Race the hook against the signal: a hook that ignores its signal must not hold startup.
      await Promise.race([Promise.resolve().then(() => run(signal, context)), whenAborted(signal)]);
    } catch (error) {
      if (signal.aborted) throw stopped(name, options);
      throw new StartupError(`Startup hook "${name}" failed: ${errorText(error)}`, name, false, { cause: error });
    }
    if (signal.aborted) throw stopped(name, options);
    options.log.info(`startup hook "${name}" done`, { ms: Date.now() - started });
  }
}

function stopped(name: string, options: { timeoutMs: number; abort: AbortSignal }): StartupError {
  if (options.abort.aborted) return new StartupError(`Startup aborted during hook "${name}"`, name, true);
  return new StartupError(`Startup hook "${name}" timed out: startup took longer than ${options.timeoutMs} ms`, name, false);
}

function whenAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}
