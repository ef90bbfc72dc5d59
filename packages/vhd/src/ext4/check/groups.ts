// Group descriptor pass (sanity, checksums, claiming every group's metadata blocks) and the
// final bitmap pass (on-disk bitmaps and counts against what the inode pass found in use).
import { decodeGroupDesc, GroupFlag, type GroupDesc } from "../../format/group-desc.js";
import { bitmapChecksum, groupDescChecksum } from "../csum.js";
import { u16, type CheckContext, type Geometry } from "./context.js";
import { FindingCode as C } from "./findings.js";

/** A decoded descriptor plus the fields the format module leaves out. */
export interface GroupInfo extends GroupDesc {
  /** bg_block_bitmap_csum (lo, plus hi with 64-byte descriptors). */
  blockBitmapCsum: number;
  inodeBitmapCsum: number;
  /** Byte offset of the descriptor in the disk. */
  offset: number;
}

/** ext2fs_bg_has_super: which groups carry a superblock (and descriptor) backup. */
export function groupHasSuper(geo: Geometry, g: number): boolean {
  if (g === 0) return true;
  if (geo.has.sparseSuper2) return g === geo.sb.backupBgs[0] || g === geo.sb.backupBgs[1];
  if (g <= 1 || !geo.has.sparseSuper) return true;
  if (!(g & 1)) return false;
  return isPower(g, 3) || isPower(g, 5) || isPower(g, 7);
}

function isPower(n: number, base: number): boolean {
  let x = base;
  while (x < n) x *= base;
  return x === n;
}

/** First block of group `g`. */
export function groupFirstBlock(geo: Geometry, g: number): number {
  return geo.firstDataBlock + g * geo.blocksPerGroup;
}

/** Blocks in group `g` (the last group may be short). */
export function groupBlocks(geo: Geometry, g: number): number {
  return Math.min(geo.blocksPerGroup, geo.blocksCount - groupFirstBlock(geo, g));
}

/**
 * The superblock / descriptor blocks in group `g`, as e2fsprogs' ext2fs_super_and_bgd_loc2
 * places them: with meta_bg, descriptor blocks of the meta groups from s_first_meta_bg on sit in
 * the first, second and last group of their meta group instead of after every backup superblock.
 */
export function groupSuperLayout(geo: Geometry, g: number): { start: number; len: number }[] {
  let groupBlock = groupFirstBlock(geo, g);
  if (groupBlock === 0 && geo.blockSize === 1024) groupBlock = 1;
  const descPerBlock = geo.blockSize / geo.descSize;
  const hasSuper = groupHasSuper(geo, g);
  const out: { start: number; len: number }[] = [];
  if (hasSuper) out.push({ start: groupBlock, len: 1 });
  const metaGroup = Math.floor(g / descPerBlock);
  if (!geo.has.metaBg || metaGroup < geo.firstMetaBg) {
    const old = geo.has.metaBg ? geo.firstMetaBg : geo.gdtBlocks + geo.reservedGdtBlocks;
    if (hasSuper && old > 0) out.push({ start: groupBlock + 1, len: Math.max(0, Math.min(old, geo.blocksCount - groupBlock - 1)) });
  } else {
    const r = g % descPerBlock;
    if (r === 0 || r === 1 || r === descPerBlock - 1) out.push({ start: groupBlock + (hasSuper ? 1 : 0), len: 1 });
  }
  return out;
}

/** Block holding group `g`'s descriptor in the primary table, and its offset in that block. */
function descLocation(geo: Geometry, g: number): { block: number; at: number } {
  const descPerBlock = geo.blockSize / geo.descSize;
  const metaGroup = Math.floor(g / descPerBlock);
  const at = (g % descPerBlock) * geo.descSize;
  if (!geo.has.metaBg || metaGroup < geo.firstMetaBg) return { block: geo.firstDataBlock + 1 + metaGroup, at };
  const first = metaGroup * descPerBlock;
  return { block: groupFirstBlock(geo, first) + (groupHasSuper(geo, first) ? 1 : 0), at };
}

/**
 * Reads, checks and claims the metadata of every group. Returns the descriptors (one per group;
 * a group whose descriptor points outside the filesystem is in `ctx.badGroups`).
 */
