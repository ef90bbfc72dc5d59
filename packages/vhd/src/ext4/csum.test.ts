// Every metadata checksum of images mkfs.ext4 1.47 wrote (with -d, so there are directories,
// an htree, an extent tree node and an xattr block) matches what csum.ts computes, and stops
// matching when one covered byte changes.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { crc32cUpdate } from "../format/crc32c.js";
import { decodeSuperblock } from "../format/superblock.js";
import {
  bitmapChecksum,
  dirBlockChecksum,
  dirBlockStoredChecksum,
  dxNodeChecksum,
  dxTailOffset,
  extentBlockChecksum,
  extentTailOffset,
  fsChecksumSeed,
  groupDescChecksum,
  hasDirTail,
  inodeChecksum,
  inodeChecksumSeed,
  inodeStoredChecksum,
  superblockChecksum,
  xattrBlockChecksum,
} from "./csum.js";

const dir = mkdtempSync(join(tmpdir(), "lcow-csum-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const BS = 4096;

function mkfs(name: string, opts: string[]): Uint8Array {
  const img = join(dir, name);
  writeFileSync(img, "");
  execFileSync("mkfs.ext4", ["-q", "-F", "-b", String(BS), ...opts, "-d", join(dir, "tree"), img, "64M"]);
  // -D builds htree indexes for the big directory, with their dx tails.
  try {
    execFileSync("e2fsck", ["-fyD", img], { stdio: "ignore" });
  } catch {
    // exit 1: "file system was modified", which is the point
  }
  return new Uint8Array(readFileSync(img));
}

const debugfs = (name: string, req: string) => execFileSync("debugfs", ["-R", req, join(dir, name)], { stdio: ["ignore", "pipe", "ignore"] }).toString();
const u16 = (b: Uint8Array, at: number) => b[at]! | (b[at + 1]! << 8);
const u32 = (b: Uint8Array, at: number) => (u16(b, at) | (u16(b, at + 2) << 16)) >>> 0;
const flipped = (b: Uint8Array, at: number) => {
  const c = new Uint8Array(b);
  c[at]! ^= 0x01;
  return c;
};
const block = (img: Uint8Array, n: number) => img.subarray(n * BS, (n + 1) * BS);

let img: Uint8Array;
let seed: number;

beforeAll(() => {
  const tree = join(dir, "tree");
  mkdirSync(join(tree, "a/b"), { recursive: true });
  mkdirSync(join(tree, "e"));
  writeFileSync(join(tree, "a/f1"), "hello\n");
  writeFileSync(join(tree, "a/big"), Buffer.alloc(50_000, 0x61));
  for (let i = 0; i < 200; i++) writeFileSync(join(tree, `e/a_long_enough_name_to_need_an_index_${i}`), "x");
  const fd = openSync(join(tree, "a/sparse"), "w");
  for (let k = 0; k < 8; k++) writeSync(fd, Buffer.alloc(BS, 0x78), 0, BS, k * 65536); // 8 extents: a depth-1 tree
  closeSync(fd);
  execFileSync("setfattr", ["-n", "user.big", "-v", "v".repeat(500), join(tree, "a/big")]);
  img = mkfs("csum.img", []);
  seed = fsChecksumSeed(decodeSuperblock(img.subarray(1024, 2048)));
});

/** Block of an inode, by debugfs imap. */
function inodeOffset(name: string, path: string): { ino: number; offset: number } {
  const m = /Inode (\d+) is part of.*\n\s*located at block (\d+), offset 0x([0-9a-f]+)/.exec(debugfs(name, `imap ${path}`))!;
  return { ino: Number(m[1]), offset: Number(m[2]) * BS + parseInt(m[3]!, 16) };
}
const bmap = (name: string, path: string) => Number(debugfs(name, `bmap ${path} 0`).trim());

describe("ext4 metadata checksums", () => {
  it("superblock", () => {
    const sb = img.subarray(1024, 2048);
    expect(superblockChecksum(sb)).toBe(u32(sb, 0x3fc));
    expect(superblockChecksum(flipped(sb, 0x78))).not.toBe(u32(sb, 0x3fc));
  });

  it("seed: crc32c(~0, uuid), and s_checksum_seed with metadata_csum_seed", () => {
    const sb = decodeSuperblock(img.subarray(1024, 2048));
    expect(seed).toBe(crc32cUpdate(0xffffffff, sb.uuid));
    const seeded = mkfs("seed.img", ["-O", "metadata_csum_seed"]);
    const sb2 = decodeSuperblock(seeded.subarray(1024, 2048));
    expect(sb2.checksumSeed).toBe(crc32cUpdate(0xffffffff, sb2.uuid)); // mkfs seeds it from the uuid it made
    expect(fsChecksumSeed({ ...sb2, uuid: new Uint8Array(16) })).toBe(sb2.checksumSeed); // and the uuid no longer matters
  });

  it("group descriptors: crc32c (metadata_csum, 64-byte) and crc16 (gdt_csum, 32- and 64-byte)", () => {
    const desc = img.subarray(BS, BS + 64);
    const sb = decodeSuperblock(img.subarray(1024, 2048));
    expect(groupDescChecksum("crc32c", { seed, uuid: sb.uuid }, 0, desc, 64)).toBe(u16(desc, 0x1e));
    expect(groupDescChecksum("crc32c", { seed, uuid: sb.uuid }, 0, flipped(desc, 0x30), 64)).not.toBe(u16(desc, 0x1e));
    expect(groupDescChecksum("crc32c", { seed, uuid: sb.uuid }, 1, desc, 64)).not.toBe(u16(desc, 0x1e));
    for (const [name, opts, size] of [["gdt64.img", ["-O", "^metadata_csum,uninit_bg"], 64], ["gdt32.img", ["-O", "^metadata_csum,uninit_bg,^64bit"], 32]] as const) {
      const other = mkfs(name, [...opts]);
      const osb = decodeSuperblock(other.subarray(1024, 2048));
      const d = other.subarray(BS, BS + size);
      expect(groupDescChecksum("crc16", { seed: 0, uuid: osb.uuid }, 0, d, size)).toBe(u16(d, 0x1e));
      expect(groupDescChecksum("crc16", { seed: 0, uuid: osb.uuid }, 0, flipped(d, 0x10), size)).not.toBe(u16(d, 0x1e));
    }
  });

  it("block and inode bitmaps (lo and hi halves)", () => {
    const desc = img.subarray(BS, BS + 64);
    const sb = decodeSuperblock(img.subarray(1024, 2048));
    const bb = block(img, u32(desc, 0));
    const ib = block(img, u32(desc, 4));
    expect(bitmapChecksum(seed, bb, sb.clustersPerGroup)).toBe((u16(desc, 0x18) | (u16(desc, 0x38) << 16)) >>> 0);
    expect(bitmapChecksum(seed, ib, sb.inodesPerGroup)).toBe((u16(desc, 0x1a) | (u16(desc, 0x3a) << 16)) >>> 0);
    expect(bitmapChecksum(seed, flipped(bb, 3), sb.clustersPerGroup)).not.toBe((u16(desc, 0x18) | (u16(desc, 0x38) << 16)) >>> 0);
  });

  it("inodes: 32-bit with i_checksum_hi (256-byte), 16-bit without (128-byte)", () => {
    for (const path of ["/", "/a/f1", "/a/big", "/e"]) {
      const { ino, offset } = inodeOffset("csum.img", path);
      const raw = img.subarray(offset, offset + 256);
      const s = inodeChecksumSeed(seed, ino, u32(raw, 0x64));
      expect(inodeChecksum(s, raw, 256)).toBe(inodeStoredChecksum(raw, 256));
      expect(inodeChecksum(s, flipped(raw, 0x90), 256)).not.toBe(inodeStoredChecksum(raw, 256));
    }
    const small = mkfs("i128.img", ["-I", "128"]);
    const ssb = decodeSuperblock(small.subarray(1024, 2048));
    const { ino, offset } = inodeOffset("i128.img", "/a/f1");
    const raw = small.subarray(offset, offset + 128);
    const s = inodeChecksumSeed(fsChecksumSeed(ssb), ino, u32(raw, 0x64));
    expect(inodeChecksum(s, raw, 128)).toBe(u16(raw, 0x7c));
    expect(inodeChecksum(s, flipped(raw, 0x10), 128)).not.toBe(u16(raw, 0x7c));
  });

  it("extent tree block tail", () => {
    const { ino, offset } = inodeOffset("csum.img", "/a/sparse");
    const raw = img.subarray(offset, offset + 256);
    expect(u16(raw, 0x28 + 6)).toBe(1); // root depth 1: one leaf block
    const leaf = block(img, u32(raw, 0x28 + 16));
    const max = u16(leaf, 4);
    const s = inodeChecksumSeed(seed, ino, u32(raw, 0x64));
    expect(extentBlockChecksum(s, leaf, max)).toBe(u32(leaf, extentTailOffset(max)));
    expect(extentBlockChecksum(s, flipped(leaf, 12 + 200), max)).not.toBe(u32(leaf, extentTailOffset(max)));
  });

  it("directory leaf block tail", () => {
    const { ino, offset } = inodeOffset("csum.img", "/a");
    const s = inodeChecksumSeed(seed, ino, u32(img, offset + 0x64));
    const b = block(img, bmap("csum.img", "/a"));
    expect(hasDirTail(b)).toBe(true);
    expect(dirBlockChecksum(s, b)).toBe(dirBlockStoredChecksum(b));
    expect(dirBlockChecksum(s, flipped(b, 20))).not.toBe(dirBlockStoredChecksum(b));
  });

  it("htree root dx tail", () => {
    const { ino, offset } = inodeOffset("csum.img", "/e");
    expect(u32(img, offset + 0x20) & 0x1000).toBe(0x1000); // INDEX_FL: e2fsck -D indexed it
    const s = inodeChecksumSeed(seed, ino, u32(img, offset + 0x64));
    const b = block(img, bmap("csum.img", "/e"));
    const limit = u16(b, 0x20);
    const count = u16(b, 0x22);
    const tail = dxTailOffset(0x20, limit);
    expect(tail + 8).toBe(BS); // the tail takes the last 8 bytes
    expect(dxNodeChecksum(s, b, 0x20, count, limit)).toBe(u32(b, tail + 4));
    expect(dxNodeChecksum(s, flipped(b, 0x28), 0x20, count, limit)).not.toBe(u32(b, tail + 4));
  });

  it("xattr block, seeded with its block number", () => {
    const acl = Number(/File ACL: (\d+)/.exec(debugfs("csum.img", "stat /a/big"))![1]);
    const b = block(img, acl);
    expect(xattrBlockChecksum(seed, acl, b)).toBe(u32(b, 0x10));
    expect(xattrBlockChecksum(seed, acl + 1, b)).not.toBe(u32(b, 0x10));
    expect(xattrBlockChecksum(seed, acl, flipped(b, BS - 3))).not.toBe(u32(b, 0x10));
  });
});
