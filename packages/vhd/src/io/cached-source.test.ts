import { describe, expect, it } from "vitest";
import type { BlockSource } from "./block-source.js";
import { CachedSource } from "./cached-source.js";

/** A disk in memory that counts reads; `sync` gives it a `readSync`. */
function memoryDisk(size: number, sync: boolean) {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7 + (i >> 8)) & 0xff;
  const reads: { position: number; length: number }[] = [];
  const copy = (buffer: Uint8Array, position: number) => {
    reads.push({ position, length: buffer.length });
    const want = Math.max(0, Math.min(buffer.length, size - position));
    buffer.set(bytes.subarray(position, position + want));
    buffer.fill(0, want);
    return want;
  };
  const source: BlockSource = {
    size,
    read: async (buffer, position) => copy(buffer, position),
    close: async () => {},
    ...(sync ? { readSync: copy } : {}),
  };
  return { source, bytes, reads };
}

/** What `length` bytes at `position` read as: the disk's, then zeros past its end. */
function expected(bytes: Uint8Array, position: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  out.set(bytes.subarray(position, Math.min(bytes.length, position + length)));
  return out;
}

describe("CachedSource", () => {
  const SIZE = 10_000; // not a chunk multiple: the last chunk is short
  const CHUNK = 1024;

  for (const sync of [true, false]) {
    it(`reads within, across and past chunks (${sync ? "synchronous" : "asynchronous"} disk)`, async () => {
      const { source, bytes } = memoryDisk(SIZE, sync);
      const cache = new CachedSource(source, CHUNK, 4);
      expect(cache.sync).toBe(sync);
      for (const [position, length] of [[0, 10], [1000, 100], [1020, 10], [5000, 3 * CHUNK], [9990, 20], [10_000, 8], [2048, CHUNK]] as const) {
        expect(await cache.view(position, length), `view ${position}+${length}`).toEqual(expected(bytes, position, length));
        const buffer = new Uint8Array(length).fill(0xee);
        expect(await cache.read(buffer, position)).toBe(Math.max(0, Math.min(length, SIZE - position)));
        expect(buffer, `read ${position}+${length}`).toEqual(expected(bytes, position, length));
        if (sync) {
          expect(cache.viewSync(position, length)).toEqual(expected(bytes, position, length));
          const b = new Uint8Array(length);
          cache.readSync!(b, position);
          expect(b).toEqual(expected(bytes, position, length));
        }
      }
    });
  }

  it("hands out the cached bytes themselves, one disk read per chunk, evicting the least recently used", () => {
    const { source, reads } = memoryDisk(SIZE, true);
    const cache = new CachedSource(source, CHUNK, 2);
    const a = cache.viewSync(10, 16);
    const b = cache.viewSync(100, 16);
    expect(b.buffer).toBe(a.buffer); // views of one chunk
    expect(reads).toHaveLength(1);
    cache.viewSync(CHUNK + 5, 4); // second chunk
    cache.viewSync(20, 4); // first again: now the most recent
    cache.viewSync(2 * CHUNK, 4); // third: evicts the second
    expect(reads).toHaveLength(3);
    cache.viewSync(30, 4);
    expect(reads).toHaveLength(3);
    cache.viewSync(CHUNK, 4);
    expect(reads).toHaveLength(4);
    // A view stays valid after its chunk left the cache.
    expect(a).toEqual(expected(memoryDisk(SIZE, true).bytes, 10, 16));
  });

  it("shares one read among concurrent misses of a chunk, and retries a chunk whose read failed", async () => {
    const { source, bytes, reads } = memoryDisk(SIZE, false);
    let fail = true;
    const flaky: BlockSource = { ...source, read: async (b, p) => (fail ? Promise.reject(new Error("EIO")) : source.read(b, p)) };
    const cache = new CachedSource(flaky, CHUNK, 4);
    await expect(cache.view(0, 8)).rejects.toThrow("EIO");
    fail = false;
    const views = await Promise.all([cache.view(0, 8), cache.view(8, 8), cache.view(512, 8)]);
    expect(views[1]).toEqual(expected(bytes, 8, 8));
    expect(reads).toHaveLength(1);
  });
});
