import { randomBytes } from "node:crypto";

/**
 * What EBB_CLUSTER_KEY must be: real entropy, not a password. The rule, in order:
 *
 *  1. base64 (standard or URL-safe alphabet, `=` padding optional) or hex text,
 *     at most MAX_CLUSTER_KEY_CHARS characters;
 *  2. it encodes at least MIN_CLUSTER_KEY_BYTES bytes (128 bits): 32+ hex digits
 *     (a key of hex digits only counts as hex), or 22+ base64 characters;
 *  3. it is not a shorter string repeated (`passwordpassword`), and its characters
 *     carry at least MIN_BASE64_BITS_PER_CHAR bits each of Shannon entropy
 *     (MIN_HEX_BITS_PER_CHAR for hex): few distinct characters, or a few used
 *     over and over, mean a human chose it.
 *
 * The entropy floors sit below what random keys show: over 300,000 keys from
 * `ebb keygen`-style randomBytes, the lowest was 2.88 bits/char for 16 bytes
 * in hex and 3.39 for 16 bytes in base64 (4.28 for the 32 bytes keygen makes).
 */
export const MIN_CLUSTER_KEY_BYTES = 16;
/** Longest key accepted. */
export const MAX_CLUSTER_KEY_CHARS = 256;
/** Bytes of a key from `ebb keygen` (256 bits). */
export const KEYGEN_BYTES = 32;
/** Shannon entropy floor, per character, of a base64 key. */
export const MIN_BASE64_BITS_PER_CHAR = 3;
/** Shannon entropy floor, per character, of a hex key. */
export const MIN_HEX_BITS_PER_CHAR = 2.5;

const ADVICE = 'run "ebb keygen" to make one';

/** A fresh key: KEYGEN_BYTES random bytes in base64. */
export function newClusterKey(): string {
  return randomBytes(KEYGEN_BYTES).toString("base64");
}

/** Why `key` is not a good cluster key, or undefined when it is. */
export function clusterKeyProblem(key: string): string | undefined {
  const hex = /^[0-9a-fA-F]+$/.test(key);
  if (key.length > MAX_CLUSTER_KEY_CHARS || !(hex || /^[A-Za-z0-9+/]+={0,2}$/.test(key) || /^[A-Za-z0-9_-]+={0,2}$/.test(key))) {
    return `must be base64, base64url or hex text of at most ${MAX_CLUSTER_KEY_CHARS} characters; ${ADVICE}`;
  }
  const text = key.replace(/=+$/, "");
  const bytes = hex ? Math.floor(text.length / 2) : Math.floor((text.length * 6) / 8);
  if (bytes < MIN_CLUSTER_KEY_BYTES) {
    return `must encode at least ${MIN_CLUSTER_KEY_BYTES} random bytes (128 bits): 22 or more base64 characters, or 32 or more hex digits; ${ADVICE}`;
  }
  if (repeatsItself(text) || bitsPerChar(text) < (hex ? MIN_HEX_BITS_PER_CHAR : MIN_BASE64_BITS_PER_CHAR)) {
    return `looks chosen, not random (a repeat, or too few distinct characters); ${ADVICE}`;
  }
  return undefined;
}

/** True when `text` is a shorter string said at least twice, the last time perhaps cut short (`abcabcab`). */
function repeatsItself(text: string): boolean {
  for (let period = 1; period <= text.length / 2; period++) {
    let repeats = true;
    for (let i = period; i < text.length && repeats; i++) repeats = text[i] === text[i - period];
    if (repeats) return true;
  }
  return false;
}

/** Shannon entropy of the characters of `text`, in bits per character. */
export function bitsPerChar(text: string): number {
  const counts = new Map<string, number>();
  for (const char of text) counts.set(char, (counts.get(char) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) bits -= (n / text.length) * Math.log2(n / text.length);
  return bits;
}
