import type { Encoder } from "@msgpack/msgpack";
import type { Socket } from "../runtime/types.ts";
import { DEFAULT_MAX_DEPTH } from "../wire/decoder.ts";
import { encoderFor } from "../wire/encoder.ts";
import { type Message, REQUEST, type RequestMeta, RESPONSE } from "../wire/messages.ts";

/** Method names whose msgpack form is kept (a client calls few methods, but it may be handed any). */
const MAX_CACHED_METHODS = 256;

/** `"deadline"` as a one-key msgpack map's key: fixmap(1), fixstr(8), the bytes. */
const DEADLINE_KEY = new Uint8Array([0x81, 0xa8, ...new TextEncoder().encode("deadline")]);

/** The deadline of a meta that holds nothing else, when it is a whole number of milliseconds that fits 32 bits: written by hand. */
function onlyDeadline(meta: RequestMeta | number): number | undefined {
  const deadline = typeof meta === "number" ? meta : meta.deadline;
  if (deadline === undefined || !Number.isInteger(deadline) || deadline < 0 || deadline > 0xffff_ffff) return undefined;
  // Any other key, even one set to undefined, goes through the encoder as it always did.
  if (typeof meta === "object") for (const key in meta) if (key !== "deadline") return undefined;
  return deadline;
}

/**
 * Writes messages to a socket, batching every message produced in one tick
 * into one write: pipelined replies cost one syscall, not one each.
 *
 * Requests and successful answers, nearly every message, have their envelope written here by
 * hand (`sendRequest`, `sendResult`): the array header, type and msgid, a method name encoded once,
 * a meta that is only a deadline. The encoder writes only what varies, the params or the result,
 * with a nesting limit one level lower so the message as a whole keeps the peer's limit.
 */
export class BatchWriter {
  private batch: Uint8Array = new Uint8Array(16 * 1024);
  private length = 0;
  private scheduled = false;
  private readonly flushNow = () => this.flush();
  private readonly encoder: Encoder;
  /** For what sits one level inside the message array (params, result, meta). */
  private readonly innerEncoder: Encoder;
  private readonly methods = new Map<string, Uint8Array>();

  constructor(
    private readonly socket: Socket,
    /** Called after each write, for backpressure checks. */
    private readonly afterWrite?: () => void,
    /** Nesting levels a message may have, the same limit the peer's decoder applies (EBB_MAX_DEPTH). */
    maxDepth = DEFAULT_MAX_DEPTH,
  ) {
    this.encoder = encoderFor(maxDepth);
    this.innerEncoder = encoderFor(maxDepth - 1);
  }

  /** Encodes `message` and queues it for this tick's write; throws, queuing nothing, when it cannot be encoded. */
  send(message: Message): void {
    // encodeSharedRef returns a view of the encoder's buffer: copy it before the next encode.
    this.append(this.encoder.encodeSharedRef(message));
    this.schedule();
  }

  /**
   * Queues `[0, msgid, method, params]`, or `[0, msgid, method, params, meta]`; a number as `meta`
   * stands for `{deadline: meta}`. Throws, queuing nothing, when it cannot be encoded.
   */
  sendRequest(msgid: number, method: string, params: unknown[], meta: RequestMeta | number | undefined): void {
    // Everything that runs the caller's code (a getter may write another message) or reuses the
    // encoder's buffer comes first; the message is then appended whole, so nothing lands inside it.
    const name = this.methodBytes(method);
    const deadline = meta === undefined ? undefined : onlyDeadline(meta);
    const metaBytes = meta !== undefined && deadline === undefined ? this.innerEncoder.encode(typeof meta === "number" ? { deadline: meta } : meta) : undefined;
    const body = this.innerEncoder.encodeSharedRef(params);
    this.byte(meta === undefined ? 0x94 : 0x95);
    this.byte(REQUEST);
    this.uint(msgid);
    this.append(name);
    this.append(body);
    if (deadline !== undefined) {
      this.append(DEADLINE_KEY);
      this.uint(deadline);
    } else if (metaBytes) {
      this.append(metaBytes);
    }
    this.schedule();
  }

  /** Queues `[1, msgid, null, result]`, or with `meta` as a fifth element; throws, queuing nothing, when it cannot be encoded. */
  sendResult(msgid: number, result: unknown, meta?: object): void {
    // As in sendRequest: encode first (copying all but the last), append whole.
    const metaBytes = meta && this.innerEncoder.encode(meta);
    const body = this.innerEncoder.encodeSharedRef(result);
    this.byte(meta ? 0x95 : 0x94);
    this.byte(RESPONSE);
    this.uint(msgid);
    this.byte(0xc0);
    this.append(body);
    if (metaBytes) this.append(metaBytes);
    this.schedule();
  }

  /** Writes what is batched now rather than at the end of the tick. */
  flush(): void {
    this.scheduled = false;
    if (this.length === 0) return;
    // The socket may hold on to what it cannot write yet, so it gets its own copy.
    const out = this.batch.slice(0, this.length);
    this.length = 0;
    // One huge reply should not pin a huge buffer to an idle connection.
    if (this.batch.byteLength > 1024 * 1024) this.batch = new Uint8Array(16 * 1024);
    this.socket.write(out);
    this.afterWrite?.();
  }

  private schedule(): void {
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flushNow);
    }
  }

  /** The method name as a msgpack string, encoded once per name. */
  private methodBytes(method: string): Uint8Array {
    let bytes = this.methods.get(method);
    if (!bytes) {
      // Copied: the encoder's buffer is reused by the next encode.
      bytes = this.innerEncoder.encode(method);
      if (this.methods.size >= MAX_CACHED_METHODS) this.methods.clear();
      this.methods.set(method, bytes);
    }
    return bytes;
  }

  /** An unsigned integer of up to 32 bits in its shortest msgpack form. */
  private uint(value: number): void {
    if (value < 0x80) return this.byte(value);
    this.reserve(5);
    const batch = this.batch;
    let at = this.length;
    if (value <= 0xff) {
      batch[at++] = 0xcc;
      batch[at++] = value;
    } else if (value <= 0xffff) {
      batch[at++] = 0xcd;
      batch[at++] = value >>> 8;
      batch[at++] = value & 0xff;
    } else {
      batch[at++] = 0xce;
      batch[at++] = value >>> 24;
      batch[at++] = (value >>> 16) & 0xff;
      batch[at++] = (value >>> 8) & 0xff;
      batch[at++] = value & 0xff;
    }
    this.length = at;
  }

  private byte(value: number): void {
    this.reserve(1);
    this.batch[this.length++] = value;
  }

  private append(bytes: Uint8Array): void {
    this.reserve(bytes.byteLength);
    this.batch.set(bytes, this.length);
    this.length += bytes.byteLength;
  }

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.batch.byteLength) return;
    const next = new Uint8Array(Math.max(this.batch.byteLength * 2, this.length + bytes));
    next.set(this.batch.subarray(0, this.length));
    this.batch = next;
  }
}
