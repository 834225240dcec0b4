import { createPrivateKey, X509Certificate } from "node:crypto";
import { ConfigError } from "../config/table.ts";
import type { ClientTls, HttpServer, Listener, Runtime, ServerTls } from "../runtime/types.ts";
import { runtimeOf, type RuntimeSource } from "../runtime/source.ts";

/**
 * TLS for every ebb connection: the EBB_TLS_* variables read into PEM text, and a
 * runtime whose listeners, connections and HTTP server all speak TLS with it.
 *
 * Wrapping the runtime, rather than threading options through each part, is
 * what makes "every connection" true: the RPC server, Channel.connect, the
 * cluster client's pool, the membership transport and the HTTP listener all
 * reach the network only through `Runtime`.
 */

/** The node's TLS, from EBB_TLS_CERT, EBB_TLS_KEY, EBB_TLS_CA, EBB_TLS_SERVER_NAME and EBB_TLS_CLIENT_AUTH. */
export interface TlsSettings {
  /** This node's certificate chain (PEM), leaf first. */
  cert: string;
  /** Its private key (PEM). */
  key: string;
  /** The CA certificates peers' certificates must chain to (PEM). */
  ca: string;
  /** The name clients check in servers' certificates instead of the host they dial. */
  serverName?: string;
  /** Listeners require a client certificate chaining to `ca` (Bun only). */
  clientAuth: boolean;
}

/** Reads a file's text; `readFileSync(path, "utf8")` from node:fs on every runtime. */
export type ReadText = (path: string) => string;

/** What one variable's PEM must hold. */
export type PemKind = "certificate" | "private key";

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]+?-----END \1-----/g;

/**
 * A variable's PEM: the value itself when it holds a PEM block, else the
 * contents of the file it names. Throws an Error whose message says what is
 * wrong (the caller names the variable); the PEM is parsed, so a truncated
 * or swapped file is found at startup, not at the first handshake.
 */
export function readPem(value: string, kind: PemKind, readText: ReadText): string {
  const inline = value.includes("-----BEGIN ");
  let pem: string;
  if (inline) pem = value;
  else {
    try {
      pem = readText(value);
    } catch (error) {
      const code = (error as { code?: string }).code;
      throw new Error(`names a file that cannot be read (${code === "ENOENT" ? "no such file" : (code ?? String(error))}); give PEM text or the path of a PEM file`);
    }
  }
  const where = inline ? "" : ` in "${value}"`;
  const blocks = [...pem.matchAll(PEM_BLOCK)];
  if (kind === "certificate") {
    const certificates = blocks.filter((block) => block[1] === "CERTIFICATE");
    if (certificates.length === 0) throw new Error(`has no PEM certificate (-----BEGIN CERTIFICATE-----)${where}`);
    for (const [index, block] of certificates.entries()) {
      try {
        new X509Certificate(block[0]);
      } catch (error) {
        throw new Error(`certificate ${index + 1}${where} does not parse: ${(error as Error).message}`);
      }
    }
    return certificates.map((block) => block[0]).join("\n") + "\n";
  }
  const key = blocks.find((block) => block[1]!.endsWith("PRIVATE KEY"));
  if (!key) throw new Error(`has no PEM private key (-----BEGIN PRIVATE KEY-----)${where}`);
  try {
    createPrivateKey(key[0]);
  } catch (error) {
    throw new Error(`private key${where} does not parse: ${(error as Error).message}`);
  }
  return key[0] + "\n";
}

/** The EBB_TLS_* values as variables.ts reads them (PEM text already). */
export interface TlsValues {
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  tlsCa: string | undefined;
  tlsServerName: string | undefined;
  tlsClientAuth: boolean;
}

/**
 * The node's TLS settings, or undefined when TLS is off (EBB_TLS_CERT unset).
 * A node both serves and dials its peers, so certificate, key and CA go together;
 * throws a ConfigError naming what is missing.
 */
export function tlsSettings(values: TlsValues): TlsSettings | undefined {
  const { tlsCert: cert, tlsKey: key, tlsCa: ca, tlsServerName: serverName, tlsClientAuth: clientAuth } = values;
  if (cert === undefined && key === undefined && ca === undefined) {
    const problems = [];
    if (serverName !== undefined) problems.push("EBB_TLS_SERVER_NAME is set but TLS is off: set EBB_TLS_CERT, EBB_TLS_KEY and EBB_TLS_CA too");
    if (clientAuth) problems.push("EBB_TLS_CLIENT_AUTH is set but TLS is off: set EBB_TLS_CERT, EBB_TLS_KEY and EBB_TLS_CA too");
    if (problems.length > 0) throw new ConfigError(problems);
    return undefined;
  }
  const missing = [["EBB_TLS_CERT", cert], ["EBB_TLS_KEY", key], ["EBB_TLS_CA", ca]].filter(([, value]) => value === undefined).map(([name]) => name);
  if (missing.length > 0) throw new ConfigError([`TLS needs EBB_TLS_CERT, EBB_TLS_KEY and EBB_TLS_CA together: ${missing.join(" and ")} ${missing.length === 1 ? "is" : "are"} unset`]);
  return { cert: cert!, key: key!, ca: ca!, clientAuth, ...(serverName !== undefined && { serverName }) };
}

