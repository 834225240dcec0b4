/// <reference types="bun-types" />
import type { HttpServer, ServeOptions } from "../../runtime/types.ts";

/** Bun's idle timeout is whole seconds, at most 255. */
const BUN_MAX_IDLE_TIMEOUT_S = 255;

/** Bun.serve; `stop()` lets requests in flight finish (Bun's graceful stop). */
export async function serve(options: ServeOptions): Promise<HttpServer> {
  const idleTimeout = Math.min(BUN_MAX_IDLE_TIMEOUT_S, Math.ceil(options.idleTimeoutMs / 1000));
  const server = Bun.serve({ hostname: options.host, port: options.port, idleTimeout, fetch: options.fetch, ...(options.tls && { tls: options.tls }) });
  let stopping: Promise<void> | undefined;
  return {
    host: server.hostname ?? options.host,
    port: server.port ?? options.port,
    stop: () => (stopping ??= server.stop(false)),
  };
}
