import { Decoder } from "@msgpack/msgpack";
import { errorText } from "../error-text.ts";

/** Thrown when the byte stream cannot carry msgpack-rpc messages; the connection must be closed. */
export class FrameError extends Error {
  override readonly name = "FrameError";
}

const INITIAL_BUFFER_BYTES = 64 * 1024;

/** Limits every message must keep, besides its size; the same on the way in and out. */
export interface MessageLimits {
  /** Items (every value, container or not) in one message. Default `DEFAULT_MAX_ELEMENTS`. */
  maxElements?: number;
  /** Nesting levels of one message, the message array itself being level 1. Default `DEFAULT_MAX_DEPTH`. */
  maxDepth?: number;
  /**
   * Bytes of complete messages one `push` returns at most; the rest waits for
   * `push(EMPTY)`, so one connection's backlog cannot hold the event loop. Default: no budget
   * (a server passes `DEFAULT_TURN_BYTES`).
   */
  turnBytes?: number;
}

/** Default of EBB_MAX_MESSAGE_ELEMENTS: decoding cost grows with items, not bytes (a 7.8 MB map of 1.3 million keys). */
export const DEFAULT_MAX_ELEMENTS = 100_000;
/** Default of EBB_MAX_DEPTH: nesting levels of a message, in and out (the msgpack encoder's own default is 100). */
export const DEFAULT_MAX_DEPTH = 64;
/** Bytes of messages handled in one turn of one connection before the others get theirs. */
export const DEFAULT_TURN_BYTES = 256 * 1024;
/** A chunk with nothing in it: `push(EMPTY)` goes on with a backlog. */
export const EMPTY = new Uint8Array(0);

/**
 * A streaming msgpack-rpc decoder for bytes arriving in arbitrary chunks.
 *
 * It first scans message boundaries (a header walk that keeps, per nesting
 * level, the items still owed, so it resumes where the last chunk stopped),
 * then decodes every complete message in the chunk in one `decodeMulti` pass.
 * The size, element and depth limits are enforced while scanning, before a
 * message is buffered whole.
 */
export class MessageDecoder {
  private readonly decoder = new Decoder();
  private buffer: Uint8Array = new Uint8Array(0);
  /** First byte not yet decoded. */
  private start = 0;
  /** One past the last byte received. */
  private end = 0;
  /** Start of the message being scanned. */
  private messageStart = 0;
  /** Scan position: the next header to read. */
  private scan = 0;
  /** Items the current message still owes, all levels together; 0 between messages. */
  private pending = 0;
  /** Items the current message had so far. */
  private elements = 0;
  /** Nesting level of the next item (0 between messages) and the items each level still owes. */
  private depth = 0;
  private readonly owed: Float64Array;
  readonly maxElements: number;
  readonly maxDepth: number;
  private readonly turnBytes: number;
  /** True when the last `push` stopped at its turn's budget with bytes still to scan. */
  backlog = false;

  constructor(
    readonly maxMessageBytes: number,
    limits: MessageLimits = {},
  ) {
    this.maxElements = limits.maxElements ?? DEFAULT_MAX_ELEMENTS;
    this.maxDepth = limits.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.turnBytes = limits.turnBytes ?? Infinity;
    this.owed = new Float64Array(this.maxDepth + 1);
  }

  /** Bytes received and not yet returned as messages. */
  get bufferedBytes(): number {
    return this.end - this.start;
  }

  /** True while part of a message has arrived and the rest has not. */
  get partial(): boolean {
    return this.pending > 0;
  }

  /**
   * Feeds a chunk; returns the messages it completed, up to the turn's budget
   * (then `backlog` is true: call `push(EMPTY)` on a later turn for the rest).
   * Throws `FrameError` on bytes that are not msgpack-rpc or break a limit.
   */
  push(chunk: Uint8Array): unknown[] {
    this.append(chunk);
    this.scanMessages();
    if (this.messageStart === this.start) return [];
    const region = this.buffer.subarray(this.start, this.messageStart);
    let messages: unknown[];
    try {
      messages = [...this.decoder.decodeMulti(region)];
    } catch (error) {
      throw new FrameError(`Bytes are not valid msgpack: ${errorText(error)}`);
    }
    this.start = this.messageStart;
    return messages;
  }

  private append(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    if (this.start === this.end) {
      // Nothing is held back: take the chunk as the buffer, no copy.
      this.buffer = chunk;
      this.start = this.messageStart = this.scan = 0;
      this.end = chunk.byteLength;
      return;
    }
    if (this.buffer.byteLength - this.end < chunk.byteLength) {
      // Decoded bin values are views into the old buffer, so it is never
      // overwritten: what is held back moves to a fresh one.
      const held = this.end - this.start;
      const next = new Uint8Array(Math.max(INITIAL_BUFFER_BYTES, (held + chunk.byteLength) * 2));
      next.set(this.buffer.subarray(this.start, this.end), 0);
      this.buffer = next;
      this.messageStart -= this.start;
      this.scan -= this.start;
      this.start = 0;
      this.end = held;
    }
    this.buffer.set(chunk, this.end);
    this.end += chunk.byteLength;
  }

