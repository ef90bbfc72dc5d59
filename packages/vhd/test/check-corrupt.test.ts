// One deliberately corrupted image per corruption class: e2fsck -fn must fail on it (the oracle
// that the image really is broken), and checkImage must report the class's finding code.
import { copyFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkImage, FindingCode, type FindingCode as Code } from "../src/ext4/check.js";
import { vhdChecksum } from "../src/format/vhd-footer.js";
import { convertTar } from "../src/index.js";
import { run, runOk } from "./harness/exec.js";
import { makeTempDir } from "./harness/tmp.js";
import { bmap, debugfsW, direntOffset, e2fsckCode, fileAcl, inodeLocation, le16, le32, makeTree, mkfs, patch, readAt } from "./check/helpers.js";

type Base = "csum" | "plain" | "ext2" | "inline" | "htree" | "pad" | "vhd";
const BS: Record<Base, number> = { csum: 4096, plain: 4096, ext2: 1024, inline: 4096, htree: 4096, pad: 1024, vhd: 4096 };

interface Case {
  code: Code;
  base: Base;
  /** What is broken, for the test name. */
  what: string;
  corrupt: (img: string) => Promise<void>;
  /** False where e2fsck -fn exits 0 on the corruption (documented per case), so it is no oracle. */
  e2fsck?: boolean;
  /** Where e2fsck -fn reports the problem but still exits 0: what its output must say instead. */
  e2fsckSays?: RegExp;
}

const bytes = (...b: number[]) => Buffer.from(b);
const u32At = async (img: string, off: number) => (await readAt(img, off, 4)).readUInt32LE(0);
const xorByte = async (img: string, off: number, mask = 1) => patch(img, off, bytes((await readAt(img, off, 1))[0]! ^ mask));

/** The leaf block under /a/sparse's depth-1 extent tree (ei_leaf_lo of the root's first index). */
async function sparseLeaf(img: string, bs: number): Promise<number> {
  const { offset } = await inodeLocation(img, "/a/sparse", bs);
  expect((await readAt(img, offset + 0x28 + 6, 2)).readUInt16LE(0)).toBe(1); // eh_depth of the root
  return u32At(img, offset + 0x28 + 16);
}

