// The ext4 block group descriptor (struct ext4_group_desc), in its 32-byte form: lcow writes
// filesystems without the 64bit feature (they stay below 16 TiB), so s_desc_size is 0 and
// only the `_lo` halves exist on disk.
import { VhdError } from "../errors.js";

export const GROUP_DESC_SIZE = 32;
/** The descriptor size with the 64bit feature (s_desc_size, usually 64). */
export const GROUP_DESC_SIZE_64 = 64;

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

/**
 * Decodes one descriptor. With `descSize` >= 64 (the 64bit feature) the `_hi` halves at
 * 0x20.. are added in; lcow writes 32-byte descriptors but reads both.
 */
export function decodeGroupDesc(bytes: Uint8Array, offset = 0, descSize = GROUP_DESC_SIZE): GroupDesc {
  if (bytes.length < offset + descSize) {
    throw new VhdError("FORMAT_INVALID", `ext4 group descriptor at ${offset}: truncated`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, descSize);
  const wide = descSize >= GROUP_DESC_SIZE_64;
  const hi32 = (at: number) => (wide ? v.getUint32(at, true) * 2 ** 32 : 0);
  const hi16 = (at: number) => (wide ? v.getUint16(at, true) * 65536 : 0);
  return {
    blockBitmap: v.getUint32(0x00, true) + hi32(0x20), // bg_block_bitmap_lo/hi
    inodeBitmap: v.getUint32(0x04, true) + hi32(0x24), // bg_inode_bitmap_lo/hi
    inodeTable: v.getUint32(0x08, true) + hi32(0x28), // bg_inode_table_lo/hi
    freeBlocksCount: v.getUint16(0x0c, true) + hi16(0x2c), // bg_free_blocks_count_lo/hi
    freeInodesCount: v.getUint16(0x0e, true) + hi16(0x2e), // bg_free_inodes_count_lo/hi
    usedDirsCount: v.getUint16(0x10, true) + hi16(0x30), // bg_used_dirs_count_lo/hi
    flags: v.getUint16(0x12, true),
    itableUnused: v.getUint16(0x1c, true) + hi16(0x32), // bg_itable_unused_lo/hi
    checksum: v.getUint16(0x1e, true),
  };
}
