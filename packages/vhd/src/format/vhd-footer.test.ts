import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { chsBytes, chsExactSize, chsGeometry, decodeVhdFooter, encodeVhdFooter, fixedVhdFooter, VHD_FOOTER_SIZE, vhdChecksum } from "./vhd-footer.js";

const dir = mkdtempSync(join(tmpdir(), "lcow-vhd-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function qemuFooter(size: string): Uint8Array {
  const file = join(dir, `q-${size}.vhd`);
  execFileSync("qemu-img", ["create", "-q", "-f", "vpc", "-o", "subformat=fixed", file, size]);
  const bytes = readFileSync(file);
  return bytes.subarray(bytes.length - VHD_FOOTER_SIZE);
}

describe("VHD footer", () => {
  it("decodes a fixed-disk footer written by qemu-img and verifies its checksum", () => {
    const f = decodeVhdFooter(qemuFooter("64M"));
    expect(f.diskType).toBe(2);
    expect(f.dataOffset).toBe(0xffffffffffffffffn);
    // QEMU rounds the disk up to a size its CHS geometry addresses exactly; for that size the
    // specification's algorithm (ours) must give back the very same geometry.
    expect(f.currentSize).toBe(chsBytes(f.geometry));
    expect(f.currentSize).toBeGreaterThanOrEqual(64 * 2 ** 20);
    expect(chsGeometry(f.currentSize)).toEqual(f.geometry);
  });

  it("computes the specification's geometry for small, medium and capped sizes", () => {
    expect(chsGeometry(64 * 2 ** 20)).toEqual({ cylinders: 963, heads: 8, sectorsPerTrack: 17 });
    expect(chsGeometry(2 ** 30)).toEqual({ cylinders: 2080, heads: 16, sectorsPerTrack: 63 });
    // Past 65535 x 16 x 255 sectors the geometry saturates.
    expect(chsGeometry(2 ** 40)).toEqual({ cylinders: 65535, heads: 16, sectorsPerTrack: 255 });
  });

  it("finds sizes the geometry addresses exactly, never smaller than asked", () => {
    for (const want of [4096, 1 << 20, 5_000_000, 123_456_789, 3 * 2 ** 30]) {
      const size = chsExactSize(want);
      expect(size).toBeGreaterThanOrEqual(want);
      expect(size % 4096).toBe(0);
      expect(chsBytes(chsGeometry(size))).toBe(size);
      expect(size - want).toBeLessThan(8 << 20);
    }
  });

  it("round-trips through encode and decode with a valid one's-complement checksum", () => {
    const footer = fixedVhdFooter(chsExactSize(10 << 20), { unixTime: 1_700_000_000, uniqueId: new Uint8Array(16).fill(7) });
    const f = decodeVhdFooter(footer);
    expect(f.creatorApplication).toBe("lcow");
    expect(f.creatorHostOs).toBe("Wi2k");
    expect(f.timestamp).toBe(1_700_000_000 - 946_684_800);
    expect(vhdChecksum(footer)).toBe(f.checksum);
    expect(Buffer.from(encodeVhdFooter(f))).toEqual(Buffer.from(footer));
  });

  it("rejects a footer with a bad checksum or cookie", () => {
    const footer = fixedVhdFooter(1 << 20, { unixTime: 0, uniqueId: new Uint8Array(16) });
    const flipped = footer.slice();
    flipped[50]! ^= 1;
    expect(() => decodeVhdFooter(flipped)).toThrow(/checksum/);
    const cookie = footer.slice();
    cookie[0] = 0x41;
    expect(() => decodeVhdFooter(cookie)).toThrow(expect.objectContaining({ code: "FORMAT_INVALID" }));
  });
});
