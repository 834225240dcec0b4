/** A FIFO of byte chunks waiting for the kernel, shared by both adapters. */
export class WriteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0;
  /** Bytes queued and not yet consumed. */
  bytes = 0;

  /** Appends a chunk. The chunk must not be modified afterwards. */
  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.chunks.push(chunk);
    this.bytes += chunk.byteLength;
  }

  /** The first unconsumed chunk; merges small chunks so one write carries them all. */
  peek(maxMergeBytes = 256 * 1024): Uint8Array {
    const first = this.chunks[this.head]!;
    if (this.chunks.length - this.head === 1 || first.byteLength >= maxMergeBytes) return first;
    let size = 0;
    let end = this.head;
    while (end < this.chunks.length && size + this.chunks[end]!.byteLength <= maxMergeBytes) {
      size += this.chunks[end]!.byteLength;
      end++;
    }
    if (end - this.head < 2) return first;
    const merged = new Uint8Array(size);
    let offset = 0;
    for (let i = this.head; i < end; i++) {
      merged.set(this.chunks[i]!, offset);
      offset += this.chunks[i]!.byteLength;
    }
    this.chunks.splice(this.head, end - this.head, merged);
    return merged;
  }

  /** Drops `count` bytes from the front (the kernel took them). */
  consume(count: number): void {
    this.bytes -= count;
    while (count > 0) {
      const first = this.chunks[this.head]!;
      if (count >= first.byteLength) {
        count -= first.byteLength;
        this.head++;
      } else {
        this.chunks[this.head] = first.subarray(count);
        count = 0;
      }
    }
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head > 1024) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }

  /** Forgets everything queued. */
  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.bytes = 0;
  }
}
