import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { RpcError } from "./errors.ts";

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

/**
 * The client's side of the handshake: proves first, then checks the server's
 * proof; rejects UNAUTHENTICATED. `call` sends one `$auth` request on the
 * connection to `address` and resolves with its answer.
 */
export async function proveClusterKey(key: string, address: string, call: (params: unknown[]) => Promise<unknown>): Promise<void> {
  const wrongKey = () => new RpcError(`${address} does not hold the same cluster key`, "UNAUTHENTICATED");
  let hello: { nonce?: unknown };
  try {
    hello = (await call([{}])) as typeof hello;
  } catch (error) {
    const rpcError = RpcError.from(error);
    if (rpcError.code === "METHOD_NOT_FOUND") throw new RpcError(`${address} has no cluster key, but EBB_CLUSTER_KEY is set here`, "UNAUTHENTICATED");
    throw rpcError;
  }
  const server = readNonce(hello?.nonce);
  if (!server) throw new RpcError(`${address} answered $auth without a 16-byte nonce`, "UNAUTHENTICATED");
  const client = newNonce();
  let answer: { proof?: unknown };
  try {
    answer = (await call([{ nonce: client, proof: proof(key, "client", client, server) }])) as typeof answer;
  } catch (error) {
    const rpcError = RpcError.from(error);
    if (rpcError.code === "UNAUTHENTICATED" && (rpcError.data as { reason?: unknown } | undefined)?.reason === WRONG_KEY) throw wrongKey();
    throw new RpcError(`${address}: ${rpcError.rawMessage}`, rpcError.code, { data: rpcError.data });
  }
  // The server proves the key too: a node that merely accepts everyone is not a member.
  if (!proofMatches(proof(key, "server", client, server), answer?.proof)) throw wrongKey();
}

/** What the server does with one message from a peer that has not finished the handshake. */
export type KeyCheckStep =
  /** Answer the request with `result`; `proven` once the peer has proven the key. */
  | { kind: "answer"; result: unknown; proven: boolean }
  /** Answer UNAUTHENTICATED and close; `failure` counts it against the peer's host. */
  | { kind: "refuse"; message: string; failure: boolean; data?: unknown };

/** The server's side of the handshake on one connection: anything but `$auth` first is refused. */
export class ClusterKeyCheck {
  private serverNonce: Uint8Array | undefined;

  constructor(private readonly key: string) {}

  /**
   * The next step for one message (`request` undefined: not a request).
   * `turnedAway` is asked just before a proof is checked, since other
   * connections of the host may have used up its failures meanwhile.
   */
  step(request: { method: string; params: unknown[] } | undefined, turnedAway: () => boolean): KeyCheckStep {
    if (request?.method !== AUTH_METHOD) {
      return { kind: "refuse", message: "This node requires the cluster key (EBB_CLUSTER_KEY): the connection must begin with the $auth handshake", failure: true };
    }
    // The hello gets only our nonce: nothing derived from the key goes to a peer that has not proven it.
    if (!this.serverNonce) {
      this.serverNonce = newNonce();
      return { kind: "answer", result: { nonce: this.serverNonce }, proven: false };
    }
    const input = request.params[0] as { nonce?: unknown; proof?: unknown } | undefined;
    const client = readNonce(input?.nonce);
    if (!client) return { kind: "refuse", message: "The second $auth must carry a 16-byte nonce and a proof", failure: true };
    if (turnedAway()) return { kind: "refuse", message: "Too many failed cluster key handshakes from this host; try again later", failure: false };
    if (!proofMatches(proof(this.key, "client", client, this.serverNonce), input?.proof)) {
      return { kind: "refuse", message: "Wrong cluster key", failure: true, data: { reason: WRONG_KEY } };
    }
    return { kind: "answer", result: { ok: true, proof: proof(this.key, "server", client, this.serverNonce) }, proven: true };
  }
}
