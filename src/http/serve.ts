import type { Logger } from "../log.ts";
import type { HttpServer, Runtime } from "../runtime/types.ts";
import { splitAddress } from "../runtime/address.ts";
import { bound } from "../runtime/bind.ts";
import { createHttpApp, createMetricsApp, type HttpAppOptions, type MetricsAppOptions } from "./app.ts";

/** After the HTTP listener fails (out of descriptors), how long before it serves again. */
export const HTTP_ACCEPT_RETRY_MS = 1_000;

/** Where and how the node's HTTP listener serves. */
export interface ServeHttpOptions extends HttpAppOptions {
  host: string;
  port: number;
  /** EBB_HTTP_IDLE_TIMEOUT_MS. */
  idleTimeoutMs: number;
  log: Logger;
}

/** Serves the node's HTTP app; a failed accept loop is logged and served again after HTTP_ACCEPT_RETRY_MS. */
export function serveHttp(runtime: Runtime, options: ServeHttpOptions): Promise<HttpServer> {
  const { host, port, idleTimeoutMs, log } = options;
  return runtime.serve({
    host,
    port,
    fetch: createHttpApp(options).fetch,
    idleTimeoutMs,
    acceptRetryMs: HTTP_ACCEPT_RETRY_MS,
    onListenerError: (error, retryMs) => log.warn(`HTTP listener failed: serving again in ${retryMs} ms`, { error }),
    onListenerRecovered: () => log.info("HTTP listener serving again"),
  });
}

/** Serves /metrics and the probes on their own listener at `address` (EBB_METRICS_ADDR), so they can stay off the public interface. */
export function serveMetrics(runtime: Runtime, address: string, options: MetricsAppOptions & { log: Logger; idleTimeoutMs: number }): Promise<HttpServer> {
  const [host, port] = splitAddress(address);
  const { log, idleTimeoutMs } = options;
  return bound("metrics", host, port, () =>
    runtime.serve({
      host,
      port,
      fetch: createMetricsApp(options).fetch,
      idleTimeoutMs,
      acceptRetryMs: HTTP_ACCEPT_RETRY_MS,
      onListenerError: (error, retryMs) => log.warn(`metrics listener failed: serving again in ${retryMs} ms`, { error }),
      onListenerRecovered: () => log.info("metrics listener serving again"),
    }),
  );
}
