import type { Logger } from "../log.ts";
import type { HttpServer, Runtime } from "../runtime/types.ts";
import { splitAddress } from "../runtime/address.ts";
import { bound } from "../runtime/bind.ts";
import { createHttpApp, createMetricsApp, type HttpAppOptions, type MetricsAppOptions } from "./app.ts";
import type { Sample } from "./metrics.ts";

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
  return serveApp(runtime, "HTTP", options.host, options.port, createHttpApp(options).fetch, options);
}

/** Serves /metrics and the probes on their own listener at `address` (EBB_METRICS_ADDR), so they can stay off the public interface. */
export function serveMetrics(runtime: Runtime, address: string, options: MetricsAppOptions & { log: Logger; idleTimeoutMs: number }): Promise<HttpServer> {
  const [host, port] = splitAddress(address);
  return bound("metrics", host, port, () => serveApp(runtime, "metrics", host, port, createMetricsApp(options).fetch, options));
}

/** One HTTP listener: a failed accept loop is logged and served again after HTTP_ACCEPT_RETRY_MS. */
function serveApp(runtime: Runtime, name: string, host: string, port: number, fetch: (request: Request) => Response | Promise<Response>, options: { log: Logger; idleTimeoutMs: number }): Promise<HttpServer> {
  const { log, idleTimeoutMs } = options;
  return runtime.serve({
    host,
    port,
    fetch,
    idleTimeoutMs,
    acceptRetryMs: HTTP_ACCEPT_RETRY_MS,
    onListenerError: (error, retryMs) => log.warn(`${name} listener failed: serving again in ${retryMs} ms`, { error }),
    onListenerRecovered: () => log.info(`${name} listener serving again`),
  });
}

/** Where the node's HTTP listeners go: the app on EBB_HTTP_PORT (null: none), /metrics apart on EBB_METRICS_ADDR when set. */
export interface NodeHttpOptions extends Omit<HttpAppOptions, "metrics"> {
  host: string;
  port: number | null;
  metricsAddr: string | undefined;
  idleTimeoutMs: number;
  metrics(): Sample[];
  log: Logger;
}

/** Opens the node's HTTP listeners; with EBB_METRICS_ADDR, the main one no longer serves /metrics. */
export async function serveNodeHttp(runtime: Runtime, options: NodeHttpOptions): Promise<{ http?: HttpServer; metrics?: HttpServer }> {
  const { host, port, metricsAddr } = options;
  const http = port === null ? undefined : await bound("HTTP", host, port, () => serveHttp(runtime, { ...options, port, metrics: metricsAddr ? undefined : options.metrics }));
  const metrics = metricsAddr ? await serveMetrics(runtime, metricsAddr, options) : undefined;
  return { http, metrics };
}