/**
 * TLS of a client command (ebb call, members, bench): EBB_TLS_CA turns it on;
 * EBB_TLS_CERT and EBB_TLS_KEY, when set, are presented to servers that require a
 * client certificate. Undefined when EBB_TLS_CA is unset.
 */
export function clientTlsSettings(values: TlsValues): ClientTls | undefined {
  const { tlsCert: cert, tlsKey: key, tlsCa: ca, tlsServerName: serverName } = values;
  if (ca === undefined) {
    if (cert !== undefined || key !== undefined || serverName !== undefined) throw new ConfigError(["EBB_TLS_CA is unset: a client speaks TLS only when it can verify the server, so set EBB_TLS_CA"]);
    return undefined;
  }
  if ((cert === undefined) !== (key === undefined)) throw new ConfigError(["EBB_TLS_CERT and EBB_TLS_KEY go together: a client certificate needs its key"]);
  return { ca, ...(serverName !== undefined && { serverName }), ...(cert !== undefined && { cert, key }) };
}

/** What a listener presents and requires under `settings`. */
export function serverTls(settings: TlsSettings): ServerTls {
  return { cert: settings.cert, key: settings.key, ca: settings.ca, requestCert: settings.clientAuth };
}

/** What a node presents and checks when it dials a peer under `settings`. */
export function clientTls(settings: TlsSettings): ClientTls {
  return { ca: settings.ca, cert: settings.cert, key: settings.key, ...(settings.serverName !== undefined && { serverName: settings.serverName }) };
}

/**
 * A runtime with TLS on every connection: listeners and the HTTP server present
 * `server` (when given), outgoing connections verify against `client`. `reload`
 * changes both for new connections and listeners' new accepts; open connections
 * carry on. The in-memory runtime ignores the options.
 */
export class TlsRuntime {
  /** The wrapped runtime to hand to the core. */
  readonly runtime: Runtime;
  private readonly listeners = new Set<Listener>();
  private readonly httpServers = new Set<HttpServer>();

  constructor(
    base: Runtime,
    private tls: { server?: ServerTls; client?: ClientTls },
  ) {
    // The rest of the runtime (getters included) through the prototype, unchanged.
    const wrapped: Runtime = Object.create(base);
    wrapped.listen = async (options) => {
      if (!this.tls.server) return base.listen(options);
      const listener = await base.listen({ ...options, tls: this.tls.server });
      this.listeners.add(listener);
      const stop = listener.stop.bind(listener);
      return Object.assign(Object.create(listener) as Listener, { stop: () => (this.listeners.delete(listener), stop()) });
    };
    // HTTPS never asks for a client certificate: probes and scrapers have none.
    wrapped.serve = async (options) => {
      const server = this.tls.server;
      if (!server) return base.serve(options);
      const http = await base.serve({ ...options, tls: https(server) });
      this.httpServers.add(http);
      const stop = http.stop.bind(http);
      return Object.assign(Object.create(http) as HttpServer, { stop: () => (this.httpServers.delete(http), stop()) });
    };
    wrapped.connect = (options) => base.connect(this.tls.client ? { ...options, tls: this.tls.client } : options);
    this.runtime = wrapped;
  }

  /** New connections (made or accepted) use `tls` from now on; rejects, keeping what worked, when a listener cannot take it. */
  async reload(tls: { server?: ServerTls; client?: ClientTls }): Promise<void> {
    const server = tls.server;
    if (server) {
      await Promise.all([...this.listeners].map((listener) => listener.reloadTls?.(server)));
      await Promise.all([...this.httpServers].map((http) => http.reloadTls?.(https(server))));
    }
    this.tls = tls;
  }
}

/** `runtime` with TLS on every connection (see TlsRuntime); `runtime` itself without `server` or `client`. */
export function withTls(runtime: Runtime, tls: { server?: ServerTls; client?: ClientTls }): Runtime {
  return tls.server || tls.client ? new TlsRuntime(runtime, tls).runtime : runtime;
}

/** What a node listens and dials with under `settings`. */
export function nodeTls(settings: TlsSettings): { server: ServerTls; client: ClientTls } {
  return { server: serverTls(settings), client: clientTls(settings) };
}

/** A node's runtime: the one it was given, wrapped in TLS when `settings` are set; made once, on first use. */
export class NodeRuntime {
  private made: Promise<{ runtime: Runtime; tls?: TlsRuntime }> | undefined;

  constructor(private readonly source: RuntimeSource, private readonly settings: TlsSettings | undefined) {}

  /** The runtime every part of the node uses. */
  async get(): Promise<Runtime> {
    return (await this.make()).runtime;
  }

  /** New connections and accepts use `settings` from now on; open connections carry on. */
  async reload(settings: TlsSettings): Promise<void> {
    const { tls } = await this.make();
    if (!tls) throw new Error("TLS was off at start: turning it on takes a restart");
    await tls.reload(nodeTls(settings));
  }

  private make(): Promise<{ runtime: Runtime; tls?: TlsRuntime }> {
    this.made ??= runtimeOf(this.source).then((base) => {
      if (!this.settings) return { runtime: base };
      const tls = new TlsRuntime(base, nodeTls(this.settings));
      return { runtime: tls.runtime, tls };
    });
    return this.made;
  }
}

/** What an HTTPS listener presents: the node's certificate, never a request for the client's. */
function https(server: ServerTls): Omit<ServerTls, "requestCert"> {
  const { requestCert: _requestCert, ...rest } = server;
  return rest;
}
