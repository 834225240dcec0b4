/** An item of gossip: news about one member. Newer news about the same member replaces older. */
export interface Broadcast<T> {
  /** The member the news is about. */
  readonly key: string;
  readonly item: T;
  /** Approximate encoded size, for packing a message. */
  readonly bytes: number;
}

interface Queued<T> extends Broadcast<T> {
  transmits: number;
  /** Replaced by newer news or sent enough times. */
  gone: boolean;
}

/** A FIFO of queued items with a moving head; stale entries are skipped and dropped lazily. */
interface Bucket<T> {
  items: Queued<T>[];
  head: number;
}

/**
 * memberlist's TransmitLimitedQueue: each broadcast goes out up to `limit()`
 * times, least-sent first, and is dropped after that. Items sit in FIFO
 * buckets by transmit count, so taking the least-sent costs no sort, and a
 * moved item leaves only a stale slot behind, skipped and dropped later.
 */
export class BroadcastQueue<T> {
  private readonly byKey = new Map<string, Queued<T>>();
  private readonly buckets: Bucket<T>[] = [];

  constructor(private readonly limit: () => number) {}

  get size(): number {
    return this.byKey.size;
  }

  /** Queues news, replacing any older news about the same member. */
  push(broadcast: Broadcast<T>): void {
    const old = this.byKey.get(broadcast.key);
    if (old) old.gone = true;
    const queued: Queued<T> = { key: broadcast.key, item: broadcast.item, bytes: broadcast.bytes, transmits: 0, gone: false };
    this.byKey.set(broadcast.key, queued);
    this.bucket(0).items.push(queued);
  }

  /** Takes up to `maxBytes` of the least-transmitted news and counts one transmission for each. */
  take(maxBytes: number, maxItems = 64): T[] {
    if (this.byKey.size === 0) return [];
    const limit = this.limit();
    const out: T[] = [];
    const taken: Queued<T>[] = [];
    let used = 0;
    let full = false;
    for (let t = 0; t < this.buckets.length && !full; t++) {
      const bucket = this.buckets[t];
      if (!bucket) continue;
      const { items } = bucket;
      let i = bucket.head;
      for (; i < items.length; i++) {
        const queued = items[i]!;
        if (queued.gone || queued.transmits !== t) {
          if (i === bucket.head) bucket.head++;
          continue;
        }
        // Updates are of similar size: the first that does not fit ends the message.
        if (out.length >= maxItems || used + queued.bytes > maxBytes) {
          full = true;
          break;
        }
        used += queued.bytes;
        out.push(queued.item);
        taken.push(queued);
        if (i === bucket.head) bucket.head++;
      }
      if (bucket.head === items.length) {
        items.length = 0;
        bucket.head = 0;
      } else if (bucket.head > 1024 && bucket.head * 2 > items.length) {
        bucket.items = items.slice(bucket.head);
        bucket.head = 0;
      }
    }
    for (const queued of taken) {
      queued.transmits++;
      if (queued.transmits >= limit) {
        queued.gone = true;
        if (this.byKey.get(queued.key) === queued) this.byKey.delete(queued.key);
      } else {
        this.bucket(queued.transmits).items.push(queued);
      }
    }
    return out;
  }

  /** Forgets everything (on leave). */
  clear(): void {
    for (const queued of this.byKey.values()) queued.gone = true;
    this.byKey.clear();
    this.buckets.length = 0;
  }

  private bucket(t: number): Bucket<T> {
    return (this.buckets[t] ??= { items: [], head: 0 });
  }
}
