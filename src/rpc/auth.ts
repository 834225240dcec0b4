import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * The cluster key handshake (EBB_CLUSTER_KEY), two `$auth` requests that open
 * every connection to a node that has a key; the key itself never travels.
 *
 *   client → `$auth [{}]`                               hello
 *   server ← `{nonce: s}`                               s: 16 random bytes, nothing derived from the key
 *   client → `$auth [{nonce: c, proof: P("client")}]`   c: 16 random bytes
 *   server ← `{ok: true, proof: P("server")}`           or UNAUTHENTICATED and the connection closes
 *
 * P(role) = HMAC-SHA256(key, AUTH_CONTEXT + "/" + role + c + s). The client
 * proves first, so a peer that has not proven the key never receives a byte
 * derived from it: it has nothing to test guesses against offline, and each
 * guess costs it a connection, counted by the server's per-source throttle
 * (auth-guard.ts). The server's proof then shows the client it reached a
 * holder of the key too. Fresh nonces on both sides, so a recorded handshake
 * proves nothing later; the role in the MAC keeps one side's proof from
 * serving as the other's. Until the handshake is done, a keyed server answers
 * any other request UNAUTHENTICATED and closes.
 */
export const AUTH_METHOD = "$auth";
/** What every proof is bound to besides the role and nonces: this protocol's version (v1 let the server prove first). */
export const AUTH_CONTEXT = "ebb-auth/2";
/** Length of each side's nonce. */
export const NONCE_BYTES = 16;
/** A connection to a keyed node must finish the handshake within this. */
export const AUTH_TIMEOUT_MS = 10_000;
/** `data.reason` of the UNAUTHENTICATED answer to a proof made with another key. */
export const WRONG_KEY = "wrong-key";

/** A fresh random nonce. */
export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_BYTES));
}

/** What `role` sends to prove it holds `key`, bound to both nonces. */
export function proof(key: string, role: "server" | "client", clientNonce: Uint8Array, serverNonce: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(`${AUTH_CONTEXT}/${role}`).update(clientNonce).update(serverNonce).digest());
}

/** True when `received` is exactly `expected`, compared in constant time. */
export function proofMatches(expected: Uint8Array, received: unknown): boolean {
  return received instanceof Uint8Array && received.byteLength === expected.byteLength && timingSafeEqual(received, expected);
}

/** A nonce as received: bytes of the right length, or undefined. */
export function readNonce(value: unknown): Uint8Array | undefined {
  return value instanceof Uint8Array && value.byteLength === NONCE_BYTES ? value : undefined;
}
