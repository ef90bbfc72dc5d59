// Input decompression for layer tars: sniff the magic, then stream-decode gzip (node:zlib) or zstd
// (fzstd, pure JS, because node:zlib on Node 20 has no zstd and we must run on any OS).

import { pipeline } from "node:stream";
import { createGunzip } from "node:zlib";
import { Decompress } from "fzstd";
import xxhash, { type XXHashAPI } from "xxhash-wasm";
import { VhdError } from "./errors.js";

/** Compression formats `decompressAuto` recognises by magic. */
export type Compression = "gzip" | "zstd" | "none";

/** Bytes `detectCompression` needs to decide; fewer is fine at the end of the input. */
export const COMPRESSION_SNIFF_BYTES = 4;

/**
 * Names the compression of a stream from its first bytes: `gzip` for `1f 8b`, `zstd` for a zstd
 * frame (`28 b5 2f fd`) or a zstd skippable frame (`5? 2a 4d 18`), else `none` (a plain tar, whose
 * first bytes are a file name). Needs `COMPRESSION_SNIFF_BYTES` bytes; a shorter prefix is
 * judged on what is there.
 */
export function detectCompression(firstBytes: Uint8Array): Compression {
  const [b0, b1, b2, b3] = firstBytes;
  if (b0 === 0x1f && b1 === 0x8b) return "gzip";
  if (b0 === 0x28 && b1 === 0xb5 && b2 === 0x2f && b3 === 0xfd) return "zstd";
  // zstd writes a skippable frame first with `--patch-from`-style tools and pzstd; treat it as zstd.
  if (b0 !== undefined && (b0 & 0xf0) === 0x50 && b1 === 0x2a && b2 === 0x4d && b3 === 0x18) return "zstd";
  return "none";
}

/**
 * Decompresses a layer tar stream whose format is detected by magic (`detectCompression`).
 * Plain input is passed through chunk for chunk, uncopied. Gzip (including multi-member files, as
 * `pigz` and `cat a.gz b.gz` produce) is decoded by node:zlib; zstd (multiple and skippable
 * frames) by a pure-JS decoder. Pull-based: the input is read only as fast as the output is
 * consumed, and memory stays bounded by the zstd window (at most 128 MiB, zstd's own default
 * limit) plus a block or two, whatever the compression ratio.
 *
 * Errors of the input iterable are rethrown untouched; corrupt or truncated compressed data ends
 * the iteration with a `VhdError` `COMPRESSION_INVALID` naming the format, the reason and the
 * compressed byte offset. Stopping the iteration early releases the input.
 */
export async function* decompressAuto(input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array, void, undefined> {
  const it = input[Symbol.asyncIterator]();
  // Chunks can be as small as one byte (a slow pipe), so gather enough to sniff.
  const head: Uint8Array[] = [];
  let headLength = 0;
  let ended = false;
  try {
    while (headLength < COMPRESSION_SNIFF_BYTES) {
      const r = await it.next();
      if (r.done) {
        ended = true;
        break;
      }
      if (r.value.length === 0) continue;
      head.push(r.value);
      headLength += r.value.length;
    }
  } catch (err) {
    await it.return?.();
    throw err;
  }
  const format = detectCompression(concat(head, Math.min(headLength, COMPRESSION_SNIFF_BYTES)));
  const rest = replay(head, ended ? undefined : it);
  if (format === "gzip") yield* gunzip(rest);
  else if (format === "zstd") yield* unzstd(rest);
  else yield* rest;
}

/** Yields the sniffed chunks, then the rest of the iterator, as one stream. */
async function* replay(head: Uint8Array[], it: AsyncIterator<Uint8Array> | undefined): AsyncGenerator<Uint8Array> {
  try {
    yield* head;
    if (it === undefined) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  } finally {
    // Runs on early return by the consumer too, so a file handle or socket is closed at once.
    await it?.return?.();
  }
}

// Large output chunks: the tar parser downstream is fastest with big reads (1 MiB beat 64 KiB by
// far in the converter benchmark), and zlib's default 16 KiB costs a callback per 16 KiB.
const GZIP_CHUNK = 1024 * 1024;

async function* gunzip(source: AsyncGenerator<Uint8Array>): AsyncGenerator<Uint8Array> {
  const z = createGunzip({ chunkSize: GZIP_CHUNK });
  // pipeline gives back-pressure in both directions and destroys the source when `z` is
  // destroyed (consumer stopped early) and `z` when the source throws.
  const settled = new Promise<void>((resolve) => pipeline(source, z, () => resolve()));
  try {
    for await (const chunk of z as AsyncIterable<Buffer>) yield chunk;
  } catch (err) {
    // zlib's own errors carry a `Z_*` code; anything else came from the input and is not ours to rename.
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string" && code.startsWith("Z_")) {
      const reason = code === "Z_BUF_ERROR" ? "truncated (unexpected end of file)" : (err as Error).message;
      throw new VhdError("COMPRESSION_INVALID", `gzip: corrupt input near compressed byte ${z.bytesWritten}: ${reason}`, {
        offset: z.bytesWritten,
        cause: err,
      });
    }
    throw err;
  } finally {
    // Wait until the source's own cleanup has run, so its file handle is closed when we return.
    z.destroy();
    await settled;
  }
}

