import type { HttpServer, ServeOptions } from "../../runtime/types.ts";

/**
 * Deno.serve; `stop()` is `shutdown()`, which lets requests in flight finish.
 * (Aborting the server's signal instead would cut them off.)
 */
export async function serve(options: ServeOptions): Promise<HttpServer> {
  const server = Deno.serve({ hostname: options.host, port: options.port, onListen() {} }, options.fetch);
  let stopping: Promise<void> | undefined;
  return {
    host: server.addr.hostname,
    port: server.addr.port,
    stop: () => (stopping ??= server.shutdown()),
  };
}
