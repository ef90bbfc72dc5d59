// A read cache over a block source: metadata and small files are read in aligned chunks kept
// in a small LRU, so walking a filesystem costs one large read per chunk instead of one small
// read (and one thread-pool round trip) per inode, directory block or small file.
//
// `view` hands out the cached bytes themselves (no copy, no allocation beyond the view), which
// is what makes a walk over tens of thousands of inodes cheap; over a source with synchronous
// reads, `viewSync` does the same without a promise per read.
import type { BlockSource } from "./block-source.js";

/** If not provided, 256 KiB chunks ... */
const DEFAULT_CHUNK = 256 << 10;
/** ... and 64 of them (16 MiB). */
const DEFAULT_CHUNKS = 64;

export class CachedSource implements BlockSource {
  /** Loaded chunks by index, least recently used first (Map order is insertion order). */
  private readonly chunks = new Map<number, Uint8Array>();
  /** Chunks being read from an asynchronous source, so that concurrent misses share one read. */
  private readonly loading = new Map<number, Promise<Uint8Array>>();
  /** The chunk used last: hits on it (most of them, in a walk) skip the LRU bookkeeping. */
  private lastIndex = -1;
  private lastChunk: Uint8Array | undefined;
  /** Present when the inner source reads synchronously (see `BlockSource.readSync`). */
  readonly readSync?: (buffer: Uint8Array, position: number) => number;

  constructor(
    private readonly inner: BlockSource,
    private readonly chunkSize = DEFAULT_CHUNK,
    private readonly maxChunks = DEFAULT_CHUNKS,
  ) {
    if (inner.readSync) this.readSync = (buffer, position) => this.copySync(buffer, position);
  }

  get size(): number {
    return this.inner.size;
  }

  /** True when `viewSync` and `readSync` can be used. */
  get sync(): boolean {
    return this.readSync !== undefined;
  }

  /** Reads through the cache; reads of at least a chunk go straight to the source. */
  async read(buffer: Uint8Array, position: number): Promise<number> {
    if (this.readSync) return this.readSync(buffer, position);
    const want = this.clip(buffer.length, position);
    if (want >= this.chunkSize) return this.inner.read(buffer.subarray(0, want), position);
    let done = 0;
    while (done < want) {
      const at = position + done;
      const index = Math.floor(at / this.chunkSize);
      const chunk = this.cached(index) ?? (await this.load(index));
      done += this.copyFrom(chunk, index, buffer, done, at, want - done);
    }
    if (want < buffer.length) buffer.fill(0, want);
    return want;
  }

  /**
   * `length` bytes at `position` (zeros past the end of the disk). The result is the cached
   * bytes themselves when they lie in one chunk, so callers must not write into it; it stays
   * valid after the chunk leaves the cache (chunks are never reused).
   */
  async view(position: number, length: number): Promise<Uint8Array> {
    const index = Math.floor(position / this.chunkSize);
    const from = position - index * this.chunkSize;
    if (from + length > this.chunkSize) {
      const copy = new Uint8Array(length);
      await this.read(copy, position);
      return copy;
    }
    const chunk = this.cached(index) ?? (this.readSync ? this.loadSync(index) : await this.load(index));
    return from + length <= chunk.length ? chunk.subarray(from, from + length) : this.padded(chunk, from, length);
  }

  /** `view`, synchronously; only when `sync`. */
  viewSync(position: number, length: number): Uint8Array {
    const index = Math.floor(position / this.chunkSize);
    const from = position - index * this.chunkSize;
    if (from + length > this.chunkSize) {
      const copy = new Uint8Array(length);
      this.copySync(copy, position);
      return copy;
    }
    const chunk = this.cached(index) ?? this.loadSync(index);
    return from + length <= chunk.length ? chunk.subarray(from, from + length) : this.padded(chunk, from, length);
  }

  close(): Promise<void> {
    this.chunks.clear();
    this.lastChunk = undefined;
    this.lastIndex = -1;
    return this.inner.close();
  }

  private copySync(buffer: Uint8Array, position: number): number {
    const want = this.clip(buffer.length, position);
    if (want >= this.chunkSize) return this.inner.readSync!(buffer.subarray(0, want), position);
    let done = 0;
    while (done < want) {
      const at = position + done;
      const index = Math.floor(at / this.chunkSize);
      done += this.copyFrom(this.cached(index) ?? this.loadSync(index), index, buffer, done, at, want - done);
    }
    if (want < buffer.length) buffer.fill(0, want);
    return want;
  }

  /** Bytes of the disk from `position`, as many as `length` allows (0 past the end). */
  private clip(length: number, position: number): number {
    return Math.max(0, Math.min(length, this.size - position));
  }

  /** Copies up to `n` bytes at disk offset `at` out of `chunk` into `buffer` at `to`. */
  private copyFrom(chunk: Uint8Array, index: number, buffer: Uint8Array, to: number, at: number, n: number): number {
    const from = at - index * this.chunkSize;
    const k = Math.min(n, chunk.length - from);
    buffer.set(chunk.subarray(from, from + k), to);
    return k;
  }

  /** The last chunk of a disk whose size is not a chunk multiple, read past its end: a zero-padded copy. */
  private padded(chunk: Uint8Array, from: number, length: number): Uint8Array {
    const copy = new Uint8Array(length);
    if (from < chunk.length) copy.set(chunk.subarray(from));
    return copy;
  }

  private cached(index: number): Uint8Array | undefined {
    if (index === this.lastIndex) return this.lastChunk;
    const hit = this.chunks.get(index);
    if (hit) {
      // Re-inserting marks the chunk most recently used.
      this.chunks.delete(index);
      this.chunks.set(index, hit);
      this.lastIndex = index;
      this.lastChunk = hit;
    }
    return hit;
  }

  private store(index: number, bytes: Uint8Array): Uint8Array {
    this.chunks.set(index, bytes);
    if (this.chunks.size > this.maxChunks) this.chunks.delete(this.chunks.keys().next().value as number);
    this.lastIndex = index;
    this.lastChunk = bytes;
    return bytes;
  }

  private fresh(index: number): Uint8Array {
    const start = index * this.chunkSize;
    return new Uint8Array(Math.max(0, Math.min(this.chunkSize, this.size - start)));
  }

  private loadSync(index: number): Uint8Array {
    const bytes = this.fresh(index);
    this.inner.readSync!(bytes, index * this.chunkSize);
    return this.store(index, bytes);
  }

  private load(index: number): Promise<Uint8Array> {
    let pending = this.loading.get(index);
    if (!pending) {
      const bytes = this.fresh(index);
      pending = this.inner.read(bytes, index * this.chunkSize).then(
        () => {
          this.loading.delete(index);
          return this.store(index, bytes);
        },
        (err: unknown) => {
          this.loading.delete(index);
          throw err;
        },
      );
      this.loading.set(index, pending);
    }
    return pending;
  }
}