export async function checkGroups(ctx: CheckContext): Promise<GroupInfo[]> {
  const { geo, findings: f } = ctx;
  const out: GroupInfo[] = [];
  let cachedBlock = -1;
  let cached: Uint8Array = new Uint8Array(0);
  const uninitMeaningful = geo.groupCsum;

  // Superblock/descriptor copies and reserved GDT blocks first, so that an inode table placed
  // over them shows as an overlap.
  for (let g = 0; g < geo.groups; g++) {
    for (const r of groupSuperLayout(geo, g)) {
      if (!ctx.inRange(r.start, r.len)) continue;
      if (ctx.claim(r.start, r.len) > 0) f.add(C.METADATA_OVERLAP, `group ${g} superblock/descriptors`, `blocks ${r.start}-${r.start + r.len - 1} overlap other metadata`, r.start * geo.blockSize);
    }
  }
  if (geo.mmpBlock !== 0) {
    if (!ctx.inRange(geo.mmpBlock)) f.add(C.SUPERBLOCK_GEOMETRY, "superblock", `s_mmp_block ${geo.mmpBlock} out of range`, 1024 + 0x168);
    else if (ctx.claim(geo.mmpBlock, 1) > 0) f.add(C.METADATA_OVERLAP, "MMP block", `MMP block ${geo.mmpBlock} overlaps other metadata`, geo.mmpBlock * geo.blockSize);
  }

  for (let g = 0; g < geo.groups; g++) {
    const loc = descLocation(geo, g);
    if (loc.block !== cachedBlock) {
      cached = ctx.inRange(loc.block) ? await ctx.readBlocks(loc.block) : new Uint8Array(geo.blockSize);
      cachedBlock = loc.block;
    }
    const offset = loc.block * geo.blockSize + loc.at;
    const S = `group ${g} descriptor`;
    const raw = cached.subarray(loc.at, loc.at + geo.descSize);
    const d = decodeGroupDesc(raw, 0, geo.descSize);
    const wide = geo.descSize >= 64;
    const info: GroupInfo = {
      ...d,
      blockBitmapCsum: u16(raw, 0x18) + (wide ? u16(raw, 0x38) * 65536 : 0), // bg_block_bitmap_csum_lo/hi
      inodeBitmapCsum: u16(raw, 0x1a) + (wide ? u16(raw, 0x3a) * 65536 : 0), // bg_inode_bitmap_csum_lo/hi
      offset,
    };
    out.push(info);

    if (geo.groupCsum) {
      const want = groupDescChecksum(geo.metadataCsum ? "crc32c" : "crc16", { seed: geo.csumSeed, uuid: geo.sb.uuid }, g, raw, geo.descSize);
      if (want !== d.checksum) f.add(C.GROUP_DESC_CHECKSUM, S, `bg_checksum 0x${d.checksum.toString(16)} does not match 0x${want.toString(16)}`, offset + 0x1e);
    }
    const first = groupFirstBlock(geo, g);
    const last = first + groupBlocks(geo, g);
    // Without flex_bg a group's bitmaps and table must live inside the group itself.
    const within = (b: number, n: number) => ctx.inRange(b, n) && (geo.has.flexBg || (b >= first && b + n <= last));
    const parts: [string, number, number, number][] = [
      ["block bitmap", d.blockBitmap, 1, 0x00],
      ["inode bitmap", d.inodeBitmap, 1, 0x04],
      ["inode table", d.inodeTable, geo.itableBlocks, 0x08],
    ];
    for (const [what, b, n, field] of parts) {
      if (!within(b, n)) {
        f.add(C.GROUP_DESC_INVALID, S, `${what} at block ${b} (${n} blocks) is outside ${geo.has.flexBg ? "the filesystem" : `the group (blocks ${first}-${last - 1})`}`, offset + field);
        ctx.badGroups.add(g);
        continue;
      }
      if (ctx.claim(b, n) > 0) {
        f.add(C.METADATA_OVERLAP, S, `${what} at block ${b} (${n} blocks) overlaps other metadata`, b * geo.blockSize);
      }
    }
    if (d.freeBlocksCount > groupBlocks(geo, g)) f.add(C.GROUP_DESC_INVALID, S, `bg_free_blocks_count ${d.freeBlocksCount} exceeds the group's ${groupBlocks(geo, g)} blocks`, offset + 0x0c);
    if (d.freeInodesCount > geo.inodesPerGroup) f.add(C.GROUP_DESC_INVALID, S, `bg_free_inodes_count ${d.freeInodesCount} exceeds ${geo.inodesPerGroup} inodes per group`, offset + 0x0e);
    if (uninitMeaningful && d.itableUnused > geo.inodesPerGroup) f.add(C.GROUP_DESC_INVALID, S, `bg_itable_unused ${d.itableUnused} exceeds ${geo.inodesPerGroup} inodes per group`, offset + 0x1c);
    if (uninitMeaningful && g === 0 && d.flags & (GroupFlag.INODE_UNINIT | GroupFlag.BLOCK_UNINIT)) {
      f.add(C.GROUP_DESC_INVALID, S, `group 0 has uninit flags 0x${d.flags.toString(16)}`, offset + 0x12);
    }
  }
  return out;
}

