import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { decompressAuto, detectCompression } from "./compression.js";
import { isVhdError } from "./errors.js";

// Deterministic content that compresses, but not to nothing: runs of text broken by
// pseudo-random bytes, so both codecs emit several blocks of several kinds.
function corpus(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed;
  const words = new TextEncoder().encode("usr/lib/x86_64-linux-gnu/libc.so.6 etc/passwd ");
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = (x >>> 24) % 7 === 0 ? x & 0xff : (words[i % words.length] as number);
  }
  return out;
}

/** Runs a real compressor CLI (`gzip`/`zstd`), so we test against what users' tools write. */
function tool(cmd: string, args: string[], input: Uint8Array): Uint8Array {
  return new Uint8Array(execFileSync(cmd, args, { input, maxBuffer: 1 << 30 }));
}

async function* chunked(data: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c);
  return new Uint8Array(Buffer.concat(parts));
}

async function failure(it: AsyncIterable<Uint8Array>): Promise<{ code: string; message: string; offset: number | undefined }> {
  try {
    await collect(it);
  } catch (err) {
    if (!isVhdError(err)) throw err;
    return { code: err.code, message: err.message, offset: err.offset };
  }
  throw new Error("expected decompression to fail");
}

const original = corpus(3 * 1024 * 1024 + 123);
const small = corpus(40_000, 7);

describe("detectCompression", () => {
  it.each([
    [[0x1f, 0x8b, 0x08, 0x00], "gzip"],
    [[0x1f, 0x8b], "gzip"],
    [[0x28, 0xb5, 0x2f, 0xfd], "zstd"],
    [[0x5e, 0x2a, 0x4d, 0x18], "zstd"], // skippable frame
    [[0x28, 0xb5, 0x2f], "none"], // too short to be zstd
    [[0x1f], "none"],
    [[], "none"],
    [[0x2e, 0x2f, 0x65, 0x74], "none"], // "./et": a plain tar's first name
  ])("%j is %s", (bytes, expected) => {
    expect(detectCompression(new Uint8Array(bytes))).toBe(expected);
  });
});

describe("decompressAuto: plain input", () => {
  it("passes chunks through as the same objects (no copy)", async () => {
    const chunks = [original.subarray(0, 2), original.subarray(2, 1000), original.subarray(1000)];
    const seen: Uint8Array[] = [];
    for await (const c of decompressAuto(chunked3(chunks))) seen.push(c);
    expect(seen).toHaveLength(3);
    seen.forEach((c, i) => expect(c).toBe(chunks[i]));
  });

  it("yields nothing for empty input, and skips empty chunks while sniffing", async () => {
    expect(await collect(decompressAuto(chunked(new Uint8Array(0), 1)))).toHaveLength(0);
    const out = await collect(decompressAuto(chunked3([new Uint8Array(0), small.subarray(0, 1), small.subarray(1)])));
    expect(Buffer.from(out).equals(small)).toBe(true);
  });

  it("passes input shorter than the sniff window through", async () => {
    const out = await collect(decompressAuto(chunked(new Uint8Array([0x1f]), 1)));
    expect([...out]).toEqual([0x1f]);
  });
});

