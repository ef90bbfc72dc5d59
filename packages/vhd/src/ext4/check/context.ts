// State shared by the checker's passes: the validated geometry, bounded block reads, and the
// whole-filesystem bitmaps and per-inode tables (a few bytes per block/inode, never the data).
import type { BlockSource } from "../../io/block-source.js";
import type { Superblock } from "../../format/superblock.js";
import type { FindingList, CheckStats } from "./findings.js";

/** Validated geometry plus the raw superblock fields the format module does not decode. */
export interface Geometry {
  sb: Superblock;
  sbBytes: Uint8Array;
  blockSize: number;
  blocksCount: number;
  inodesCount: number;
  groups: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  inodeSize: number;
  descSize: number;
  firstDataBlock: number;
  firstIno: number;
  /** Blocks one group's inode table takes. */
  itableBlocks: number;
  /** s_reserved_gdt_blocks. */
  reservedGdtBlocks: number;
  /** s_first_meta_bg (meta_bg only). */
  firstMetaBg: number;
  /** Blocks the primary group descriptor table takes (without reserved GDT blocks). */
  gdtBlocks: number;
  /** crc32c seed for metadata_csum (0 without it). */
  csumSeed: number;
  metadataCsum: boolean;
  /** gdt_csum or metadata_csum: the uninit flags and itable_unused are meaningful. */
  groupCsum: boolean;
  has: {
    extents: boolean;
    filetype: boolean;
    inlineData: boolean;
    dirIndex: boolean;
    dirNlink: boolean;
    hugeFile: boolean;
    largeDir: boolean;
    metaBg: boolean;
    flexBg: boolean;
    is64: boolean;
    sparseSuper: boolean;
    sparseSuper2: boolean;
    extAttr: boolean;
    resizeInode: boolean;
    journal: boolean;
    orphanFile: boolean;
  };
  journalInum: number;
  lastOrphan: number;
  orphanFileInum: number;
  mmpBlock: number;
  /** Inodes that live outside the directory tree (journal, quota, orphan file). */
  hiddenInodes: Set<number>;
}

/** A contiguous run of a file: `len` blocks from logical `logical` at physical `physical`. */
export interface Run {
  logical: number;
  physical: number;
  len: number;
}

/** What the inode pass keeps about a directory for the directory pass. */
export interface DirRecord {
  ino: number;
  size: number;
  flags: number;
  /** Per-inode checksum seed (metadata_csum). */
  seed: number;
  /** Mapped blocks in logical order; empty for inline directories. */
  runs: Run[];
  /** Inline directory bytes: i_block (60) followed by the system.data value. */
  inline?: Uint8Array;
  /** Byte offset of the inode in the disk, for findings. */
  offset: number;
}

/** Everything the passes share. */
export class CheckContext {
  /** Blocks in use as counted (metadata and every inode's blocks), a bit per block. */
  readonly used: Uint8Array;
  /** Inodes in use as counted, a bit per inode (bit 0 is inode 1). */
  readonly inodeUsed: Uint8Array;
  /** i_links_count per inode. */
  readonly links: Uint16Array;
  /** Directory-entry file type code (1..7) of each inode in use; 0 when unused. */
  readonly kind: Uint8Array;
  /** Directory entries referencing each inode ('.' and '..' included). */
  readonly refs: Uint32Array;
  /** Directories found by the inode pass. */
  readonly dirs: DirRecord[] = [];
  /** Groups whose on-disk bitmaps cannot be trusted (a descriptor pointing elsewhere). */
  readonly badGroups = new Set<number>();
  /** Runs of the orphan file, if any. */
  orphanRuns: Run[] = [];

  constructor(
    readonly source: BlockSource,
    readonly geo: Geometry,
    readonly findings: FindingList,
    readonly stats: CheckStats,
  ) {
    this.used = new Uint8Array(Math.ceil(geo.blocksCount / 8));
    this.inodeUsed = new Uint8Array(Math.ceil(geo.inodesCount / 8));
    this.links = new Uint16Array(geo.inodesCount + 1);
    this.kind = new Uint8Array(geo.inodesCount + 1);
    this.refs = new Uint32Array(geo.inodesCount + 1);
  }

  /** Reads `count` blocks from `block`; blocks past the end of the source read as zeros. */
  async readBlocks(block: number, count = 1): Promise<Uint8Array> {
    const buf = new Uint8Array(count * this.geo.blockSize);
    await this.source.read(buf, block * this.geo.blockSize);
    this.stats.blocksRead += count;
    return buf;
  }

  /** True when `block` is a valid block number of the filesystem. */
  inRange(block: number, len = 1): boolean {
    return Number.isSafeInteger(block) && block >= this.geo.firstDataBlock && len >= 0 && block + len <= this.geo.blocksCount;
  }

  isUsed(block: number): boolean {
    return ((this.used[block >>> 3] ?? 0) & (1 << (block & 7))) !== 0;
  }

  /**
   * Marks `len` blocks from `start` in use; returns how many were already in use (a double
   * claim). The range must be in range. Whole bytes go at once: a long extent costs len/8 steps.
   */
  claim(start: number, len: number): number {
    let dup = 0;
    let b = start;
    const end = start + len;
    const used = this.used;
    while (b < end) {
      if ((b & 7) === 0 && b + 8 <= end) {
        const byte = used[b >>> 3]!;
        if (byte !== 0) dup += popcount8(byte);
        used[b >>> 3] = 0xff;
        b += 8;
        continue;
      }
      const mask = 1 << (b & 7);
      if (used[b >>> 3]! & mask) dup++;
      used[b >>> 3]! |= mask;
      b++;
    }
    return dup;
  }

  /** Byte offset of inode `ino`'s slot is known only from its group descriptor; see the inode pass. */
  inodeSetUsed(ino: number): void {
    const i = ino - 1;
    this.inodeUsed[i >>> 3]! |= 1 << (i & 7);
  }

  inodeIsUsed(ino: number): boolean {
    const i = ino - 1;
    return ((this.inodeUsed[i >>> 3] ?? 0) & (1 << (i & 7))) !== 0;
  }
}

/** Set bits in a byte. */
export function popcount8(b: number): number {
  b = b - ((b >>> 1) & 0x55);
  b = (b & 0x33) + ((b >>> 2) & 0x33);
  return (b + (b >>> 4)) & 0x0f;
}

/** Reads a little-endian u16/u32 from bytes, 0 past the end (never throws on short input). */
export function u16(b: Uint8Array, at: number): number {
  return (b[at] ?? 0) | ((b[at + 1] ?? 0) << 8);
}

export function u32(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) | ((b[at + 1] ?? 0) << 8) | ((b[at + 2] ?? 0) << 16) | ((b[at + 3] ?? 0) << 24)) >>> 0;
}