  private scanMessages(): void {
    const buf = this.buffer;
    const end = this.end;
    const max = this.maxMessageBytes;
    const owed = this.owed;
    const budgetEnd = this.start + this.turnBytes;
    let pos = this.scan;
    let pending = this.pending;
    let elements = this.elements;
    let depth = this.depth;
    let messageStart = this.messageStart;
    this.backlog = false;
    for (;;) {
      if (depth === 0) {
        // Between messages: the next byte starts one, and it must be an array.
        messageStart = pos;
        if (pos >= end) break;
        if (pos >= budgetEnd) {
          this.backlog = true;
          break;
        }
        const first = buf[pos]!;
        if (!((first >= 0x90 && first <= 0x9f) || first === 0xdc || first === 0xdd)) {
          throw new FrameError(`Message is not a msgpack-rpc array (first byte 0x${first.toString(16).padStart(2, "0")})`);
        }
        pending = 1;
        elements = 0;
        depth = 1;
        owed[1] = 1;
      }
      if (pos >= end) break;
      const header = headerSize(buf, pos, end);
      if (header < 0) break;
      const payload = payloadOut;
      const items = itemsOut;
      const used = pos - messageStart + header + payload;
      if (used > max || pending - 1 + items > max - used) {
        throw new FrameError(`Message exceeds the limit of ${max} bytes`);
      }
      if (++elements + pending - 1 + items > this.maxElements) {
        throw new FrameError(`Message exceeds the limit of ${this.maxElements} elements`);
      }
      if (pos + header + payload > end) {
        elements--;
        break;
      }
      pos += header + payload;
      pending += items - 1;
      owed[depth]!--;
      if (items > 0) {
        if (depth === this.maxDepth) throw new FrameError(`Message nests deeper than the limit of ${this.maxDepth} levels`);
        owed[++depth] = items;
      }
      while (depth > 0 && owed[depth] === 0) depth--;
      if (depth === 0) this.messageStart = pos;
    }
    if (depth > 0 && end - messageStart > max) {
      throw new FrameError(`Message exceeds the limit of ${max} bytes`);
    }
    this.scan = pos;
    this.pending = pending;
    this.elements = elements;
    this.depth = depth;
  }
}

/**
 * Reads the header at `pos`: returns its own size and leaves the payload bytes
 * that follow it and the items it contains in `payloadOut` and `itemsOut`.
 * Returns -1 when the header itself is not all here yet.
 */
function headerSize(buf: Uint8Array, pos: number, end: number): number {
  const b = buf[pos]!;
  if (b <= 0x7f || b >= 0xe0) return item(1, 0, 0);
  if (b <= 0x8f) return item(1, 0, (b & 0x0f) * 2);
  if (b <= 0x9f) return item(1, 0, b & 0x0f);
  if (b <= 0xbf) return item(1, b & 0x1f, 0);
  const avail = end - pos;
  switch (b) {
    case 0xc0:
    case 0xc2:
    case 0xc3:
      return item(1, 0, 0);
    case 0xc4:
    case 0xd9:
      return avail < 2 ? -1 : item(2, buf[pos + 1]!, 0);
    case 0xc5:
    case 0xda:
      return avail < 3 ? -1 : item(3, u16(buf, pos + 1), 0);
    case 0xc6:
    case 0xdb:
      return avail < 5 ? -1 : item(5, u32(buf, pos + 1), 0);
    case 0xc7:
      return avail < 2 ? -1 : item(3, buf[pos + 1]!, 0);
    case 0xc8:
      return avail < 3 ? -1 : item(4, u16(buf, pos + 1), 0);
    case 0xc9:
      return avail < 5 ? -1 : item(6, u32(buf, pos + 1), 0);
    case 0xca:
      return item(5, 0, 0);
    case 0xcb:
      return item(9, 0, 0);
    case 0xcc:
    case 0xd0:
      return item(2, 0, 0);
    case 0xcd:
    case 0xd1:
      return item(3, 0, 0);
    case 0xce:
    case 0xd2:
      return item(5, 0, 0);
    case 0xcf:
    case 0xd3:
      return item(9, 0, 0);
    case 0xd4:
      return item(3, 0, 0);
    case 0xd5:
      return item(4, 0, 0);
    case 0xd6:
      return item(6, 0, 0);
    case 0xd7:
      return item(10, 0, 0);
    case 0xd8:
      return item(18, 0, 0);
    case 0xdc:
      return avail < 3 ? -1 : item(3, 0, u16(buf, pos + 1));
    case 0xdd:
      return avail < 5 ? -1 : item(5, 0, u32(buf, pos + 1));
    case 0xde:
      return avail < 3 ? -1 : item(3, 0, u16(buf, pos + 1) * 2);
    case 0xdf:
      return avail < 5 ? -1 : item(5, 0, u32(buf, pos + 1) * 2);
    default:
      // 0xc1 is the one byte msgpack never uses.
      throw new FrameError(`Bytes are not msgpack (0x${b.toString(16)} never starts a value)`);
  }
}

// Out-values of headerSize: returning a tuple would allocate once per item scanned.
let payloadOut = 0;
let itemsOut = 0;

function item(header: number, payload: number, items: number): number {
  payloadOut = payload;
  itemsOut = items;
  return header;
}

function u16(buf: Uint8Array, pos: number): number {
  return (buf[pos]! << 8) | buf[pos + 1]!;
}

function u32(buf: Uint8Array, pos: number): number {
  return buf[pos]! * 0x1000000 + ((buf[pos + 1]! << 16) | (buf[pos + 2]! << 8) | buf[pos + 3]!);
}