/** Differing bit runs, reported a few per group so a garbage bitmap gives a bounded report. */
function reportRuns(
  ctx: CheckContext,
  code: typeof C.BLOCK_BITMAP_MISMATCH | typeof C.INODE_BITMAP_MISMATCH,
  structure: string,
  unit: string,
  base: number,
  n: number,
  expected: (i: number) => boolean,
  disk: (i: number) => boolean,
  offset: number,
): void {
  let reported = 0;
  let more = 0;
  for (let i = 0; i < n; ) {
    const e = expected(i);
    if (e === disk(i)) {
      i++;
      continue;
    }
    let j = i + 1;
    while (j < n && expected(j) === e && disk(j) !== e) j++;
    if (reported < 4) {
      const what = e ? "in use but marked free" : "marked in use but free";
      const range = j - i === 1 ? `${unit} ${base + i}` : `${unit}s ${base + i}-${base + j - 1}`;
      ctx.findings.add(code, structure, `${range} ${what}`, offset);
      reported++;
    } else more++;
    i = j;
  }
  if (more > 0) ctx.findings.add(code, structure, `${more} more differing ranges`, offset);
}

/**
 * Compares every group's on-disk bitmaps, free counts and directory count with what was counted,
 * then the superblock totals. Uninit groups (gdt_csum/metadata_csum) are compared against the
 * bitmap the kernel would synthesise for them.
 */
