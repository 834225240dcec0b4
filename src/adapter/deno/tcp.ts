import type { ConnectOptions, Listener, ListenOptions, ServerTls, Socket, SocketHandlers } from "../../runtime/types.ts";
import { type PullConnection, StreamSocket, toError } from "../../runtime/socket.ts";

/**
 * A Deno connection for the shared state machine, which reads it in a loop and pumps its writes (each may take part).
 * Reads use `conn.read`, not `conn.readable`: the stream closes the whole
 * connection on the peer's FIN, which would lose our replies to a half-closed peer.
 */
function wrap(conn: Deno.TcpConn | Deno.TlsConn, handlers: (socket: Socket) => SocketHandlers): StreamSocket {
  const raw: PullConnection = {
    read: (buffer) => conn.read(buffer),
    write: (bytes) => conn.write(bytes),
    // On a TlsConn too (Conn.closeWrite): our side ends, reads go on; half-close means the same under TLS (tests/integration/tls.test.ts).
    shutdownWrite: () => conn.closeWrite(),
    terminate: () => quietly(() => conn.close()),
    // A TLS connection has no socket options in Deno: Nagle and keep-alive stay the system's.
    setNoDelay: (noDelay) => "setNoDelay" in conn && quietly(() => conn.setNoDelay(noDelay)),
    // Deno.TcpConn.setKeepAlive takes no delay: the system's keep-alive timing applies.
    setKeepAlive: () => "setKeepAlive" in conn && quietly(() => conn.setKeepAlive(true)),
    isCloseNoise,
  };
  return new StreamSocket(raw, `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`).start(handlers);
}

/** Closing or tuning what the runtime already closed throws; nothing is left to do then. */
function quietly(action: () => void): void {
  try {
    action();
  } catch { /* Already closed. */ }
}

/** Errors that only mean the socket or listener was closed (by us). */
const isCloseNoise = (error: unknown) => error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted;

/**
 * Deno.listen with an accept loop that hands each connection its handlers.
 *
 * After a failed accept (EMFILE), Deno's listener never reports a pending
 * connection again (seen on Deno 2.9.6: every later connection waits in the
 * backlog for good), so the loop opens a fresh listener on the same address
 * once the core's back-off has passed. Connections waiting in the old
 * backlog are reset, and their clients try again.
 */
export async function listen(options: ListenOptions): Promise<Listener> {
  let tls = options.tls;
  const refuseClientAuth = (asked: ServerTls | undefined) => {
    if (asked?.requestCert) throw new Error("Deno cannot request client certificates (Deno.listenTls, denoland/deno#26825): mutual TLS needs Bun");
  };
  refuseClientAuth(tls);
  const open = (port: number): Deno.Listener<Deno.TcpConn | Deno.TlsConn, Deno.NetAddr> =>
    tls ? Deno.listenTls({ hostname: options.host, port, cert: tls.cert, key: tls.key }) : Deno.listen({ hostname: options.host, port, transport: "tcp" });
  let listener = open(options.port);
  const addr = listener.addr;
  let stopped = false;
  /** The accept the loop waits on, settled either way; a reload waits for it before binding again. */
  let pendingAccept: Promise<void> = Promise.resolve();
  let reloading: Promise<void> | undefined;
  const wait = (error: unknown) => new Promise((resolve) => setTimeout(resolve, options.acceptFailed?.(toError(error)) ?? 100));
  const acceptLoop = (async () => {
    while (!stopped) {
      let conn: Deno.TcpConn | Deno.TlsConn;
      const accepting = listener.accept();
      pendingAccept = accepting.then(() => {}, () => {});
      try {
        conn = await accepting;
      } catch (error) {
        if (stopped) return;
        // Closed by reloadTls: accept again once its new listener is open.
        if (reloading) {
          await reloading.catch(() => {});
          continue;
        }
        if (isCloseNoise(error)) return;
        // The old listener keeps the port (callers queue in its backlog) through the back-off;
        // then it is swapped for a fresh one in one step, so the port is never seen closed.
        await wait(error);
        while (!stopped) {
          quietly(() => listener.close());
          try {
            listener = open(addr.port);
            break;
          } catch (again) {
            // Still out of descriptors: keep backing off until opening works, or we stop.
            await wait(again);
          }
        }
        if (stopped) quietly(() => listener.close());
        continue;
      }
      wrap(conn, options.accept);
    }
  })();
  return {
    host: addr.hostname,
    port: addr.port,
    async stop() {
      if (stopped) return;
      stopped = true;
      quietly(() => listener.close());
      await acceptLoop;
    },
    ...(tls && {
      async reloadTls(next: ServerTls) {
        refuseClientAuth(next);
        if (stopped || reloading) return reloading;
        const previous = tls;
        reloading = (async () => {
          quietly(() => listener.close());
          // Deno frees the port only once the pending accept has ended.
          await pendingAccept;
          tls = next;
          try {
            listener = open(addr.port);
          } catch (error) {
            // Keep serving with what worked.
            tls = previous;
            listener = open(addr.port);
            throw error;
          }
        })();
        try {
          await reloading;
        } finally {
          reloading = undefined;
        }
      },
    }),
  };
}

/**
 * Deno.connect (or Deno.connectTls), then the same read loop and write queue as accepted sockets.
 * Under TLS the handshake completes before the owner gets the socket, so a certificate that
 * does not verify rejects here. A server name other than the host needs Deno.startTls, which
 * cannot present a client certificate.
 */
export async function connect(options: ConnectOptions): Promise<Socket> {
  const tls = options.tls;
  if (!tls) return wrap(await Deno.connect({ hostname: options.host, port: options.port, transport: "tcp" }), options.open);
  const where = `${options.host}:${options.port}`;
  const client = tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {};
  let conn: Deno.TlsConn;
  if (tls.serverName === undefined || tls.serverName === options.host) {
    conn = await Deno.connectTls({ hostname: options.host, port: options.port, caCerts: [tls.ca], ...client });
  } else {
    const tcp = await Deno.connect({ hostname: options.host, port: options.port, transport: "tcp" });
    conn = await Deno.startTls(tcp, { hostname: tls.serverName, caCerts: [tls.ca] });
  }
  try {
    await conn.handshake();
  } catch (error) {
    quietly(() => conn.close());
    throw new Error(`TLS handshake with ${where} failed: ${(error as Error).message}`, { cause: error });
  }
  return wrap(conn, options.open);
}
