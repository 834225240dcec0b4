/// <reference types="bun-types" />
import type { HttpServer, ServeOptions } from "../../runtime/types.ts";

/** Bun.serve; `stop()` lets requests in flight finish (Bun's graceful stop). */
export async function serve(options: ServeOptions): Promise<HttpServer> {
  const server = Bun.serve({ hostname: options.host, port: options.port, fetch: options.fetch });
  let stopping: Promise<void> | undefined;
  return {
    host: server.hostname ?? options.host,
    port: server.port ?? options.port,
    stop: () => (stopping ??= server.stop(false)),
  };
}