const cases: Case[] = [
  { code: FindingCode.SUPERBLOCK_MAGIC, base: "plain", what: "s_magic 0x1234", corrupt: (img) => patch(img, 1024 + 0x38, le16(0x1234)) },
  { code: FindingCode.SUPERBLOCK_GEOMETRY, base: "plain", what: "s_blocks_count larger than the device", corrupt: (img) => debugfsW(img, "ssv blocks_count 99999999").then(() => {}) },
  { code: FindingCode.SUPERBLOCK_GEOMETRY, base: "plain", what: "s_blocks_per_group 0", corrupt: (img) => debugfsW(img, "ssv blocks_per_group 0").then(() => {}) },
  { code: FindingCode.SUPERBLOCK_CHECKSUM, base: "csum", what: "a superblock byte changed behind s_checksum", corrupt: (img) => xorByte(img, 1024 + 0x78, 0x40) },
  {
    code: FindingCode.FEATURE_UNSUPPORTED,
    base: "plain",
    what: "incompat dirdata",
    corrupt: async (img) => patch(img, 1024 + 0x60, le32((await u32At(img, 1024 + 0x60)) | 0x1000)),
  },
  {
    code: FindingCode.GROUP_DESC_CHECKSUM,
    base: "csum",
    what: "a descriptor byte changed behind bg_checksum",
    corrupt: (img) => xorByte(img, 4096 + 0x14, 0x01),
    // e2fsck -n prints "One or more block group descriptor checksums are invalid. Fix? no" and
    // then "IGNORED", exiting 0: its output, not its exit code, is the oracle here.
    e2fsckSays: /descriptor checksums are invalid/,
  },
  { code: FindingCode.GROUP_DESC_INVALID, base: "plain", what: "inode table beyond the filesystem", corrupt: (img) => debugfsW(img, "set_bg 0 inode_table 99999999").then(() => {}) },
  { code: FindingCode.METADATA_OVERLAP, base: "plain", what: "inode bitmap on the block bitmap", corrupt: async (img) => void (await debugfsW(img, `set_bg 0 inode_bitmap ${await u32At(img, 4096)}`)) },
  { code: FindingCode.GROUP_COUNT, base: "plain", what: "bg_free_blocks_count", corrupt: (img) => debugfsW(img, "set_bg 0 free_blocks_count 5").then(() => {}) },
  { code: FindingCode.BLOCK_BITMAP_MISMATCH, base: "plain", what: "a file's block freed in the bitmap", corrupt: async (img) => void (await debugfsW(img, `freeb ${await bmap(img, "/a/big")}`)) },
  { code: FindingCode.BLOCK_BITMAP_MISMATCH, base: "plain", what: "a free block marked in use", corrupt: (img) => debugfsW(img, "setb 16000").then(() => {}) },
  { code: FindingCode.INODE_BITMAP_MISMATCH, base: "plain", what: "a file's inode freed in the bitmap", corrupt: (img) => debugfsW(img, "freei /a/f1").then(() => {}) },
  { code: FindingCode.BITMAP_CHECKSUM, base: "csum", what: "block bitmap bit flipped behind its checksum", corrupt: async (img) => xorByte(img, (await u32At(img, 4096)) * 4096 + 2000, 0x80) },
  {
    code: FindingCode.BITMAP_PADDING,
    base: "pad",
    what: "padding past the last block of the last group cleared",
    corrupt: async (img) => {
      const descSize = (await readAt(img, 1024 + 0xfe, 2)).readUInt16LE(0) || 32;
      const bb = await u32At(img, 2 * 1024 + 3 * descSize); // group 3 of a 30 MiB fs: 6144 of 8192 blocks
      await patch(img, bb * 1024 + 800, Buffer.alloc(224));
    },
  },
  { code: FindingCode.INODE_CHECKSUM, base: "csum", what: "an inode byte changed behind its checksum", corrupt: async (img) => xorByte(img, (await inodeLocation(img, "/a/f1", 4096)).offset + 0x08) },
  { code: FindingCode.INODE_INVALID, base: "plain", what: "dtime on an inode in use", corrupt: (img) => debugfsW(img, "sif /a/f1 dtime 12345").then(() => {}) },
  { code: FindingCode.INODE_BLOCKS, base: "plain", what: "i_blocks", corrupt: (img) => debugfsW(img, "sif /a/big blocks 7").then(() => {}) },
  { code: FindingCode.INODE_SIZE, base: "plain", what: "a directory's i_size", corrupt: (img) => debugfsW(img, "sif /a size 8192").then(() => {}) },
  { code: FindingCode.SPECIAL_INODE, base: "plain", what: "root inode made a regular file", corrupt: (img) => debugfsW(img, "sif <2> mode 0100644").then(() => {}) },
  { code: FindingCode.EXTENT_HEADER, base: "plain", what: "extent root magic", corrupt: (img) => debugfsW(img, "sif /a/f1 block[0] 0x1234").then(() => {}) },
  { code: FindingCode.EXTENT_OUT_OF_RANGE, base: "plain", what: "extent start past the end", corrupt: (img) => debugfsW(img, "sif /a/big block[5] 99999999").then(() => {}) },
  { code: FindingCode.EXTENT_OVERLAP, base: "plain", what: "two files' extents on the same blocks", corrupt: async (img) => void (await debugfsW(img, `sif /a/f1 block[5] ${await bmap(img, "/a/big")}`)) },
  {
    code: FindingCode.EXTENT_LOOP,
    base: "plain",
    what: "an extent node indexing itself",
    corrupt: async (img) => {
      const leaf = await sparseLeaf(img, 4096);
      await patch(img, leaf * 4096 + 2, le16(1)); // eh_entries
      await patch(img, leaf * 4096 + 6, le16(1)); // eh_depth: now an index node...
      await patch(img, leaf * 4096 + 16, Buffer.concat([le32(leaf), le16(0)])); // ...whose only child is itself
    },
  },
  { code: FindingCode.EXTENT_CHECKSUM, base: "csum", what: "an extent block byte changed behind its tail", corrupt: async (img) => xorByte(img, (await sparseLeaf(img, 4096)) * 4096 + 12 + 100 * 12) },
  { code: FindingCode.BLOCK_MAP_INVALID, base: "ext2", what: "a direct block pointer past the end", corrupt: (img) => debugfsW(img, "sif /a/big block[0] 99999999").then(() => {}) },
  { code: FindingCode.BLOCK_MAP_INVALID, base: "ext2", what: "two files sharing a block", corrupt: async (img) => void (await debugfsW(img, `sif /a/f1 block[0] ${await bmap(img, "/a/big")}`)) },
  { code: FindingCode.INLINE_DATA_INVALID, base: "inline", what: "inline directory i_size", corrupt: (img) => debugfsW(img, "sif /a/b/c size 200").then(() => {}) },
  { code: FindingCode.INLINE_DATA_INVALID, base: "inline", what: "inline file without its system.data xattr", corrupt: (img) => debugfsW(img, "ea_rm /a/f1 system.data").then(() => {}) },
  { code: FindingCode.XATTR_BLOCK_INVALID, base: "plain", what: "xattr block magic", corrupt: async (img) => patch(img, (await fileAcl(img, "/a/big")) * 4096, le32(0xdeadbeef)) },
  { code: FindingCode.XATTR_REFCOUNT, base: "plain", what: "xattr block h_refcount", corrupt: async (img) => patch(img, (await fileAcl(img, "/a/big")) * 4096 + 4, le32(5)) },
  { code: FindingCode.XATTR_CHECKSUM, base: "csum", what: "xattr value byte changed behind h_checksum", corrupt: async (img) => xorByte(img, (await fileAcl(img, "/a/big")) * 4096 + 4096 - 20) },
  { code: FindingCode.DIRENT_BAD_LENGTH, base: "plain", what: "rec_len of '.'", corrupt: async (img) => patch(img, (await bmap(img, "/a")) * 4096 + 4, le16(13)) },
  { code: FindingCode.DIRENT_BAD_INODE, base: "plain", what: "entry of a cleared inode", corrupt: (img) => debugfsW(img, "clri /e/fifo").then(() => {}) },
  { code: FindingCode.DIRENT_BAD_INODE, base: "plain", what: "entry pointing past s_inodes_count", corrupt: async (img) => patch(img, await direntOffset(img, await bmap(img, "/a"), 4096, "f1"), le32(99_999_999)) },
  { code: FindingCode.DIRENT_FILE_TYPE, base: "plain", what: "file_type symlink on a regular file", corrupt: async (img) => patch(img, (await direntOffset(img, await bmap(img, "/a"), 4096, "f1")) + 7, bytes(7)) },
  { code: FindingCode.DIRENT_BAD_NAME, base: "plain", what: "a '/' in a name", corrupt: async (img) => patch(img, (await direntOffset(img, await bmap(img, "/a"), 4096, "f1")) + 9, bytes(0x2f)) },
  { code: FindingCode.DIRENT_DOT, base: "plain", what: "'..' of /a/b pointing at the root", corrupt: async (img) => patch(img, (await bmap(img, "/a/b")) * 4096 + 12, le32(2)) },
  { code: FindingCode.DIR_CHECKSUM, base: "csum", what: "a name byte changed behind the dirent tail", corrupt: async (img) => xorByte(img, (await direntOffset(img, await bmap(img, "/a"), 4096, "f1")) + 8) },
  { code: FindingCode.DIR_HTREE, base: "htree", what: "dx root limit", corrupt: async (img) => patch(img, (await bmap(img, "/e")) * 4096 + 32, le16(5)) },
  { code: FindingCode.LINK_COUNT, base: "plain", what: "i_links_count", corrupt: (img) => debugfsW(img, "sif /a/f1 links_count 5").then(() => {}) },
  { code: FindingCode.INODE_UNATTACHED, base: "plain", what: "a file's only entry removed", corrupt: (img) => debugfsW(img, "unlink /a/small").then(() => {}) },
  {
    code: FindingCode.ORPHAN_LIST,
    base: "plain",
    what: "an unlinked inode still allocated (open-unlinked file)",
    corrupt: async (img) => {
      const { ino } = await inodeLocation(img, "/a/small", 4096);
      await debugfsW(img, "unlink /a/small", `sif <${ino}> links_count 0`);
    },
  },
  {
    code: FindingCode.ORPHAN_LIST,
    base: "plain",
    what: "s_last_orphan set (e2fsck -n leaves orphan processing to a real run and exits 0)",
    corrupt: async (img) => void (await debugfsW(img, `ssv last_orphan ${(await inodeLocation(img, "/a/small", 4096)).ino}`)),
    e2fsck: false,
  },
  { code: FindingCode.DIRECTORY_CYCLE, base: "plain", what: "a directory linked inside itself", corrupt: (img) => debugfsW(img, "link /a /a/b/loop").then(() => {}) },
  { code: FindingCode.DIRECTORY_HARDLINK, base: "plain", what: "a directory linked twice", corrupt: (img) => debugfsW(img, "link /a/b /e/b2").then(() => {}) },
  { code: FindingCode.DIRECTORY_UNREACHABLE, base: "plain", what: "a directory's entry removed", corrupt: (img) => debugfsW(img, "unlink /a/b").then(() => {}) },
  { code: FindingCode.JOURNAL_NEEDS_RECOVERY, base: "csum", what: "needs_recovery (e2fsck -n skips the replay and exits 0)", corrupt: (img) => debugfsW(img, "feature needs_recovery").then(() => {}), e2fsck: false },
];