export async function checkBitmaps(ctx: CheckContext, groups: GroupInfo[], dirsPerGroup: Uint32Array): Promise<void> {
  const { geo, findings: f } = ctx;
  const bits = geo.blockSize * 8;
  let freeBlocks = 0;
  let freeInodes = 0;
  for (let g = 0; g < groups.length; g++) {
    const d = groups[g]!;
    const first = groupFirstBlock(geo, g);
    const n = groupBlocks(geo, g);
    let usedHere = 0;
    for (let i = 0; i < n; i++) if (ctx.isUsed(first + i)) usedHere++;
    const free = n - usedHere;
    freeBlocks += free;
    let inodesUsedHere = 0;
    const inoBase = g * geo.inodesPerGroup + 1;
    for (let i = 0; i < geo.inodesPerGroup; i++) if (ctx.inodeIsUsed(inoBase + i)) inodesUsedHere++;
    freeInodes += geo.inodesPerGroup - inodesUsedHere;
    ctx.stats.blocksUsed += usedHere;
    ctx.stats.inodesUsed += inodesUsedHere;
    if (ctx.badGroups.has(g)) continue;
    const S = `group ${g}`;
    const blockUninit = geo.groupCsum && (d.flags & GroupFlag.BLOCK_UNINIT) !== 0;
    const inodeUninit = geo.groupCsum && (d.flags & GroupFlag.INODE_UNINIT) !== 0;

    // Block bitmap.
    let bb: Uint8Array;
    if (blockUninit) {
      // ext4_init_block_bitmap: the group's own superblock/descriptor copies and its own
      // bitmaps and table when they lie inside it, the rest free.
      bb = new Uint8Array(geo.blockSize);
      const mark = (b: number, len: number) => {
        for (let x = b; x < b + len; x++) if (x >= first && x < first + n) bb[(x - first) >>> 3]! |= 1 << ((x - first) & 7);
      };
      for (const r of groupSuperLayout(geo, g)) mark(r.start, r.len);
      mark(d.blockBitmap, 1);
      mark(d.inodeBitmap, 1);
      mark(d.inodeTable, geo.itableBlocks);
      for (let i = n; i < bits; i++) bb[i >>> 3]! |= 1 << (i & 7);
    } else {
      bb = await ctx.readBlocks(d.blockBitmap);
      if (geo.metadataCsum) {
        const want = bitmapChecksum(geo.csumSeed, bb, geo.blocksPerGroup);
        const stored = geo.descSize >= 64 ? d.blockBitmapCsum : d.blockBitmapCsum & 0xffff;
        const cmp = geo.descSize >= 64 ? want : want & 0xffff;
        if (stored !== cmp) f.add(C.BITMAP_CHECKSUM, `${S} block bitmap`, `checksum 0x${stored.toString(16)} does not match 0x${cmp.toString(16)}`, d.offset + 0x18);
      }
    }
    const bit = (a: Uint8Array, i: number) => ((a[i >>> 3] ?? 0) & (1 << (i & 7))) !== 0;
    reportRuns(ctx, C.BLOCK_BITMAP_MISMATCH, `${S} block bitmap`, "block", first, n, (i) => ctx.isUsed(first + i), (i) => bit(bb, i), d.blockBitmap * geo.blockSize);
    // e2fsck (check_block_end) requires the bits past the end of the filesystem in the last group set.
    if (n < geo.blocksPerGroup) {
      for (let i = n; i < geo.blocksPerGroup; i++) {
        if (!bit(bb, i)) {
          f.add(C.BITMAP_PADDING, `${S} block bitmap`, `padding bit ${i} (past the last block) is not set`, d.blockBitmap * geo.blockSize + (i >>> 3));
          break;
        }
      }
    }

    // Inode bitmap.
    let ib: Uint8Array;
    if (inodeUninit) {
      ib = new Uint8Array(geo.blockSize);
    } else {
      ib = await ctx.readBlocks(d.inodeBitmap);
      if (geo.metadataCsum) {
        const want = bitmapChecksum(geo.csumSeed, ib, geo.inodesPerGroup);
        const stored = geo.descSize >= 64 ? d.inodeBitmapCsum : d.inodeBitmapCsum & 0xffff;
        const cmp = geo.descSize >= 64 ? want : want & 0xffff;
        if (stored !== cmp) f.add(C.BITMAP_CHECKSUM, `${S} inode bitmap`, `checksum 0x${stored.toString(16)} does not match 0x${cmp.toString(16)}`, d.offset + 0x1a);
      }
    }
    reportRuns(ctx, C.INODE_BITMAP_MISMATCH, `${S} inode bitmap`, "inode", inoBase, geo.inodesPerGroup, (i) => ctx.inodeIsUsed(inoBase + i), (i) => bit(ib, i), d.inodeBitmap * geo.blockSize);

    if (d.freeBlocksCount !== free) f.add(C.GROUP_COUNT, `${S} descriptor`, `bg_free_blocks_count ${d.freeBlocksCount}, counted ${free}`, d.offset + 0x0c);
    const freeI = geo.inodesPerGroup - inodesUsedHere;
    if (d.freeInodesCount !== freeI) f.add(C.GROUP_COUNT, `${S} descriptor`, `bg_free_inodes_count ${d.freeInodesCount}, counted ${freeI}`, d.offset + 0x0e);
    if (d.usedDirsCount !== dirsPerGroup[g]) f.add(C.GROUP_COUNT, `${S} descriptor`, `bg_used_dirs_count ${d.usedDirsCount}, counted ${dirsPerGroup[g]}`, d.offset + 0x10);
  }
  // The kernel updates the superblock totals lazily and e2fsck -n accepts a difference, so these
  // are warnings: the group counts above are the authoritative ones.
  if (geo.sb.freeBlocksCount !== freeBlocks) f.warn(C.FREE_COUNT, "superblock", `s_free_blocks_count ${geo.sb.freeBlocksCount}, counted ${freeBlocks}`, 1024 + 0x0c);
  if (geo.sb.freeInodesCount !== freeInodes) f.warn(C.FREE_COUNT, "superblock", `s_free_inodes_count ${geo.sb.freeInodesCount}, counted ${freeInodes}`, 1024 + 0x10);
}
