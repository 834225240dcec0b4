import type { InputOf, MethodSpec, OutputOf, RetryPolicy, ServiceContract } from "./contract.ts";
import { type CallOptions, DEFAULT_CALL_TIMEOUT_MS, type Transport } from "./channel.ts";
import { RpcError } from "./errors.ts";

/** A typed client of one service: one function per method of its contract. */
export type ServiceClient<C extends ServiceContract> = {
  readonly [K in keyof C["methods"] & string]: (input: InputOf<C["methods"][K]>, options?: CallOptions) => Promise<OutputOf<C["methods"][K]>>;
};

/**
 * Creates a client typed from the same contract the server registers:
 * a wrong method name or input is a compile error, with no code generation.
 * Each method's `timeoutMs` is the deadline of calls that set none; its
 * `retry` policy tries failed calls again within that deadline.
 */
export function createClient<C extends ServiceContract>(contract: C, transport: Transport): ServiceClient<C> {
  const client: Record<string, (input: unknown, options?: CallOptions) => Promise<unknown>> = {};
  for (const [method, spec] of Object.entries(contract.methods as Record<string, MethodSpec>)) {
    const name = `${contract.name}.${method}`;
    const { timeoutMs, retry, hedgeDelayMs } = spec;
    const withDefault = (options: CallOptions | undefined) => {
      if ((timeoutMs === undefined || options?.timeoutMs !== undefined) && (hedgeDelayMs === undefined || options?.hedgeDelayMs !== undefined)) return options;
      return { ...options, timeoutMs: options?.timeoutMs ?? timeoutMs, hedgeDelayMs: options?.hedgeDelayMs ?? hedgeDelayMs };
    };
    client[method] = retry
      ? (input, options) => callWithRetries(transport, name, input, withDefault(options), retry)
      : (input, options) => transport.call(name, input, withDefault(options));
  }
  return Object.freeze(client) as ServiceClient<C>;
}

/**
 * Tries `method` up to `policy.maxAttempts` times while it fails with a retryable code, waiting a
 * jittered, growing backoff between tries; every try and wait fits in the call's one deadline, and
 * its signal ends the waiting too. The last error is the caller's.
 */
async function callWithRetries(transport: Transport, method: string, input: unknown, options: CallOptions = {}, policy: RetryPolicy): Promise<unknown> {
  const deadline = Date.now() + (options.timeoutMs ?? transport.defaultTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS);
  let backoffMs = policy.initialBackoffMs ?? 100;
  for (let attempt = 1; ; attempt++) {
    try {
      return await transport.call(method, input, { ...options, timeoutMs: Math.max(1, deadline - Date.now()) });
    } catch (error) {
      const code = error instanceof RpcError ? error.code : undefined;
      if (attempt >= policy.maxAttempts || code === undefined || !policy.retryableCodes.includes(code)) throw error;
      if (transport.allowRetry && !transport.allowRetry()) throw error;
      const waitMs = Math.random() * backoffMs;
      // No time left for the wait and one more try: the caller has the error now rather than at its deadline.
      if (Date.now() + waitMs >= deadline) throw error;
      if (!options.signal?.aborted) await pause(waitMs, options.signal);
      // Cancelled while waiting: the caller hears that, not the error before it.
      if (options.signal?.aborted) throw RpcError.from(options.signal.reason ?? new DOMException("The call was cancelled", "AbortError"), "CANCELLED");
      backoffMs = Math.min(backoffMs * (policy.backoffMultiplier ?? 2), policy.maxBackoffMs ?? 5_000);
    }
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
