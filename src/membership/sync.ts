import type { MemberMeta, MemberStatus, Update } from "./types.ts";

const STATUS_CODE: Record<MemberStatus, number> = { alive: 1, suspect: 2, dead: 3, left: 4 };

/** FNV-1a of a string, 32-bit. */
function fnv1a(text: string, seed = 0x811c9dc5): number {
  let hash = seed;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * An order-independent digest of a view: the XOR of each member's hash of
 * (id, incarnation, status). Equal digests mean, with high probability, equal
 * views, so anti-entropy sends 4 bytes instead of the whole table.
 */
export function digestOf(members: Iterable<{ id: string; inc: number; status: MemberStatus }>): number {
  let digest = 0;
  for (const m of members) digest ^= fnv1a(`${m.inc}:${STATUS_CODE[m.status]}`, fnv1a(m.id));
  return digest >>> 0;
}

const metaBytesCache = new WeakMap<MemberMeta, number>();

/** Approximate encoded size of metadata (msgpack is close to JSON's length for these shapes). */
export function metaBytes(meta: MemberMeta): number {
  let bytes = metaBytesCache.get(meta);
  if (bytes === undefined) {
    bytes = JSON.stringify(meta).length;
    metaBytesCache.set(meta, bytes);
  }
  return bytes;
}

/** Approximate encoded size of an update, for packing piggybacked gossip. */
export function updateBytes(update: Update): number {
  return 24 + update.id.length + update.addr.length + (update.meta ? metaBytes(update.meta) : 0) + (update.by?.length ?? 0);
}
