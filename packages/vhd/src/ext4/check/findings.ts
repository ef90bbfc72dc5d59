// What the ext4 checker reports: a closed table of stable finding codes, the report shape, and a
// bounded collector (a garbage image can break every structure; the report must stay small).

/**
 * Stable codes of `check` findings. Callers and tests match on these, never on messages. Each
 * names the structure that is wrong, not the repair.
 */
export const FindingCode = {
  /** The VHD footer's checksum does not match its bytes. */
  VHD_FOOTER_CHECKSUM: "VHD_FOOTER_CHECKSUM",
  /** The VHD footer is readable but inconsistent: disk type, data offset, or size vs the file. */
  VHD_FOOTER_INVALID: "VHD_FOOTER_INVALID",
  /** The container (VHD/VHDX) could not be opened at all; nothing inside was checked. */
  IMAGE_INVALID: "IMAGE_INVALID",
  /** A note from opening the container (e.g. one of two VHDX headers is corrupt). */
  IMAGE_NOTE: "IMAGE_NOTE",
  /** No ext4 magic (0xEF53) in the superblock; nothing else was checked. */
  SUPERBLOCK_MAGIC: "SUPERBLOCK_MAGIC",
  /** Impossible geometry: block size, group sizes, counts vs the device size, first data block. */
  SUPERBLOCK_GEOMETRY: "SUPERBLOCK_GEOMETRY",
  /** s_checksum does not match (metadata_csum). */
  SUPERBLOCK_CHECKSUM: "SUPERBLOCK_CHECKSUM",
  /** An incompat/ro_compat feature this checker (and the reader) cannot interpret, by name. */
  FEATURE_UNSUPPORTED: "FEATURE_UNSUPPORTED",
  /** A feature combination or feature-dependent field that is invalid. */
  FEATURE_INVALID: "FEATURE_INVALID",
  /** s_state says not cleanly unmounted, or errors were recorded. */
  FS_STATE: "FS_STATE",
  /** The journal needs recovery (needs_recovery set). */
  JOURNAL_NEEDS_RECOVERY: "JOURNAL_NEEDS_RECOVERY",
  /** Superblock free block/inode totals differ from the bitmaps. */
  FREE_COUNT: "FREE_COUNT",
  /** A group descriptor points outside its allowed range, or its fields are impossible. */
  GROUP_DESC_INVALID: "GROUP_DESC_INVALID",
  /** bg_checksum mismatch (gdt_csum or metadata_csum). */
  GROUP_DESC_CHECKSUM: "GROUP_DESC_CHECKSUM",
  /** A group's free block/inode or directory count differs from what was counted. */
  GROUP_COUNT: "GROUP_COUNT",
  /** Two metadata structures (bitmaps, inode tables, descriptors, superblocks) share a block. */
  METADATA_OVERLAP: "METADATA_OVERLAP",
  /** A block bitmap or inode bitmap checksum mismatch. */
  BITMAP_CHECKSUM: "BITMAP_CHECKSUM",
  /** The on-disk block bitmap differs from the blocks in use. */
  BLOCK_BITMAP_MISMATCH: "BLOCK_BITMAP_MISMATCH",
  /** The on-disk inode bitmap differs from the inodes in use. */
  INODE_BITMAP_MISMATCH: "INODE_BITMAP_MISMATCH",
  /** Bits past the end of the filesystem in the last group's bitmap are not set. */
  BITMAP_PADDING: "BITMAP_PADDING",
  /** An inode's checksum does not match (metadata_csum). */
  INODE_CHECKSUM: "INODE_CHECKSUM",
  /** An inode field is impossible: mode, flags, extra isize, size, dtime on a live inode. */
  INODE_INVALID: "INODE_INVALID",
  /** i_blocks differs from the blocks the inode maps. */
  INODE_BLOCKS: "INODE_BLOCKS",
  /** i_size does not cover the mapped blocks, or a directory's size is not its block count. */
  INODE_SIZE: "INODE_SIZE",
  /** A bad extent header: magic, entry count, eh_max, depth. */
  EXTENT_HEADER: "EXTENT_HEADER",
  /** An extent or index points outside the filesystem. */
  EXTENT_OUT_OF_RANGE: "EXTENT_OUT_OF_RANGE",
  /** Extents overlap: logically within an inode, or physically with metadata or another inode. */
  EXTENT_OVERLAP: "EXTENT_OVERLAP",
  /** An extent index leads back to a node already on the path, or the depth does not decrease. */
  EXTENT_LOOP: "EXTENT_LOOP",
  /** An extent block's tail checksum does not match. */
  EXTENT_CHECKSUM: "EXTENT_CHECKSUM",
  /** An indirect block map (ext2/ext3 style) points outside the fs or at a block in use. */
  BLOCK_MAP_INVALID: "BLOCK_MAP_INVALID",
  /** Inline data is malformed or used without the feature. */
  INLINE_DATA_INVALID: "INLINE_DATA_INVALID",
  /** In-inode xattrs are malformed. */
  XATTR_INVALID: "XATTR_INVALID",
  /** An xattr block: out of range, bad magic, h_blocks, or malformed entries. */
  XATTR_BLOCK_INVALID: "XATTR_BLOCK_INVALID",
  /** An xattr block's checksum does not match. */
  XATTR_CHECKSUM: "XATTR_CHECKSUM",
  /** An xattr block's h_refcount differs from the inodes that reference it. */
  XATTR_REFCOUNT: "XATTR_REFCOUNT",
  /** A directory entry's rec_len/name_len do not fit, or entries do not end at the block end. */
  DIRENT_BAD_LENGTH: "DIRENT_BAD_LENGTH",
  /** A directory entry points at an inode out of range, reserved, or not in use. */
  DIRENT_BAD_INODE: "DIRENT_BAD_INODE",
  /** A directory entry's name is empty or contains '/' or NUL, or a '.'/'..' out of place. */
  DIRENT_BAD_NAME: "DIRENT_BAD_NAME",
  /** A directory entry's file_type does not match the inode's mode. */
  DIRENT_FILE_TYPE: "DIRENT_FILE_TYPE",
  /** '.' or '..' missing or wrong ('..' must name the parent that links the directory). */
  DIRENT_DOT: "DIRENT_DOT",
  /** A directory block's tail checksum is missing or does not match. */
  DIR_CHECKSUM: "DIR_CHECKSUM",
  /** An htree (dir_index) node is malformed, or its checksum does not match. */
  DIR_HTREE: "DIR_HTREE",
  /** i_links_count differs from the directory entries that reference the inode. */
  LINK_COUNT: "LINK_COUNT",
  /** An inode in use that no directory entry references. */
  INODE_UNATTACHED: "INODE_UNATTACHED",
  /** A directory linked from more than one place. */
  DIRECTORY_HARDLINK: "DIRECTORY_HARDLINK",
  /** A directory not reachable from the root. */
  DIRECTORY_UNREACHABLE: "DIRECTORY_UNREACHABLE",
  /** A directory that is its own ancestor. */
  DIRECTORY_CYCLE: "DIRECTORY_CYCLE",
  /** The orphan list (s_last_orphan, orphan file) is not empty, or an unlinked inode is still allocated. */
  ORPHAN_LIST: "ORPHAN_LIST",
  /** A special inode (root, journal, resize, lost+found) is missing or malformed. */
  SPECIAL_INODE: "SPECIAL_INODE",
  /** More findings than `maxFindings`; the rest were dropped. */
  TOO_MANY_FINDINGS: "TOO_MANY_FINDINGS",
} as const;

