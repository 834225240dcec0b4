import type { Encoder } from "@msgpack/msgpack";
import type { Socket } from "../runtime/types.ts";
import { DEFAULT_MAX_DEPTH } from "../wire/decoder.ts";
import { encoderFor } from "../wire/encoder.ts";
import type { Message } from "../wire/messages.ts";

/**
 * Writes messages to a socket, batching every message produced in one tick
 * into one write: pipelined replies cost one syscall, not one each.
 */
export class BatchWriter {
  private batch: Uint8Array = new Uint8Array(16 * 1024);
  private length = 0;
  private scheduled = false;
  private readonly flushNow = () => this.flush();
  private readonly encoder: Encoder;

  constructor(
    private readonly socket: Socket,
    /** Called after each write, for backpressure checks. */
    private readonly afterWrite?: () => void,
    /** Nesting levels a message may have, the same limit the peer's decoder applies (EBB_MAX_DEPTH). */
    maxDepth = DEFAULT_MAX_DEPTH,
  ) {
    this.encoder = encoderFor(maxDepth);
  }

  /** Encodes `message` and queues it for this tick's write; throws, queuing nothing, when it cannot be encoded. */
  send(message: Message): void {
    // encodeSharedRef returns a view of the encoder's buffer: copy it before the next encode.
    const bytes = this.encoder.encodeSharedRef(message);
    this.reserve(bytes.byteLength);
    this.batch.set(bytes, this.length);
    this.length += bytes.byteLength;
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flushNow);
    }
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

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.batch.byteLength) return;
    const next = new Uint8Array(Math.max(this.batch.byteLength * 2, this.length + bytes));
    next.set(this.batch.subarray(0, this.length));
    this.batch = next;
  }
}
