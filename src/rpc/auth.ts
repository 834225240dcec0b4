import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * The cluster key handshake (EBB_CLUSTER_KEY), two `$auth` requests that open
 * every connection to a node that has a key; the key itself never travels.
 *
 *   client → `$auth [{nonce: c}]`              c: 16 random bytes
 *   server ← `{nonce: s, proof: P("server")}`  the client checks the server knows the key
 *   client → `$auth [{proof: P("client")}]`
 *   server ← `{ok: true}`                      or UNAUTHENTICATED and the connection closes
 *
 * P(role) = HMAC-SHA256(key, "ebb-auth/" + role + c + s): fresh nonces on both
 * sides, so a recorded handshake proves nothing later, and the role in the MAC
 * keeps one side's proof from serving as the other's. Until the handshake is
 * done, a keyed server answers any other request UNAUTHENTICATED and closes.
 */
export const AUTH_METHOD = "$auth";
/** Length of each side's nonce. */
export const NONCE_BYTES = 16;
/** A connection to a keyed node must finish the handshake within this. */
export const AUTH_TIMEOUT_MS = 10_000;

/** A fresh random nonce. */
export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_BYTES));
}

/** What `role` sends to prove it holds `key`, bound to both nonces. */
export function proof(key: string, role: "server" | "client", clientNonce: Uint8Array, serverNonce: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(`ebb-auth/${role}`).update(clientNonce).update(serverNonce).digest());
}

/** True when `received` is exactly `expected`, compared in constant time. */
export function proofMatches(expected: Uint8Array, received: unknown): boolean {
  return received instanceof Uint8Array && received.byteLength === expected.byteLength && timingSafeEqual(received, expected);
}

/** A nonce as received: bytes of the right length, or undefined. */
export function readNonce(value: unknown): Uint8Array | undefined {
  return value instanceof Uint8Array && value.byteLength === NONCE_BYTES ? value : undefined;
}
