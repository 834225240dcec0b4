/// <reference types="bun-types" />
import type { HttpServer, ServeOptions, ServerTls } from "../../runtime/types.ts";

/** Bun's idle timeout is whole seconds, at most 255. */
const BUN_MAX_IDLE_TIMEOUT_S = 255;

/** Bun.serve; `stop()` lets requests in flight finish (Bun's graceful stop), on every listener a TLS reload replaced too. */
export async function serve(options: ServeOptions): Promise<HttpServer> {
  const idleTimeout = Math.min(BUN_MAX_IDLE_TIMEOUT_S, Math.ceil(options.idleTimeoutMs / 1000));
  const open = (port: number, tls: HttpsTls | undefined) => Bun.serve({ hostname: options.host, port, idleTimeout, fetch: options.fetch, ...(tls && { tls }) });
  let current = options.tls;
  let server = open(options.port, current);
  const port = server.port ?? options.port;
  /** Replaced listeners, finishing their requests. */
  const retired: Promise<void>[] = [];
  let stopping: Promise<void> | undefined;
  return {
    host: server.hostname ?? options.host,
    port,
    stop: () => (stopping ??= Promise.all([server.stop(false), ...retired]).then(() => undefined)),
    ...(options.tls && {
      async reloadTls(tls: HttpsTls) {
        if (stopping) return;
        // A graceful stop frees the port at once; the old listener's requests finish on it.
        retired.push(server.stop(false));
        try {
          server = open(port, tls);
        } catch (error) {
          server = open(port, current);
          throw error;
        }
        current = tls;
      },
    }),
  };
}

type HttpsTls = Omit<ServerTls, "requestCert">;
