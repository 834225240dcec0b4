import type { HttpServer, ServeOptions } from "../../runtime/types.ts";

/**
 * Deno.serve; `stop()` is `shutdown()`, which lets requests in flight finish.
 * (Aborting the server's signal instead would cut them off.)
 *
 * Deno.serve has no timeouts (`idleTimeoutMs` is not applied), and its accept
 * loop ends for good on an accept error such as "Too many open files": its
 * `finished` rejects (uncaught, that would exit the process). That rejection
 * is caught here, reported, and the same address is served again after
 * `acceptRetryMs`, until `stop()`.
 */
export async function serve(options: ServeOptions): Promise<HttpServer> {
  const tls = options.tls && { cert: options.tls.cert, key: options.tls.key };
  const open = (port: number) => Deno.serve({ hostname: options.host, port, onListen() {}, ...tls }, options.fetch);
  // The first listen fails to the caller (a port in use); later ones are retried.
  let current: Deno.HttpServer<Deno.NetAddr> | undefined = open(options.port);
  const { hostname: host, port } = current.addr;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let stopping: Promise<void> | undefined;

  const failed = (error: unknown) => {
    current = undefined;
    if (stopping) return;
    options.onListenerError?.(error, options.acceptRetryMs);
    retry = setTimeout(reopen, options.acceptRetryMs);
  };
  const watch = (server: Deno.HttpServer<Deno.NetAddr>) => {
    server.finished.catch((error: unknown) => {
      if (current === server) failed(error);
    });
  };
  const reopen = () => {
    retry = undefined;
    try {
      current = open(port);
    } catch (error) {
      failed(error);
      return;
    }
    watch(current);
    options.onListenerRecovered?.();
  };
  watch(current);

  return {
    host,
    port,
    stop: () => {
      if (stopping) return stopping;
      clearTimeout(retry);
      const server = current;
      stopping = server ? server.shutdown().catch(() => undefined) : Promise.resolve();
      return stopping;
    },
  };
}
