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
  let tls = options.tls && { cert: options.tls.cert, key: options.tls.key };
  const open = (port: number) => Deno.serve({ hostname: options.host, port, onListen() {}, ...tls }, options.fetch);
  // The first listen fails to the caller (a port in use); later ones are retried.
  let current: Deno.HttpServer<Deno.NetAddr> | undefined = open(options.port);
  const { hostname: host, port } = current.addr;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let stopping: Promise<void> | undefined;
  /** Listeners a TLS reload replaced, finishing their requests. */
  const retired: Promise<void>[] = [];

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
  /** Opens on `port` again once a shut-down listener has let it go (a few milliseconds after `shutdown()`). */
  const reopenWhenFree = async (): Promise<Deno.HttpServer<Deno.NetAddr>> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return open(port);
      } catch (error) {
        if (!(error instanceof Deno.errors.AddrInUse) || attempt >= PORT_RELEASE_TRIES) throw error;
        await new Promise((resolve) => setTimeout(resolve, PORT_RELEASE_WAIT_MS));
      }
    }
  };
  watch(current);

  return {
    host,
    port,
    stop: () => {
      if (stopping) return stopping;
      clearTimeout(retry);
      const server = current;
      stopping = Promise.all([server ? server.shutdown().catch(() => undefined) : undefined, ...retired]).then(() => undefined);
      return stopping;
    },
    ...(options.tls && {
      async reloadTls(next: { cert: string; key: string }) {
        const old = current;
        if (stopping || !old) return;
        const previous = tls;
        current = undefined;
        retired.push(old.shutdown().catch(() => undefined));
        tls = { cert: next.cert, key: next.key };
        try {
          current = await reopenWhenFree();
        } catch (error) {
          tls = previous;
          current = await reopenWhenFree();
          throw error;
        } finally {
          if (current) watch(current);
        }
      },
    }),
  };
}

/** How often, and how long apart, a TLS reload tries to listen again while the old listener lets the port go. */
const PORT_RELEASE_TRIES = 200;
const PORT_RELEASE_WAIT_MS = 5;
