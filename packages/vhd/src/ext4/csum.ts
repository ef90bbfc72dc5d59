// ext4 metadata checksums, as the kernel (fs/ext4/*.c) and e2fsprogs (lib/ext2fs/csum.c)
// compute them. Every function is pure: it takes the on-disk bytes and the seed and returns the
// value to compare with the stored one, so the reader and the checker share one definition.
//
// All crc32c values here are the raw register (the kernel's ext4_chksum is crc32c_le without the
// final inversion), and the stored field is the same raw value. Fields being checksummed are
// always taken as zero: the functions substitute zeros for them, the caller passes the bytes as
// they are on disk.
import { crc32cUpdate } from "../format/crc32c.js";
import { IncompatFeature } from "../format/superblock.js";

/** s_checksum sits in the last 4 bytes of the 1024-byte superblock. */
const SB_CHECKSUM_OFFSET = 0x3fc;
/** bg_checksum in struct ext4_group_desc. */
const BG_CHECKSUM_OFFSET = 0x1e;
/** l_i_checksum_lo and i_checksum_hi in struct ext4_inode. */
const I_CHECKSUM_LO_OFFSET = 0x7c;
const I_CHECKSUM_HI_OFFSET = 0x82;
const GOOD_OLD_INODE_SIZE = 128;
/** h_checksum in struct ext4_xattr_header. */
const XATTR_CHECKSUM_OFFSET = 0x10;
/** struct ext4_dir_entry_tail is 12 bytes at the very end of a leaf directory block. */
export const DIR_TAIL_SIZE = 12;
/** The fake file type (0xDE) that marks an ext4_dir_entry_tail. */
export const DIR_TAIL_FT = 0xde;
/** struct dx_tail: dt_reserved, dt_checksum. */
export const DX_TAIL_SIZE = 8;

const ZERO2 = new Uint8Array(2);
const ZERO4 = new Uint8Array(4);

function le32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

function le64(n: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, n % 2 ** 32, true);
  v.setUint32(4, Math.floor(n / 2 ** 32), true);
  return b;
}

/**
 * The filesystem-wide checksum seed (sbi->s_csum_seed): s_checksum_seed when the csum_seed
 * feature (INCOMPAT 0x2000) is on, so the UUID can change without rewriting metadata; otherwise
 * crc32c(~0, s_uuid).
 */
export function fsChecksumSeed(sb: { featureIncompat: number; checksumSeed: number; uuid: Uint8Array }): number {
  if (sb.featureIncompat & IncompatFeature.CSUM_SEED) return sb.checksumSeed >>> 0;
  return crc32cUpdate(0xffffffff, sb.uuid.subarray(0, 16));
}

/** s_checksum of a 1024-byte superblock: crc32c(~0) over every byte before the field. */
export function superblockChecksum(sb: Uint8Array): number {
  return crc32cUpdate(0xffffffff, sb.subarray(0, SB_CHECKSUM_OFFSET));
}

/**
 * CRC-16 (the kernel's lib/crc16.c: polynomial 0x8005, reflected as 0xA001, no final XOR),
 * used only by the older gdt_csum feature.
 */
export function crc16Update(crc: number, bytes: Uint8Array): number {
  let c = crc & 0xffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
  }
  return c;
}

/**
 * bg_checksum of one group descriptor (`desc` is its `descSize` bytes as on disk).
 * metadata_csum: the low 16 bits of crc32c(fs seed, le32 group, descriptor with bg_checksum
 * zeroed). gdt_csum (`kind: "crc16"`): crc16(~0) over the UUID, le32 group and the descriptor
 * without the field. Both skip nothing else; the 64-byte tail is covered when present.
 */
export function groupDescChecksum(
  kind: "crc32c" | "crc16",
  params: { seed: number; uuid: Uint8Array },
  group: number,
  desc: Uint8Array,
  descSize: number,
): number {
  const before = desc.subarray(0, BG_CHECKSUM_OFFSET);
  const after = desc.subarray(BG_CHECKSUM_OFFSET + 2, descSize);
  if (kind === "crc32c") {
    let c = crc32cUpdate(params.seed, le32(group));
    c = crc32cUpdate(c, before);
    c = crc32cUpdate(c, ZERO2);
    c = crc32cUpdate(c, after);
    return c & 0xffff;
  }
  let c = crc16Update(0xffff, params.uuid.subarray(0, 16));
  c = crc16Update(c, le32(group));
  c = crc16Update(c, before);
  // e2fsprogs/kernel skip the field itself (no dummy zeros) for crc16, then add the 64bit tail.
  c = crc16Update(c, after);
  return c & 0xffff;
}

/** The per-inode seed (ei->i_csum_seed): crc32c(crc32c(fs seed, le32 inode number), le32 i_generation). */
export function inodeChecksumSeed(fsSeed: number, ino: number, generation: number): number {
  return crc32cUpdate(crc32cUpdate(fsSeed, le32(ino)), le32(generation));
}

/** True when i_extra_isize covers i_checksum_hi, so the inode stores a 32-bit checksum. */
function inodeHasChecksumHi(raw: Uint8Array, inodeSize: number): boolean {
  if (inodeSize <= GOOD_OLD_INODE_SIZE) return false;
  const extraIsize = (raw[0x80] ?? 0) | ((raw[0x81] ?? 0) << 8);
  return GOOD_OLD_INODE_SIZE + extraIsize >= I_CHECKSUM_HI_OFFSET + 2;
}

/**
 * The checksum of an on-disk inode (`raw`: its `inodeSize` bytes) under `inodeSeed`: crc32c
 * over the whole inode with l_i_checksum_lo and (when i_extra_isize covers it) i_checksum_hi
 * taken as zero. Returns the value as stored: 32 bits, or the low 16 when there is no hi half.
 */