// zstd's default decoder limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT = 27): larger windows need an explicit
// opt-in there too, and the window is the one buffer whose size the input chooses.
const ZSTD_MAX_WINDOW = 128 * 1024 * 1024;
// RFC 8878 3.1.1.2.3: no block may exceed min(Window_Size, 128 KiB).
const ZSTD_MAX_BLOCK = 128 * 1024;
const ZSTD_MAGIC = 0xfd2fb528;

// fzstd skips the frame's Content_Checksum without checking it, so corruption inside a literal run
// would pass silently (and land in the image). We verify it: XXH64 of the frame's content, low 32
// bits (RFC 8878 3.1.1). xxhash-wasm is WebAssembly, so it still runs on any OS; loaded once, lazily.
let xxhashApi: Promise<XXHashAPI> | undefined;

/**
 * zstd decoding. We walk the frame and block headers ourselves (RFC 8878) and hand fzstd one
 * whole block at a time: that bounds what a single push can produce to about one block, whatever
 * the compression ratio (a 4-byte RLE block expands to 128 KiB), so the consumer's pace governs
 * memory; it lets us name the offset of a bad block; and it finds truncation at the exact frame
 * boundary instead of fzstd's generic "unexpected EOF".
 */
async function* unzstd(source: AsyncGenerator<Uint8Array>): AsyncGenerator<Uint8Array> {
  try {
    yield* unzstdFrames(new ChunkQueue(source));
  } finally {
    await source.return(undefined);
  }
}

async function* unzstdFrames(buf: ChunkQueue): AsyncGenerator<Uint8Array> {
  let frameStart = 0;
  const fail = (reason: string, offset: number): never => {
    throw new VhdError("COMPRESSION_INVALID", `zstd: corrupt input at compressed byte ${offset}: ${reason}`, { offset });
  };
  for (;;) {
    frameStart = buf.position;
    const magicBytes = await buf.take(4, true);
    if (magicBytes === undefined) return; // clean end between frames
    if (magicBytes.length < 4) fail("truncated frame magic", frameStart);
    const magic = u32le(magicBytes, 0);
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      // Skippable frame: user data that decoders must ignore.
      const sizeBytes = await buf.take(4);
      if (sizeBytes.length < 4) fail("truncated skippable frame header", frameStart);
      const size = u32le(sizeBytes, 0);
      if ((await buf.skip(size)) < size) fail("truncated skippable frame", frameStart);
      continue;
    }
    if (magic !== ZSTD_MAGIC) fail(`bad frame magic 0x${magic.toString(16).padStart(8, "0")}`, frameStart);

    const descriptorBytes = await buf.take(1);
    const descriptor = descriptorBytes[0];
    if (descriptor === undefined) fail("truncated frame header", frameStart);
    const d = descriptor as number;
    const fcsFlag = d >> 6;
    const singleSegment = (d >> 5) & 1;
    const hasChecksum = (d >> 2) & 1;
    const dictIdFlag = d & 3;
    if (d & 0x08) fail("reserved bit set in frame header descriptor", frameStart + 4);
    const dictIdBytes = [0, 1, 2, 4][dictIdFlag] as number;
    const fcsBytes = [singleSegment, 2, 4, 8][fcsFlag] as number;
    const restLength = (singleSegment ? 0 : 1) + dictIdBytes + fcsBytes;
    const rest = await buf.take(restLength);
    if (rest.length < restLength) fail("truncated frame header", frameStart);
    let dictId = 0;
    for (let i = 0; i < dictIdBytes; i++) dictId += (rest[(singleSegment ? 0 : 1) + i] as number) * 2 ** (8 * i);
    if (dictId !== 0) fail(`frame needs dictionary ${dictId}, which we do not have`, frameStart);
    let windowSize: number;
    if (singleSegment) {
      // The window is the whole content: the frame content size field.
      let fcs = 0;
      for (let i = 0; i < fcsBytes; i++) fcs += (rest[dictIdBytes + i] as number) * 2 ** (8 * i);
      windowSize = fcsBytes === 2 ? fcs + 256 : fcs;
    } else {
      const wd = rest[0] as number;
      const windowBase = 2 ** (10 + (wd >> 3));
      windowSize = windowBase + (windowBase / 8) * (wd & 7);
    }
    if (windowSize > ZSTD_MAX_WINDOW) {
      fail(`window of ${windowSize} bytes exceeds the ${ZSTD_MAX_WINDOW}-byte limit (zstd's default)`, frameStart);
    }

    let out: Uint8Array[] = [];
    const hasher = hasChecksum ? (await (xxhashApi ??= xxhash())).create64(0n) : undefined;
    const decoder = new Decompress((data) => {
      if (data.length === 0) return;
      out.push(data);
      hasher?.update(data);
    });
    const push = (bytes: Uint8Array, at: number, final = false): void => {
      try {
        decoder.push(bytes, final);
      } catch (err) {
        throw new VhdError("COMPRESSION_INVALID", `zstd: corrupt input at compressed byte ${at}: ${(err as Error).message}`, {
          offset: at,
          cause: err,
        });
      }
    };
    push(concat([magicBytes, descriptorBytes, rest], 5 + restLength), frameStart);

    for (;;) {
      const blockStart = buf.position;
      const header = await buf.take(3);
      if (header.length < 3) fail("truncated block header (input ended inside a frame)", blockStart);
      const h = (header[0] as number) | ((header[1] as number) << 8) | ((header[2] as number) << 16);
      const last = h & 1;
      const type = (h >> 1) & 3;
      const size = h >> 3;
      if (type === 3) fail("reserved block type", blockStart);
      if (size > ZSTD_MAX_BLOCK) fail(`block of ${size} bytes exceeds 128 KiB`, blockStart);
      // RLE blocks store one byte however long they expand.
      const stored = type === 1 ? 1 : size;
      const body = await buf.take(stored);
      if (body.length < stored) fail("truncated block (input ended inside a frame)", blockStart);
      push(concat([header, body], 3 + stored), blockStart);
      for (const chunk of out) yield chunk;
      out = [];
      if (last) break;
    }
    if (hasChecksum) {
      const at = buf.position;
      const checksum = await buf.take(4);
      if (checksum.length < 4) fail("truncated content checksum", at);
      const expected = u32le(checksum, 0);
      push(checksum, at);
      // fzstd holds back frames under 18 bytes until told the input is final.
      push(new Uint8Array(0), buf.position, true);
      for (const chunk of out) yield chunk;
      out = [];
      const actual = Number(BigInt.asUintN(32, (hasher as NonNullable<typeof hasher>).digest()));
      if (actual !== expected) {
        const hex = (n: number): string => n.toString(16).padStart(8, "0");
        fail(`content checksum mismatch (frame says ${hex(expected)}, data hashes to ${hex(actual)})`, at);
      }
      continue;
    }
    push(new Uint8Array(0), buf.position, true);
    for (const chunk of out) yield chunk;
  }
}