describe("decompressAuto: gzip", () => {
  const gz = tool("gzip", ["-c", "-6"], original);
  const gzSmall = tool("gzip", ["-c", "-9"], small);

  it.each([1 << 20, 321, 64 * 1024 + 1])("round-trips the real gzip CLI's output in %i-byte chunks", async (size) => {
    const out = await collect(decompressAuto(chunked(gz, size)));
    expect(out.length).toBe(original.length);
    expect(Buffer.from(out).equals(original)).toBe(true);
  });

  it("round-trips in 1-byte chunks", async () => {
    const out = await collect(decompressAuto(chunked(gzSmall, 1)));
    expect(Buffer.from(out).equals(small)).toBe(true);
  });

  it("decodes multi-member files (cat a.gz b.gz, pigz)", async () => {
    const multi = Buffer.concat([gzSmall, tool("gzip", ["-c", "-1"], original), gzSmall]);
    const out = await collect(decompressAuto(chunked(multi, 4099)));
    expect(Buffer.from(out).equals(Buffer.concat([small, original, small]))).toBe(true);
  });

  it("reports a corrupt stream as COMPRESSION_INVALID", async () => {
    const bad = Buffer.from(gz);
    for (let i = 1000; i < 1100; i++) bad[i] = (bad[i] as number) ^ 0x5a;
    const f = await failure(decompressAuto(chunked(bad, 4096)));
    expect(f.code).toBe("COMPRESSION_INVALID");
    expect(f.message).toMatch(/^gzip: corrupt input near compressed byte \d+: /);
  });

  it("reports a bad trailer CRC", async () => {
    const bad = Buffer.from(gzSmall);
    const crcAt = bad.length - 8;
    bad[crcAt] = (bad[crcAt] as number) ^ 1;
    const f = await failure(decompressAuto(chunked(bad, 4096)));
    expect(f.code).toBe("COMPRESSION_INVALID");
    expect(f.message).toMatch(/gzip: .*incorrect data check/);
  });

  it("reports truncation as COMPRESSION_INVALID", async () => {
    const f = await failure(decompressAuto(chunked(gz.subarray(0, gz.length - 5000), 8192)));
    expect(f.code).toBe("COMPRESSION_INVALID");
    expect(f.message).toMatch(/gzip: .*truncated/);
    const g = await failure(decompressAuto(chunked(gz.subarray(0, 2), 1)));
    expect(g.code).toBe("COMPRESSION_INVALID");
  });

  it("reads the input only as fast as the output is consumed", async () => {
    const big = corpus(8 * 1024 * 1024, 3);
    const randomish = tool("gzip", ["-c", "-1"], big);
    const source = counting(chunked(randomish, 64 * 1024));
    const it = decompressAuto(source)[Symbol.asyncIterator]();
    await it.next();
    await new Promise((r) => setTimeout(r, 50));
    // Only stream buffers' worth of read-ahead, never the whole input.
    expect(source.bytes()).toBeLessThan(2 * 1024 * 1024);
    expect(randomish.length).toBeGreaterThan(3 * 1024 * 1024);
    await it.return?.(undefined);
    expect(source.closed()).toBe(true);
  });
});

