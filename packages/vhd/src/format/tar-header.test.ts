import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeNumeric, decodeTarHeader, encodeTarHeader, encodeTarHeaderInto } from "./tar-header.js";

function numeric(bytes: number[] | string, length = 12): number {
  const field = new Uint8Array(length);
  if (typeof bytes === "string") field.set(Buffer.from(bytes, "latin1"));
  else field.set(bytes);
  return decodeNumeric(field, 0, length);
}

describe("tar header", () => {
  it("decodes octal, space/NUL padded, and GNU base-256 numbers (both signs)", () => {
    expect(numeric("00000000644\0")).toBe(0o644);
    expect(numeric("  755 \0", 8)).toBe(0o755);
    expect(numeric([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0])).toBe(2 ** 17);
    expect(numeric([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])).toBe(-1);
    expect(numeric([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00])).toBe(-256);
    expect(numeric("12x4")).toBeNaN();
  });

  it("round-trips a ustar header with a prefix", () => {
    const block = encodeTarHeader({ name: "file.txt", prefix: "a/b", mode: 0o644, uid: 1000, gid: 1000, size: 12345, mtime: 1_600_000_000, typeflag: "0", linkname: "", uname: "u", gname: "g" });
    const h = decodeTarHeader(block);
    expect(h).toMatchObject({ name: "a/b/file.txt", mode: 0o644, uid: 1000, size: 12345, mtime: 1_600_000_000, typeflag: "0", dialect: "ustar", uname: "u" });
  });

  it("decodes headers GNU tar wrote in gnu format, with base-256 uid and pre-1970 mtime", () => {
    const dir = mkdtempSync(join(tmpdir(), "lcow-th-"));
    try {
      writeFileSync(join(dir, "f"), "x");
      // Created with GNU tar 1.34: --format=gnu stores ids over 2^21 and negative times in base-256.
      execFileSync("tar", ["--format=gnu", "--owner=:3000000", "--group=:5", "--mtime=@-86400", "-C", dir, "-cf", join(dir, "t.tar"), "f"]);
      const h = decodeTarHeader(readFileSync(join(dir, "t.tar")).subarray(0, 512));
      expect(h).toMatchObject({ name: "f", dialect: "gnu", uid: 3000000, gid: 5, mtime: -86400, size: 1 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("encodes in place over whatever the block held, as encodeTarHeader does in a fresh one", () => {
    const h = { name: "usr/bin/tool", mode: 0o755, uid: 1000, gid: 5, size: 4097, mtime: 1_600_000_000, typeflag: "0", linkname: "" };
    const out = new Uint8Array(3 * 512).fill(0xa5); // a recycled output buffer
    encodeTarHeaderInto(out.subarray(512), h);
    expect(out.subarray(512, 1024)).toEqual(encodeTarHeader(h));
    expect(out[511]).toBe(0xa5);
    expect(out[1024]).toBe(0xa5); // nothing past the block
  });

  it("rejects a checksum mismatch naming the offset and the entry", () => {
    const block = encodeTarHeader({ name: "bad", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0, typeflag: "0", linkname: "" });
    block[0] = 0x63;
    expect(() => decodeTarHeader(block, 10240)).toThrow(/offset 10240 \("cad"\): checksum/);
  });
});
