// Shared helpers of the VHDX tests: a seeded PRNG, pattern data, reading a whole source.
import type { BlockSource } from "../src/io/block-source.js";

/** mulberry32: small, fast, seeded; test data only. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` pseudo-random bytes from `seed`. */
export function randomBytesSeeded(n: number, seed: number): Uint8Array {
  const r = prng(seed);
  const out = new Uint8Array(n);
  const v = new DataView(out.buffer);
  let i = 0;
  for (; i + 4 <= n; i += 4) v.setUint32(i, (r() * 2 ** 32) >>> 0);
  for (; i < n; i++) out[i] = (r() * 256) | 0;
  return out;
}

/** Reads all of `source` in 3 MiB + 512 reads (deliberately not block aligned). */
export async function readAll(source: BlockSource): Promise<Uint8Array> {
  const out = new Uint8Array(source.size);
  const step = 3 * 1024 * 1024 + 512;
  for (let at = 0; at < source.size; at += step) {
    const n = await source.read(out.subarray(at, Math.min(source.size, at + step)), at);
    if (n !== Math.min(step, source.size - at)) throw new Error(`short read at ${at}: ${n}`);
  }
  return out;
}

/** First differing offset of two arrays, or -1 (a readable failure instead of a 64 MiB diff). */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  if (Buffer.compare(a, b) === 0) return -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
