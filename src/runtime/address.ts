/** Splits `host:port` (IPv6 in brackets allowed). */
export function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  return [host, Number(address.slice(colon + 1))];
}

/**
 * The host part of a peer's `host:port` (IPv6 with or without brackets): what
 * per-source limits and log budgets count by, since one machine opens as many
 * ports as it likes.
 */
export function sourceHost(peer: string): string {
  const colon = peer.lastIndexOf(":");
  const host = colon < 0 ? peer : peer.slice(0, colon);
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

// host (no commas, colons or spaces, so no bare IPv6) and a port of up to five digits.
const HOST_PORT = String.raw`[^,:\s]+:\d{1,5}`;

/** `host:port`, as EBB_ADVERTISE takes it. */
export const ADDRESS_PATTERN = new RegExp(`^${HOST_PORT}$`);

/** `host:port[,host:port...]`, as EBB_SEEDS, `--addr` and `--seeds` take it. */
export const ADDRESS_LIST_PATTERN = new RegExp(`^${HOST_PORT}(,${HOST_PORT})*$`);
