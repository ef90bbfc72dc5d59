// Geometry of the filesystem we write: 4 KiB blocks, 32768 blocks per group, 256-byte inodes.
// Data is laid out first (streamed), so the group count is only known at the end; this module
// solves for the groups, inodes per group and where bitmaps and inode tables go.
import { GROUP_DESC_SIZE } from "../format/group-desc.js";
import { INODE_SIZE } from "../format/inode.js";

export const BLOCK_SIZE = 4096;
export const BLOCKS_PER_GROUP = BLOCK_SIZE * 8; // one block bitmap block covers a group
export const INODES_PER_BLOCK = BLOCK_SIZE / INODE_SIZE;
/** Group descriptors per block (32-byte descriptors, no 64bit feature). */
export const DESCS_PER_BLOCK = BLOCK_SIZE / GROUP_DESC_SIZE;
/** ext4 without the 64bit feature addresses 2^32 blocks: 16 TiB at 4 KiB. */
export const MAX_BLOCKS = 2 ** 32 - 1;

/** Blocks reserved at the start for the boot block + superblock and a GDT big enough for `maxDiskSize`. */
export function reservedStartBlocks(maxDiskSize: number): number {
  const maxGroups = Math.ceil(Math.ceil(maxDiskSize / BLOCK_SIZE) / BLOCKS_PER_GROUP);
  return 1 + Math.ceil(maxGroups / DESCS_PER_BLOCK);
}

export interface Geometry {
  groups: number;
  inodesPerGroup: number;
  inodeTableBlocksPerGroup: number;
  /** First block of the G block bitmaps, then G inode bitmaps, then the inode tables. */
  blockBitmapsStart: number;
  inodeBitmapsStart: number;
  inodeTablesStart: number;
  /** Total blocks in the filesystem (s_blocks_count). */
  blocksCount: number;
  /** Blocks the group descriptor table really uses (the rest of the reservation is free). */
  gdtBlocks: number;
}

/**
 * Solves the geometry for `dataEnd` blocks already used and `inodes` inode numbers (the highest
 * in use). `roundBlocks` may enlarge the total (e.g. to a size VHD CHS geometry addresses exactly).
 */
export function solveGeometry(dataEnd: number, inodes: number, roundBlocks: (blocks: number) => number = (b) => b): Geometry {
  let groups = Math.max(1, Math.ceil(dataEnd / BLOCKS_PER_GROUP));
  for (let attempt = 0; attempt < 64; attempt++) {
    // Inodes per group: a whole number of inode-table blocks (multiple of 16, so also of 8 as
    // e2fsck requires) covering every inode, never more than one bitmap block can track.
    const inodesPerGroup = Math.max(INODES_PER_BLOCK, Math.ceil(inodes / groups / INODES_PER_BLOCK) * INODES_PER_BLOCK);
    if (inodesPerGroup > BLOCKS_PER_GROUP) {
      groups++;
      continue;
    }
    const inodeTableBlocksPerGroup = inodesPerGroup / INODES_PER_BLOCK;
    const metadata = groups * (2 + inodeTableBlocksPerGroup);
    // Every group must hold at least one block: s_blocks_count alone determines the group count.
    const blocksCount = roundBlocks(Math.max(dataEnd + metadata, (groups - 1) * BLOCKS_PER_GROUP + 1));
    const needed = Math.ceil(blocksCount / BLOCKS_PER_GROUP);
    if (needed > groups) {
      groups = needed;
      continue;
    }
    return {
      groups,
      inodesPerGroup,
      inodeTableBlocksPerGroup,
      blockBitmapsStart: dataEnd,
      inodeBitmapsStart: dataEnd + groups,
      inodeTablesStart: dataEnd + 2 * groups,
      blocksCount,
      gdtBlocks: Math.ceil(groups / DESCS_PER_BLOCK),
    };
  }
  throw new RangeError(`no ext4 geometry for ${dataEnd} data blocks and ${inodes} inodes`);
}
