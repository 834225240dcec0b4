import { ConfigError } from "./table.ts";

/** True for an address only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return bare === "localhost" || bare === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}

/** What the secure-by-default rule reads. */
export interface ExposureSettings {
  host: string;
  clusterKey: readonly string[] | undefined;
  insecure: boolean;
  tls: boolean;
}

/**
 * Secure by default off loopback: a node bound where others can reach it, with
 * neither TLS nor a cluster key, would let anyone call it and join its
 * cluster. It refuses to start (a `ConfigError`, exit 2) unless EBB_INSECURE=1.
 */
export function checkExposure(settings: ExposureSettings): void {
  const { host, clusterKey, insecure, tls } = settings;
  if (isLoopback(host) || tls || clusterKey !== undefined || insecure) return;
  throw new ConfigError([
    `EBB_HOST=${JSON.stringify(host)} is not loopback, and neither TLS (EBB_TLS_CERT, EBB_TLS_KEY) nor a cluster key (EBB_CLUSTER_KEY, make one with "ebb keygen") is set: anyone who reaches the port could call this node and join its cluster. Set one of them, or EBB_INSECURE=1 if you mean it`,
  ]);
}