describe("decompressAuto: zstd", () => {
  const zst = tool("zstd", ["-c", "-q", "-3"], original);

  it.each([1 << 20, 321, 64 * 1024 + 1])("round-trips the real zstd CLI's output in %i-byte chunks", async (size) => {
    const out = await collect(decompressAuto(chunked(zst, size)));
    expect(out.length).toBe(original.length);
    expect(Buffer.from(out).equals(original)).toBe(true);
  });

  it("round-trips in 1-byte chunks", async () => {
    const z = tool("zstd", ["-c", "-q", "-19"], small);
    const out = await collect(decompressAuto(chunked(z, 1)));
    expect(Buffer.from(out).equals(small)).toBe(true);
  });

  it("decodes frames without content size or checksum, as `zstd --no-check` from a pipe writes", async () => {
    // From stdin zstd does not know the size, so it writes no Frame_Content_Size and no single-segment frame.
    const z = new Uint8Array(execFileSync("sh", ["-c", "head -c 3000000 /dev/zero | zstd -c -q --no-check"], { maxBuffer: 1 << 26 }));
    const out = await collect(decompressAuto(chunked(z, 777)));
    expect(out.length).toBe(3_000_000);
    expect(out.every((b) => b === 0)).toBe(true);
  });

  it("decodes several frames, skippable frames and an empty frame", async () => {
    const empty = tool("zstd", ["-c", "-q"], new Uint8Array(0));
    const skippable = new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
    const smallZ = tool("zstd", ["-c", "-q"], small);
    const z = Buffer.concat([skippable, smallZ, empty, skippable, zst]);
    const out = await collect(decompressAuto(chunked(z, 1000)));
    expect(Buffer.from(out).equals(Buffer.concat([small, original]))).toBe(true);
    // Byte by byte, so every header straddles chunks.
    const bytewise = await collect(decompressAuto(chunked(Buffer.concat([skippable, smallZ, empty, smallZ]), 1)));
    expect(Buffer.from(bytewise).equals(Buffer.concat([small, small]))).toBe(true);
    expect(await collect(decompressAuto(chunked(empty, 1)))).toHaveLength(0);
  });

  it("reports corrupt data as COMPRESSION_INVALID with the offset", async () => {
    const bad = Buffer.from(zst);
    bad[4] = (bad[4] as number) | 0x08; // reserved bit of the frame header descriptor
    const f = await failure(decompressAuto(chunked(bad, 4096)));
    expect(f).toMatchObject({ code: "COMPRESSION_INVALID", offset: 4 });
    expect(f.message).toBe("zstd: corrupt input at compressed byte 4: reserved bit set in frame header descriptor");
  });

  it("reports garbage after a frame", async () => {
    const f = await failure(decompressAuto(chunked(Buffer.concat([zst, Buffer.from("not zstd")]), 4096)));
    expect(f.code).toBe("COMPRESSION_INVALID");
    expect(f.offset).toBe(zst.length);
    expect(f.message).toMatch(/bad frame magic/);
  });

  it("reports damaged block contents", async () => {
    const bad = Buffer.from(zst);
    for (let i = 200; i < 400; i++) bad[i] = (i * 37) & 0xff;
    const f = await failure(decompressAuto(chunked(bad, 4096)));
    expect(f.code).toBe("COMPRESSION_INVALID");
    expect(f.message).toMatch(/^zstd: corrupt input at compressed byte \d+: /);
  });

  it("verifies the frame's content checksum, which fzstd alone ignores", async () => {
    // Incompressible data: zstd stores it in raw blocks, where a flipped byte decodes "fine".
    const noise = new Uint8Array(50_000);
    let x = 0x9e3779b9;
    for (let i = 0; i < noise.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      noise[i] = x & 0xff;
    }
    const z = Buffer.from(tool("zstd", ["-c", "-q"], noise));
    expect(z.length).toBeGreaterThan(noise.length); // raw blocks, plus headers
    expect(Buffer.from(await collect(decompressAuto(chunked(z, 999)))).equals(noise)).toBe(true);
    z[z.length - 1000] = (z[z.length - 1000] as number) ^ 0x01;
    const f = await failure(decompressAuto(chunked(z, 999)));
    expect(f.code).toBe("COMPRESSION_INVALID");
    expect(f.offset).toBe(z.length - 4);
    expect(f.message).toMatch(/content checksum mismatch \(frame says [0-9a-f]{8}, data hashes to [0-9a-f]{8}\)$/);
  });

  it("reports truncation as COMPRESSION_INVALID", async () => {
    for (const cut of [zst.length - 1, zst.length - 3000, 7]) {
      const f = await failure(decompressAuto(chunked(zst.subarray(0, cut), 1000)));
      expect(f.code).toBe("COMPRESSION_INVALID");
      expect(f.message).toMatch(/truncated/);
    }
  });

  it("refuses windows above 128 MiB instead of allocating them", async () => {
    // Frame header: magic, descriptor 0 (no size, no checksum), Window_Descriptor for 2^28 bytes.
    const header = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, (28 - 10) << 3, 0x01, 0x00, 0x00]);
    const f = await failure(decompressAuto(chunked(header, 100)));
    expect(f.code).toBe("COMPRESSION_INVALID");
    expect(f.message).toMatch(/window of 268435456 bytes exceeds/);
  });

  it("keeps a decompression bomb's output paced by the consumer", async () => {
    // 256 MiB of zeros is a few KiB of zstd; pulling one chunk must not decode it all.
    const bomb = new Uint8Array(execFileSync("sh", ["-c", "head -c 268435456 /dev/zero | zstd -c -q"], { maxBuffer: 1 << 26 }));
    expect(bomb.length).toBeLessThan(64 * 1024);
    const source = counting(chunked(bomb, bomb.length));
    const it = decompressAuto(source)[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    expect((first.value as Uint8Array).length).toBeLessThanOrEqual(128 * 1024);
    await it.return?.(undefined);
    expect(source.closed()).toBe(true);
  });
});

describe("decompressAuto: input errors", () => {
  it("rethrows the input's own errors untouched", async () => {
    const gz = tool("gzip", ["-c"], small);
    for (const data of [small, gz, tool("zstd", ["-c", "-q"], small)]) {
      const boom = Object.assign(new Error("EIO: i/o error, read"), { code: "EIO" });
      async function* broken(): AsyncGenerator<Uint8Array> {
        yield data.subarray(0, 100);
        throw boom;
      }
      await expect(collect(decompressAuto(broken()))).rejects.toBe(boom);
    }
  });
});

async function* chunked3(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  yield* chunks;
}

/** Wraps a source to count the bytes pulled from it and whether it was closed. */
function counting(src: AsyncGenerator<Uint8Array>): AsyncGenerator<Uint8Array> & { bytes(): number; closed(): boolean } {
  let bytes = 0;
  let closed = false;
  async function* gen(): AsyncGenerator<Uint8Array> {
    try {
      for await (const c of src) {
        bytes += c.length;
        yield c;
      }
    } finally {
      closed = true;
    }
  }
  return Object.assign(gen(), { bytes: () => bytes, closed: () => closed });
}
