import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CompatFeature, decodeSuperblock, encodeSuperblock, IncompatFeature, RoCompatFeature, SUPERBLOCK_OFFSET } from "./superblock.js";

const dir = mkdtempSync(join(tmpdir(), "lcow-sb-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A superblock written by the real mkfs.ext4, with options close to what we write. */
function mkfsSuperblock(): Uint8Array {
  const image = join(dir, "mkfs.img");
  writeFileSync(image, "");
  execFileSync("mkfs.ext4", ["-q", "-F", "-b", "4096", "-I", "256", "-O", "^has_journal,^metadata_csum", "-U", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "-L", "golden", image, "8M"]);
  return readFileSync(image).subarray(SUPERBLOCK_OFFSET, SUPERBLOCK_OFFSET + 1024);
}

describe("superblock", () => {
  it("decodes what mkfs.ext4 wrote, field by field", () => {
    const sb = decodeSuperblock(mkfsSuperblock());
    expect(sb.magic).toBe(0xef53);
    expect(1024 << sb.logBlockSize).toBe(4096);
    expect(sb.inodeSize).toBe(256);
    expect(sb.blocksCount).toBe(2048); // 8 MiB of 4 KiB blocks
    expect(sb.blocksPerGroup).toBe(32768);
    expect(sb.firstIno).toBe(11);
    expect(sb.volumeName).toBe("golden");
    expect(Buffer.from(sb.uuid).toString("hex")).toBe("0f1e2d3c4b5a69788796a5b4c3d2e1f0");
    expect(sb.featureIncompat & IncompatFeature.EXTENTS).toBeTruthy();
    expect(sb.featureCompat & CompatFeature.HAS_JOURNAL).toBe(0);
    expect(sb.featureRoCompat & RoCompatFeature.EXTRA_ISIZE).toBeTruthy();
    expect(sb.freeBlocksCount).toBeLessThan(sb.blocksCount);
  });

  it("re-encodes the fields it models byte for byte", () => {
    const original = mkfsSuperblock();
    const sb = decodeSuperblock(original);
    const again = encodeSuperblock(sb);
    // Every modelled field lands at its offset; decoding the re-encoding gives the same record.
    expect(decodeSuperblock(again)).toEqual(sb);
    for (const [offset, width] of [[0x00, 0x68], [0x68, 16], [0x150, 12], [0x24c, 8]] as const) {
      expect(Buffer.from(again.subarray(offset, offset + width))).toEqual(Buffer.from(original.subarray(offset, offset + width)));
    }
  });

  it("is read by dumpe2fs when we write it", () => {
    const sb = decodeSuperblock(mkfsSuperblock());
    sb.volumeName = "lcow-test";
    const image = readFileSync(join(dir, "mkfs.img"));
    image.set(encodeSuperblock(sb), SUPERBLOCK_OFFSET);
    writeFileSync(join(dir, "edited.img"), image);
    const out = execFileSync("dumpe2fs", ["-h", join(dir, "edited.img")], { stdio: ["ignore", "pipe", "ignore"] }).toString();
    expect(out).toMatch(/Filesystem volume name:\s+lcow-test/);
    expect(out).toMatch(/Block count:\s+2048/);
  });

  it("rejects a bad magic with FORMAT_INVALID", () => {
    expect(() => decodeSuperblock(new Uint8Array(1024))).toThrow(expect.objectContaining({ code: "FORMAT_INVALID" }));
  });
});