export function inodeChecksum(inodeSeed: number, raw: Uint8Array, inodeSize: number): number {
  let c = crc32cUpdate(inodeSeed, raw.subarray(0, I_CHECKSUM_LO_OFFSET));
  c = crc32cUpdate(c, ZERO2);
  c = crc32cUpdate(c, raw.subarray(I_CHECKSUM_LO_OFFSET + 2, GOOD_OLD_INODE_SIZE));
  if (inodeSize > GOOD_OLD_INODE_SIZE) {
    c = crc32cUpdate(c, raw.subarray(GOOD_OLD_INODE_SIZE, I_CHECKSUM_HI_OFFSET));
    if (inodeHasChecksumHi(raw, inodeSize)) {
      c = crc32cUpdate(c, ZERO2);
      c = crc32cUpdate(c, raw.subarray(I_CHECKSUM_HI_OFFSET + 2, inodeSize));
    } else {
      c = crc32cUpdate(c, raw.subarray(I_CHECKSUM_HI_OFFSET, inodeSize));
    }
  }
  return inodeHasChecksumHi(raw, inodeSize) ? c >>> 0 : c & 0xffff;
}

/** The checksum an inode stores: l_i_checksum_lo, plus i_checksum_hi << 16 when present. */
export function inodeStoredChecksum(raw: Uint8Array, inodeSize: number): number {
  const lo = (raw[I_CHECKSUM_LO_OFFSET] ?? 0) | ((raw[I_CHECKSUM_LO_OFFSET + 1] ?? 0) << 8);
  if (!inodeHasChecksumHi(raw, inodeSize)) return lo;
  const hi = (raw[I_CHECKSUM_HI_OFFSET] ?? 0) | ((raw[I_CHECKSUM_HI_OFFSET + 1] ?? 0) << 8);
  return (lo | (hi << 16)) >>> 0;
}

/**
 * Offset of struct ext4_extent_tail in an extent block: right after eh_max entries (not after
 * the used ones), so it stays put as the node fills. Callers check it lies inside the block.
 */
export function extentTailOffset(ehMax: number): number {
  return 12 + ehMax * 12;
}

/** et_checksum of a non-root extent block: crc32c(inode seed) over the bytes before the tail. */
export function extentBlockChecksum(inodeSeed: number, block: Uint8Array, ehMax: number): number {
  return crc32cUpdate(inodeSeed, block.subarray(0, extentTailOffset(ehMax)));
}

/**
 * True when a directory block ends in an ext4_dir_entry_tail: inode 0, rec_len 12, name_len 0,
 * file type 0xDE. metadata_csum filesystems put one in every linear/leaf block.
 */
export function hasDirTail(block: Uint8Array): boolean {
  const t = block.length - DIR_TAIL_SIZE;
  if (t < 0) return false;
  const v = new DataView(block.buffer, block.byteOffset + t, DIR_TAIL_SIZE);
  return v.getUint32(0, true) === 0 && v.getUint16(4, true) === DIR_TAIL_SIZE && v.getUint8(6) === 0 && v.getUint8(7) === DIR_TAIL_FT;
}

/** det_checksum of a directory leaf block: crc32c(inode seed) over everything before the tail. */
export function dirBlockChecksum(inodeSeed: number, block: Uint8Array): number {
  return crc32cUpdate(inodeSeed, block.subarray(0, block.length - DIR_TAIL_SIZE));
}

/** The det_checksum stored in a directory block's tail. */
export function dirBlockStoredChecksum(block: Uint8Array): number {
  return new DataView(block.buffer, block.byteOffset + block.length - 4, 4).getUint32(0, true);
}

/**
 * dt_checksum of an htree node (the root or an interior node): crc32c(inode seed) over the
 * node up to the last used dx_entry (`countOffset` is where dx_countlimit sits: 0x20 in the
 * root, 8 in a node), then over dt_reserved and a zero checksum. The tail itself sits after
 * `limit` entries; see `dxTailOffset`.
 */
export function dxNodeChecksum(inodeSeed: number, block: Uint8Array, countOffset: number, count: number, limit: number): number {
  const tail = dxTailOffset(countOffset, limit);
  let c = crc32cUpdate(inodeSeed, block.subarray(0, countOffset + count * 8));
  c = crc32cUpdate(c, block.subarray(tail, tail + 4));
  return crc32cUpdate(c, ZERO4);
}

/** Offset of struct dx_tail in an htree node: after `limit` 8-byte dx_entries. */
export function dxTailOffset(countOffset: number, limit: number): number {
  return countOffset + limit * 8;
}

/**
 * bg_block_bitmap_csum / bg_inode_bitmap_csum: crc32c(fs seed) over the bitmap's meaningful
 * bytes (clusters_per_group / 8 or inodes_per_group / 8). Stored as the low 16 bits, plus the
 * high 16 in descriptors of 64 bytes or more.
 */
export function bitmapChecksum(fsSeed: number, bitmap: Uint8Array, bits: number): number {
  return crc32cUpdate(fsSeed, bitmap.subarray(0, Math.floor(bits / 8)));
}

/**
 * h_checksum of an xattr block: crc32c(fs seed) over its le64 block number, then the block with
 * h_checksum zeroed. The block number makes a block copied elsewhere fail.
 */
export function xattrBlockChecksum(fsSeed: number, blockNr: number, block: Uint8Array): number {
  let c = crc32cUpdate(fsSeed, le64(blockNr));
  c = crc32cUpdate(c, block.subarray(0, XATTR_CHECKSUM_OFFSET));
  c = crc32cUpdate(c, ZERO4);
  return crc32cUpdate(c, block.subarray(XATTR_CHECKSUM_OFFSET + 4));
}
