// The ext4 block group descriptor (struct ext4_group_desc), in its 32-byte form: lcow writes
// filesystems without the 64bit feature (they stay below 16 TiB), so s_desc_size is 0 and
// only the `_lo` halves exist on disk.
import { VhdError } from "../errors.js";

export const GROUP_DESC_SIZE = 32;

/** bg_flags bits. */
export const GroupFlag = {
  INODE_UNINIT: 0x1,
  BLOCK_UNINIT: 0x2,
  INODE_ZEROED: 0x4,
} as const;

export interface GroupDesc {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  freeBlocksCount: number;
  freeInodesCount: number;
  usedDirsCount: number;
  flags: number;
  itableUnused: number;
  checksum: number;
}

/** Writes one descriptor into `out` at `offset` (so a whole table is encoded without copies). */
export function encodeGroupDescInto(gd: GroupDesc, out: Uint8Array, offset: number): void {
  const v = new DataView(out.buffer, out.byteOffset + offset, GROUP_DESC_SIZE);
  v.setUint32(0x00, gd.blockBitmap, true); // bg_block_bitmap_lo
  v.setUint32(0x04, gd.inodeBitmap, true); // bg_inode_bitmap_lo
  v.setUint32(0x08, gd.inodeTable, true); // bg_inode_table_lo
  v.setUint16(0x0c, gd.freeBlocksCount, true); // bg_free_blocks_count_lo
  v.setUint16(0x0e, gd.freeInodesCount, true); // bg_free_inodes_count_lo
  v.setUint16(0x10, gd.usedDirsCount, true); // bg_used_dirs_count_lo
  v.setUint16(0x12, gd.flags, true); // bg_flags
  v.setUint32(0x14, 0, true); // bg_exclude_bitmap_lo (snapshots, unused)
  v.setUint16(0x18, 0, true); // bg_block_bitmap_csum_lo (metadata_csum only)
  v.setUint16(0x1a, 0, true); // bg_inode_bitmap_csum_lo (metadata_csum only)
  v.setUint16(0x1c, gd.itableUnused, true); // bg_itable_unused_lo
  v.setUint16(0x1e, gd.checksum, true); // bg_checksum
}

export function encodeGroupDesc(gd: GroupDesc): Uint8Array {
  const out = new Uint8Array(GROUP_DESC_SIZE);
  encodeGroupDescInto(gd, out, 0);
  return out;
}

export function decodeGroupDesc(bytes: Uint8Array, offset = 0): GroupDesc {
  if (bytes.length < offset + GROUP_DESC_SIZE) {
    throw new VhdError("FORMAT_INVALID", `ext4 group descriptor at ${offset}: truncated`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, GROUP_DESC_SIZE);
  return {
    blockBitmap: v.getUint32(0x00, true),
    inodeBitmap: v.getUint32(0x04, true),
    inodeTable: v.getUint32(0x08, true),
    freeBlocksCount: v.getUint16(0x0c, true),
    freeInodesCount: v.getUint16(0x0e, true),
    usedDirsCount: v.getUint16(0x10, true),
    flags: v.getUint16(0x12, true),
    itableUnused: v.getUint16(0x1c, true),
    checksum: v.getUint16(0x1e, true),
  };
}
