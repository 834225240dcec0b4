import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { RpcError } from "./errors.ts";

/**
 * The cluster key handshake (EBB_CLUSTER_KEY), two `$auth` requests that open
 * every connection to a node that has a key; the key itself never travels.
 *
 *   client → `$auth [{}]`                                          hello
 *   server ← `{nonce: s}`                                          s: 16 random bytes, nothing derived from the key
 *   client → `$auth [{nonce: c, cluster: id, proofs: [P_k("client") for each ring key k]}]`
 *   server ← `{ok: true, key: i, proof: P_ki("server")}`           or UNAUTHENTICATED and the connection closes
 *
 * P_k(role) = HMAC-SHA256(k, AUTH_CONTEXT + "/" + role + "/" + len(id) + ":" + id, c, s).
 * The client proves first, so a peer that has not proven a key never receives
 * a byte derived from one: it has nothing to test guesses against offline, and
 * each guess costs it a connection, counted by the server's per-source
 * throttle (auth-guard.ts). The server's proof then shows the client it
 * reached a holder of the key too. Fresh nonces on both sides, so a recorded
 * handshake proves nothing later; the role in the MAC keeps one side's proof
 * from serving as the other's; the cluster id (EBB_CLUSTER_ID) in the MAC keeps
 * a node of another cluster with the same key out.
 *
 * A keyring (several keys, the first the primary): the client proves every key
 * it holds, primary first; the server looks for its own keys in its own order,
 * so a match on its primary is preferred, and answers proving the key both
 * share (index `i` in the client's list). Any two nodes a rotation step apart
 * (README "Rotating the cluster key") share a key and connect at once, with no
 * retry; a handshake that matched only a secondary key is counted, so an
 * operator sees who is a step behind before removing the old key.
 */
export const AUTH_METHOD = "$auth";
/** What every proof is bound to besides the role, cluster id and nonces: this protocol's version (v2 had one key and no cluster id). */
export const AUTH_CONTEXT = "ebb-auth/3";
/** Length of each side's nonce. */
export const NONCE_BYTES = 16;
/** A connection to a keyed node must finish the handshake within this. */
export const AUTH_TIMEOUT_MS = 10_000;
/** Most keys in a ring: each one a proof in the handshake and an HMAC on the server. */
export const MAX_CLUSTER_KEYS = 4;
/** EBB_CLUSTER_ID when unset. */
export const DEFAULT_CLUSTER_ID = "ebb";
/** `data.reason` of the UNAUTHENTICATED answer to proofs made with none of the server's keys. */
export const WRONG_KEY = "wrong-key";
/** `data.reason` of the UNAUTHENTICATED answer to a client of another cluster id. */
export const WRONG_CLUSTER = "wrong-cluster";

/** A cluster's credentials: its keys, the first proving (the primary), all accepted; and the cluster id bound into every proof. */
export interface Keyring {
  readonly keys: readonly string[];
  readonly clusterId: string;
}

/** A keyring, or one key of the default cluster id (the form EBB_CLUSTER_KEY had before keyrings). */
export type ClusterKey = string | Keyring;

/** `key` as a keyring. */
export function keyringOf(key: ClusterKey): Keyring {
  if (typeof key === "string") return { keys: [key], clusterId: DEFAULT_CLUSTER_ID };
  if (key.keys.length === 0 || key.keys.length > MAX_CLUSTER_KEYS) throw new RangeError(`A keyring holds 1 to ${MAX_CLUSTER_KEYS} keys, got ${key.keys.length}`);
  return key;
}

/** A fresh random nonce. */
export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_BYTES));
}

