// A read cache over a block source: metadata and small files are read in aligned chunks kept
// in a small LRU, so walking a filesystem costs one large read per chunk instead of one small
// read (and one thread-pool round trip) per inode, directory block or small file.
import type { BlockSource } from "./block-source.js";

/** If not provided, 256 KiB chunks ... */
const DEFAULT_CHUNK = 256 << 10;
/** ... and 64 of them (16 MiB). */
const DEFAULT_CHUNKS = 64;

export class CachedSource implements BlockSource {
  private readonly cache = new Map<number, Promise<Uint8Array>>();

  constructor(
    private readonly inner: BlockSource,
    private readonly chunkSize = DEFAULT_CHUNK,
    private readonly maxChunks = DEFAULT_CHUNKS,
  ) {}

  get size(): number {
    return this.inner.size;
  }

  /** Reads through the cache; reads of at least a chunk go straight to the source. */
  async read(buffer: Uint8Array, position: number): Promise<number> {
    const want = Math.max(0, Math.min(buffer.length, this.size - position));
    if (want >= this.chunkSize) return this.inner.read(buffer.subarray(0, want), position);
    let done = 0;
    while (done < want) {
      const at = position + done;
      const index = Math.floor(at / this.chunkSize);
      const chunk = await this.chunk(index);
      const from = at - index * this.chunkSize;
      const n = Math.min(want - done, chunk.length - from);
      if (n <= 0) break;
      buffer.set(chunk.subarray(from, from + n), done);
      done += n;
    }
    if (done < buffer.length) buffer.fill(0, done);
    return want;
  }

  close(): Promise<void> {
    this.cache.clear();
    return this.inner.close();
  }

  private chunk(index: number): Promise<Uint8Array> {
    let hit = this.cache.get(index);
    if (hit) {
      // Map order is insertion order: re-inserting marks the chunk most recently used.
      this.cache.delete(index);
      this.cache.set(index, hit);
      return hit;
    }
    const start = index * this.chunkSize;
    const bytes = new Uint8Array(Math.min(this.chunkSize, this.size - start));
    hit = this.inner.read(bytes, start).then(() => bytes);
    hit.catch(() => this.cache.delete(index));
    this.cache.set(index, hit);
    if (this.cache.size > this.maxChunks) this.cache.delete(this.cache.keys().next().value as number);
    return hit;
  }
}