let dir: string;
const bases = new Map<Base, string>();

beforeAll(async () => {
  dir = await makeTempDir("check-corrupt");
  const tree = join(dir, "tree");
  await makeTree(tree);
  const make = async (base: Base, mib: number, opts: string[]) => {
    const img = join(dir, `${base}.img`);
    await mkfs(img, mib, opts, tree);
    bases.set(base, img);
  };
  await make("csum", 64, ["-b", "4096"]);
  await make("plain", 64, ["-b", "4096", "-O", "^metadata_csum"]);
  await make("ext2", 32, ["-t", "ext2"]);
  await make("inline", 64, ["-b", "4096", "-O", "inline_data,^metadata_csum"]);
  await make("htree", 64, ["-b", "4096"]);
  await run("e2fsck", ["-fyD", bases.get("htree")!]);
  await make("pad", 30, ["-b", "1024", "-O", "^metadata_csum"]);
  const tar = join(dir, "t.tar");
  await runOk("tar", ["-C", tree, "--format=posix", "-cf", tar, "."]);
  await convertTar(tar, join(dir, "vhd.img"));
  bases.set("vhd", join(dir, "vhd.img"));
  for (const img of bases.values()) expect(await e2fsckCode(img), img).toBe(0);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("each corruption class is found (and e2fsck -fn agrees the image is broken)", () => {
  cases.forEach((c, i) => {
    it(`${c.code}: ${c.what}`, async () => {
      expect(BS[c.base]).toBeGreaterThan(0);
      const img = join(dir, `case${i}.img`);
      await copyFile(bases.get(c.base)!, img);
      await c.corrupt(img);
      if (c.e2fsckSays) {
        const r = await run("e2fsck", ["-fn", img]);
        expect(r.stdout + r.stderr).toMatch(c.e2fsckSays);
      } else if (c.e2fsck !== false) expect(await e2fsckCode(img), "e2fsck -fn should fail").not.toBe(0);
      const report = await checkImage(img);
      expect(report.ok).toBe(false);
      expect(report.findings.map((f) => f.code), JSON.stringify(report.findings, null, 1)).toContain(c.code);
      for (const f of report.findings) {
        expect(f.structure).not.toBe("");
        expect(f.message).not.toBe("");
      }
    });
  });
});

describe("VHD container findings", () => {
  it("VHD_FOOTER_CHECKSUM: a footer byte changed; the ext4 inside is still checked", async () => {
    const img = join(dir, "footer.vhd");
    await copyFile(bases.get("vhd")!, img);
    const size = (await stat(img)).size;
    await xorByte(img, size - 512 + 28); // creator application
    const report = await checkImage(img);
    expect(report.format).toBe("vhd");
    expect(report.findings.map((f) => f.code)).toEqual([FindingCode.VHD_FOOTER_CHECKSUM]);
    expect(report.findings[0]!.offset).toBe(size - 512 + 64);
    expect(report.stats.regularFiles).toBeGreaterThan(200);
  });

  it("VHD_FOOTER_INVALID: current size does not match the file", async () => {
    const img = join(dir, "size.vhd");
    await copyFile(bases.get("vhd")!, img);
    const size = (await stat(img)).size;
    const footer = await readAt(img, size - 512, 512);
    footer.writeBigUInt64BE(BigInt(size - 512 - 4096), 48);
    footer.writeUInt32BE(vhdChecksum(footer), 64);
    await patch(img, size - 512, footer);
    const codes = (await checkImage(img)).findings.map((f) => f.code);
    expect(codes).toContain(FindingCode.VHD_FOOTER_INVALID);
    // The disk is now shorter than the filesystem says: the superblock check names it.
    expect(codes).toContain(FindingCode.SUPERBLOCK_GEOMETRY);
  });

  it("a truncated VHD (footer lost) is a raw image smaller than its filesystem", async () => {
    const img = join(dir, "trunc.img");
    await copyFile(bases.get("vhd")!, img);
    await runOk("truncate", ["-s", "-8192", img]);
    const report = await checkImage(img);
    expect(report.format).toBe("raw");
    expect(report.findings.map((f) => f.code)).toEqual([FindingCode.SUPERBLOCK_GEOMETRY]);
  });
});

describe("warnings keep the image ok", () => {
  it("FREE_COUNT: the superblock's lazily updated total (e2fsck -n exits 0)", async () => {
    const img = join(dir, "free.img");
    await copyFile(bases.get("plain")!, img);
    await debugfsW(img, "ssv free_blocks_count 100");
    expect(await e2fsckCode(img)).toBe(0);
    const report = await checkImage(img);
    expect(report.findings.map((f) => [f.code, f.severity])).toEqual([[FindingCode.FREE_COUNT, "warning"]]);
    expect(report.ok).toBe(true);
  });

  it("FS_STATE: not cleanly unmounted", async () => {
    const img = join(dir, "state.img");
    await copyFile(bases.get("plain")!, img);
    await debugfsW(img, "ssv state 0");
    const report = await checkImage(img);
    expect(report.findings.map((f) => [f.code, f.severity])).toEqual([[FindingCode.FS_STATE, "warning"]]);
  });
});