/** What `role` sends to prove it holds `key` in cluster `clusterId`, bound to both nonces. */
export function proof(key: string, role: "server" | "client", clientNonce: Uint8Array, serverNonce: Uint8Array, clusterId: string): Uint8Array {
  return new Uint8Array(
    createHmac("sha256", key).update(`${AUTH_CONTEXT}/${role}/${clusterId.length}:${clusterId}`).update(clientNonce).update(serverNonce).digest(),
  );
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
 * The client's side of the handshake: proves every ring key first, then checks
 * the server's proof of the key it chose; rejects UNAUTHENTICATED. `call` sends
 * one `$auth` request on the connection to `address` and resolves with its answer.
 */
export async function proveClusterKey(key: ClusterKey, address: string, call: (params: unknown[]) => Promise<unknown>): Promise<void> {
  const { keys, clusterId } = keyringOf(key);
  const noKey = () => new RpcError(`${address} does not hold any of our cluster keys`, "UNAUTHENTICATED", { data: { reason: WRONG_KEY } });
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
  let answer: { proof?: unknown; key?: unknown };
  try {
    answer = (await call([{ nonce: client, cluster: clusterId, proofs: keys.map((k) => proof(k, "client", client, server, clusterId)) }])) as typeof answer;
  } catch (error) {
    const rpcError = RpcError.from(error);
    const reason = rpcError.code === "UNAUTHENTICATED" ? (rpcError.data as { reason?: unknown } | undefined)?.reason : undefined;
    if (reason === WRONG_KEY) throw noKey();
    if (reason === WRONG_CLUSTER) throw new RpcError(`${address} is not of cluster "${clusterId}" (EBB_CLUSTER_ID)`, "UNAUTHENTICATED", { data: { reason } });
    throw new RpcError(`${address}: ${rpcError.rawMessage}`, rpcError.code, { data: rpcError.data });
  }
  // The server proves the key too: a node that merely accepts everyone is not a member.
  const shared = typeof answer?.key === "number" ? keys[answer.key] : undefined;
  if (shared === undefined || !proofMatches(proof(shared, "server", client, server, clusterId), answer?.proof)) {
    throw new RpcError(`${address} proved an unknown key`, "UNAUTHENTICATED", { data: { reason: WRONG_KEY } });
  }
}

/** Why a handshake failed, as `ebb_auth_failures_total{reason}` counts it. */
export type AuthFailure = "unknown_key" | "wrong_cluster" | "handshake";

/** What the server does with one message from a peer that has not finished the handshake. */
export type KeyCheckStep =
  /** Answer the request with `result`; `proven` once the peer has proven a key, `secondary` when the shared key is not this node's primary. */
  | { kind: "answer"; result: unknown; proven: boolean; secondary?: boolean }
  /** Answer UNAUTHENTICATED and close; `failure` counts it against the peer's host. */
  | { kind: "refuse"; message: string; failure: AuthFailure | false; data?: unknown };

/** The server's side of the handshake on one connection: anything but `$auth` first is refused. */
export class ClusterKeyCheck {
  private serverNonce: Uint8Array | undefined;
  private readonly ring: Keyring;

  constructor(key: ClusterKey) {
    this.ring = keyringOf(key);
  }

  /**
   * The next step for one message (`request` undefined: not a request).
   * `turnedAway` is asked just before a proof is checked, since other
   * connections of the host may have used up its failures meanwhile.
   */
  step(request: { method: string; params: unknown[] } | undefined, turnedAway: () => boolean): KeyCheckStep {
    if (request?.method !== AUTH_METHOD) {
      return { kind: "refuse", message: "This node requires the cluster key (EBB_CLUSTER_KEY): the connection must begin with the $auth handshake", failure: "handshake" };
    }
    // The hello gets only our nonce: nothing derived from the key goes to a peer that has not proven it.
    if (!this.serverNonce) {
      this.serverNonce = newNonce();
      return { kind: "answer", result: { nonce: this.serverNonce }, proven: false };
    }
    const input = request.params[0] as { nonce?: unknown; proofs?: unknown; cluster?: unknown } | undefined;
    const client = readNonce(input?.nonce);
    const proofs = input?.proofs;
    if (!client || !Array.isArray(proofs) || proofs.length === 0 || proofs.length > MAX_CLUSTER_KEYS || typeof input?.cluster !== "string") {
      return { kind: "refuse", message: `The second $auth must carry a 16-byte nonce, the cluster id and 1 to ${MAX_CLUSTER_KEYS} proofs`, failure: "handshake" };
    }
    if (turnedAway()) return { kind: "refuse", message: "Too many failed cluster key handshakes from this host; try again later", failure: false };
    const { keys, clusterId } = this.ring;
    if (input.cluster !== clusterId) {
      return { kind: "refuse", message: `Cluster id ${JSON.stringify(input.cluster.slice(0, 64))} is not this node's (EBB_CLUSTER_ID)`, failure: "wrong_cluster", data: { reason: WRONG_CLUSTER } };
    }
    // Our keys in our order: a match on our primary is preferred.
    for (const [mine, key] of keys.entries()) {
      const expected = proof(key, "client", client, this.serverNonce, clusterId);
      const theirs = proofs.findIndex((received) => proofMatches(expected, received));
      if (theirs >= 0) {
        return { kind: "answer", result: { ok: true, key: theirs, proof: proof(key, "server", client, this.serverNonce, clusterId) }, proven: true, secondary: mine > 0 };
      }
    }
    return { kind: "refuse", message: "Proved an unknown cluster key", failure: "unknown_key", data: { reason: WRONG_KEY } };
  }
}

/** What an HTTP bearer token is derived with: this scheme's version. */
export const HTTP_TOKEN_CONTEXT = "ebb-http-token/1";

/**
 * The bearer token HTTP callers send for `key` in cluster `clusterId`:
 * base64url(HMAC-SHA256(key, "ebb-http-token/1/" + len(id) + ":" + id)). The
 * key itself never crosses the wire; a token seen on the wire opens this
 * cluster's HTTP gateway but proves nothing in the RPC handshake, and cannot be
 * turned back into the key. `ebb token` prints it.
 */
export function httpToken(key: string, clusterId: string): string {
  return createHmac("sha256", key).update(`${HTTP_TOKEN_CONTEXT}/${clusterId.length}:${clusterId}`).digest("base64url");
}

/** The tokens a keyed node accepts over HTTP: one per ring key. */
export function httpTokens(key: ClusterKey): string[] {
  const { keys, clusterId } = keyringOf(key);
  return keys.map((k) => httpToken(k, clusterId));
}
