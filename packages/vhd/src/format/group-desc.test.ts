import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeGroupDesc, encodeGroupDesc, GROUP_DESC_SIZE } from "./group-desc.js";

describe("group descriptor", () => {
  it("round-trips", () => {
    const gd = { blockBitmap: 100, inodeBitmap: 101, inodeTable: 102, freeBlocksCount: 32000, freeInodesCount: 8000, usedDirsCount: 7, flags: 4, itableUnused: 3, checksum: 0xbeef };
    const bytes = encodeGroupDesc(gd);
    expect(bytes.length).toBe(GROUP_DESC_SIZE);
    expect(decodeGroupDesc(bytes)).toEqual(gd);
  });

  it("reads 64-byte descriptors (64bit feature) as mkfs.ext4 writes them by default", () => {
    const dir = mkdtempSync(join(tmpdir(), "lcow-gd64-"));
    try {
      const image = join(dir, "fs.img");
      writeFileSync(image, "");
      execFileSync("mkfs.ext4", ["-q", "-F", "-b", "4096", "-O", "64bit", image, "300M"]);
      const bytes = readFileSync(image);
      const gd1 = decodeGroupDesc(bytes, 4096 + 64, 64);
      const dump = execFileSync("dumpe2fs", [image], { stdio: ["ignore", "pipe", "ignore"] }).toString();
      expect(dump.slice(dump.indexOf("Group 1:"))).toContain(`Inode table at ${gd1.inodeTable}-`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads the table mkfs.ext4 wrote, consistent with dumpe2fs", () => {
    const dir = mkdtempSync(join(tmpdir(), "lcow-gd-"));
    try {
      const image = join(dir, "fs.img");
      writeFileSync(image, "");
      execFileSync("mkfs.ext4", ["-q", "-F", "-b", "4096", "-O", "^64bit,^metadata_csum", image, "300M"]);
      const bytes = readFileSync(image);
      const gd1 = decodeGroupDesc(bytes, 4096 + GROUP_DESC_SIZE);
      const dump = execFileSync("dumpe2fs", [image], { stdio: ["ignore", "pipe", "ignore"] }).toString();
      const group1 = dump.slice(dump.indexOf("Group 1:"));
      expect(group1).toContain(`Block bitmap at ${gd1.blockBitmap} `);
      expect(group1).toContain(`Inode table at ${gd1.inodeTable}-`);
      expect(group1).toMatch(new RegExp(`${gd1.freeBlocksCount} free blocks`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