/**
 * A pull-based byte queue over an async iterator, for parsing headers that straddle chunks.
 * `take(n)` returns a zero-copy view when the bytes lie in one chunk and copies only when they span two.
 */
class ChunkQueue {
  private chunk: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private done = false;
  /** Bytes handed out (or skipped) so far: the compressed offset for error messages. */
  position = 0;

  constructor(private readonly source: AsyncIterator<Uint8Array>) {}

  private async fill(): Promise<boolean> {
    while (this.pos >= this.chunk.length) {
      if (this.done) return false;
      const r = await this.source.next();
      if (r.done) {
        this.done = true;
        return false;
      }
      this.chunk = r.value;
      this.pos = 0;
    }
    return true;
  }

  /**
   * Up to `n` bytes; fewer only at the end of the input. With `orEnd`, `undefined` when the
   * input is already at its end (so a caller can tell a clean end from a truncation).
   */
  async take(n: number, orEnd: true): Promise<Uint8Array | undefined>;
  async take(n: number): Promise<Uint8Array>;
  async take(n: number, orEnd = false): Promise<Uint8Array | undefined> {
    if (!(await this.fill())) return orEnd ? undefined : new Uint8Array(0);
    if (this.chunk.length - this.pos >= n) {
      const view = this.chunk.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.position += n;
      return view;
    }
    const parts: Uint8Array[] = [];
    let got = 0;
    while (got < n && (await this.fill())) {
      const part = this.chunk.subarray(this.pos, this.pos + (n - got));
      parts.push(part);
      this.pos += part.length;
      got += part.length;
    }
    this.position += got;
    return concat(parts, got);
  }

  /** Discards up to `n` bytes without copying; returns how many were there. */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0 && (await this.fill())) {
      const step = Math.min(left, this.chunk.length - this.pos);
      this.pos += step;
      left -= step;
    }
    this.position += n - left;
    return n - left;
  }
}

function u32le(b: Uint8Array, at: number): number {
  return ((b[at] as number) | ((b[at + 1] as number) << 8) | ((b[at + 2] as number) << 16) | ((b[at + 3] as number) << 24)) >>> 0;
}

/** Joins the first `length` bytes of `parts`; no copy when one part holds them all. */
function concat(parts: Uint8Array[], length: number): Uint8Array {
  const first = parts[0];
  if (first !== undefined && first.length >= length) return first.subarray(0, length);
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    if (at >= length) break;
    const n = Math.min(p.length, length - at);
    out.set(p.subarray(0, n), at);
    at += n;
  }
  return out;
}