export type FindingCode = (typeof FindingCode)[keyof typeof FindingCode];

/** error: the structure is wrong (e2fsck would fix it); warning: suspicious but valid. */
export type FindingSeverity = "error" | "warning";

/** One problem found by `checkExt4`/`checkImage`. */
export interface Finding {
  code: FindingCode;
  severity: FindingSeverity;
  /** The structure, e.g. "superblock", "group 3 descriptor", "inode 12", "directory inode 2 block 0". */
  structure: string;
  /** Byte offset of the structure (or the offending field) in the disk (ext4 bytes), when known. */
  offset?: number;
  message: string;
}

/** Counts gathered while checking, for the report. */
export interface CheckStats {
  blockSize: number;
  blocksCount: number;
  inodesCount: number;
  groups: number;
  /** Blocks in use by metadata and inodes, as counted. */
  blocksUsed: number;
  /** Inodes in use (reserved ones included), as counted. */
  inodesUsed: number;
  directories: number;
  regularFiles: number;
  symlinks: number;
  /** Devices, fifos and sockets. */
  specialFiles: number;
  /** Blocks the checker read from the source. */
  blocksRead: number;
}

/** The result of a check. `ok` is true when no finding has severity "error". */
export interface CheckReport {
  ok: boolean;
  findings: Finding[];
  stats: CheckStats;
}

/** Collects findings up to a cap, so a garbage image yields a bounded report. */
export class FindingList {
  readonly list: Finding[] = [];
  private dropped = 0;

  constructor(private readonly max: number) {}

  add(code: FindingCode, structure: string, message: string, offset?: number, severity: FindingSeverity = "error"): void {
    if (this.list.length >= this.max) {
      this.dropped++;
      return;
    }
    this.list.push(offset === undefined ? { code, severity, structure, message } : { code, severity, structure, offset, message });
  }

  warn(code: FindingCode, structure: string, message: string, offset?: number): void {
    this.add(code, structure, message, offset, "warning");
  }

  /** The findings, with one TOO_MANY_FINDINGS entry when some were dropped. */
  finish(): Finding[] {
    if (this.dropped > 0) {
      this.list.push({ code: FindingCode.TOO_MANY_FINDINGS, severity: "error", structure: "report", message: `${this.dropped} more findings were dropped` });
    }
    return this.list;
  }
}
