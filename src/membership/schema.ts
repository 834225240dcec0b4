import { z } from "zod";
import type { Logger } from "../log.ts";
import { sourceHost } from "../runtime/address.ts";
import { MAX_META_BYTES, type Member, type SwimMessage } from "./types.ts";
import { metaBytes } from "./sync.ts";

/**
 * Membership messages come from the network: every one is parsed here, at the
 * edge, before it reaches the state machine, which never sees `unknown`.
 */

/**
 * Highest incarnation a suspect, dead or left claim may carry: 2^48. Far above
 * what a member reaches (it starts at the Unix time in seconds, ~2^31, and
 * counts up by one per refutation or metadata change), and far below 2^53, so
 * `inc + 1` is always exact. An alive claim may carry one more: a member
 * accused at MAX_INCARNATION refutes at MAX_INCARNATION + 1, which no
 * accusation can reach, so a refutation always wins.
 */
export const MAX_INCARNATION = 2 ** 48;

/**
 * The most one update may raise the incarnation of a member we believe alive
 * or suspect (or our own, for an accusation): 2^20, about 12 days of a
 * restart's seconds-based start value. Honest members step by one; a forged
 * update cannot pin a live member at MAX_INCARNATION in one message, it
 * would take 2^28 of them. A dead or left member may come back at any value.
 */
export const MAX_INCARNATION_STEP = 2 ** 20;

/** Longest member id, in characters. */
export const MAX_ID_LENGTH = 128;

/** Longest `host:port` address, in characters (a DNS name is at most 253). */
export const MAX_ADDR_LENGTH = 262;

/** Most updates one message may carry (gossip, piggyback, or one page of a state exchange). */
export const MAX_UPDATES_PER_MESSAGE = 256;

/** Most services a member may list, and the longest service name. */
export const MAX_SERVICES = 64;
const MAX_NAME_LENGTH = 128;

const id = z.string().min(1).max(MAX_ID_LENGTH);

/** True for an address members accept: `host:port` (IPv6 in brackets allowed), port 1-65535, at most MAX_ADDR_LENGTH. */
export function isMemberAddress(value: string): boolean {
  const colon = value.lastIndexOf(":");
  if (colon <= 0 || value.length > MAX_ADDR_LENGTH) return false;
  const port = value.slice(colon + 1);
  return /^[0-9]{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65_535;
}

const addr = z.string().min(3).max(MAX_ADDR_LENGTH).refine(isMemberAddress, "must be host:port with a port 1-65535");

const incarnation = z.number().int().min(0).max(MAX_INCARNATION + 1);

const meta = z
  .object({
    state: z.string().max(MAX_NAME_LENGTH),
    services: z.array(z.string().max(MAX_NAME_LENGTH)).max(MAX_SERVICES),
    version: z.string().max(MAX_NAME_LENGTH),
    http: z.number().int().min(1).max(65_535).nullable(),
  })
  .refine((m) => metaBytes(m) <= MAX_META_BYTES, `metadata over ${MAX_META_BYTES} bytes`);

export const UpdateSchema = z.object({
  id,
  addr,
  inc: incarnation,
  status: z.enum(["alive", "suspect", "dead", "left"]),
  meta: meta.optional(),
  by: id.optional(),
}).refine((u) => u.status === "alive" || u.inc <= MAX_INCARNATION, { message: `incarnation over ${MAX_INCARNATION}`, path: ["inc"] });

const updates = z.array(UpdateSchema).max(MAX_UPDATES_PER_MESSAGE);

export const SwimMessageSchema = z.discriminatedUnion("t", [
  z.object({ t: z.literal("ping"), from: id, target: id, u: updates.optional() }),
  z.object({ t: z.literal("ack"), from: id, u: updates.optional() }),
  z.object({ t: z.literal("nack"), from: id }),
  z.object({ t: z.literal("ping-req"), from: id, target: id, addr, u: updates.optional() }),
  z.object({ t: z.literal("gossip"), from: id, u: updates }),
  z.object({
    t: z.literal("sync"),
    from: id,
    digest: z.number().int().min(0).max(0xffff_ffff).optional(),
    state: updates.optional(),
    join: z.boolean().optional(),
    push: z.boolean().optional(),
    same: z.boolean().optional(),
  }),
]);

/** A `$members` answer: what cluster clients read from a seed. */
export const MemberListSchema = z.array(
  z.object({
    id,
    addr,
    incarnation,
    status: z.enum(["alive", "suspect", "dead", "left"]),
    meta,
    since: z.number(),
  }),
);

/** A `$members` answer, parsed; undefined when it is not a member list. */
export function parseMemberList(value: unknown): Member[] | undefined {
  const parsed = MemberListSchema.safeParse(value);
  return parsed.success ? (parsed.data as Member[]) : undefined;
}

/** A membership message, or undefined with the reason it is refused. */
export function parseSwimMessage(value: unknown): { message: SwimMessage; error?: undefined } | { message?: undefined; error: string } {
  const parsed = SwimMessageSchema.safeParse(value);
  if (parsed.success) return { message: parsed.data as SwimMessage };
  const issue = parsed.error.issues[0];
  return { error: issue ? `${issue.path.join(".") || "message"}: ${issue.message}` : "invalid" };
}

/** Peers remembered for log-once; past this, new peers are logged at debug only. */
const MAX_PEERS_LOGGED = 1_024;

/**
 * The edge of the membership: parses inbound messages, counts those refused,
 * and logs the first from each peer (later ones only count).
 */
export class SwimGate {
  /** Membership messages refused since start. */
  rejected = 0;
  private readonly logged = new Set<string>();

  constructor(private readonly log: Logger) {}

  /** The message, or undefined (counted, logged once per peer) when it does not parse. */
  admit(value: unknown, peer: string): SwimMessage | undefined {
    const { message, error } = parseSwimMessage(value);
    if (message) return message;
    this.rejected++;
    // A peer is its host: reconnecting from another port does not earn another warning.
    const host = sourceHost(peer);
    if (!this.logged.has(host) && this.logged.size < MAX_PEERS_LOGGED) {
      this.logged.add(host);
      this.log.warn(`membership message from "${peer}" refused: ${error}`, { peer, error });
    } else this.log.debug("membership message refused", { peer, error });
    return undefined;
  }
}
