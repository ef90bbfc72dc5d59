// The ext4 superblock (struct ext4_super_block in the kernel's fs/ext4/ext4.h): 1024 bytes,
// little-endian, stored at byte 1024 of the filesystem. Field names follow the kernel's.
import { VhdError } from "../errors.js";
import { copyBytes } from "./bytes.js";

export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_SIZE = 1024;
export const EXT4_MAGIC = 0xef53;

/** s_feature_compat bits we write or recognise. */
export const CompatFeature = {
  DIR_PREALLOC: 0x1,
  HAS_JOURNAL: 0x4,
  EXT_ATTR: 0x8,
  RESIZE_INODE: 0x10,
  DIR_INDEX: 0x20,
  SPARSE_SUPER2: 0x200,
} as const;

/** s_feature_incompat bits. */
export const IncompatFeature = {
  FILETYPE: 0x2,
  RECOVER: 0x4,
  JOURNAL_DEV: 0x8,
  META_BG: 0x10,
  EXTENTS: 0x40,
  BIT64: 0x80,
  MMP: 0x100,
  FLEX_BG: 0x200,
  EA_INODE: 0x400,
  DIRDATA: 0x1000,
  CSUM_SEED: 0x2000,
  LARGEDIR: 0x4000,
  INLINE_DATA: 0x8000,
  ENCRYPT: 0x10000,
  CASEFOLD: 0x20000,
} as const;

/** s_feature_ro_compat bits. */
export const RoCompatFeature = {
  SPARSE_SUPER: 0x1,
  LARGE_FILE: 0x2,
  HUGE_FILE: 0x8,
  GDT_CSUM: 0x10,
  DIR_NLINK: 0x20,
  EXTRA_ISIZE: 0x40,
  QUOTA: 0x100,
  BIGALLOC: 0x200,
  METADATA_CSUM: 0x400,
  READONLY: 0x1000,
  PROJECT: 0x2000,
  ORPHAN_PRESENT: 0x10000,
} as const;

/** The superblock fields lcow writes and reads; everything else is zero on encode. */
export interface Superblock {
  inodesCount: number;
  blocksCount: number; // s_blocks_count_lo + s_blocks_count_hi << 32
  rBlocksCount: number;
  freeBlocksCount: number;
  freeInodesCount: number;
  firstDataBlock: number;
  logBlockSize: number; // block size = 1024 << logBlockSize
  logClusterSize: number;
  blocksPerGroup: number;
  clustersPerGroup: number;
  inodesPerGroup: number;
  mtime: number;
  wtime: number;
  mntCount: number;
  maxMntCount: number; // 0xffff means "never force a check"
  magic: number;
  state: number; // 1 = cleanly unmounted
  errors: number; // 1 = continue
  minorRevLevel: number;
  lastcheck: number;
  checkinterval: number;
  creatorOs: number; // 0 = Linux
  revLevel: number; // 1 = dynamic inode sizes
  defResuid: number;
  defResgid: number;
  firstIno: number;
  inodeSize: number;
  blockGroupNr: number;
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
  uuid: Uint8Array; // 16 bytes
  volumeName: string;
  hashSeed: Uint8Array; // 16 bytes
  defHashVersion: number;
  descSize: number;
  mkfsTime: number;
  minExtraIsize: number;
  wantExtraIsize: number;
  flags: number;
  logGroupsPerFlex: number;
  checksumType: number;
  backupBgs: [number, number];
  lpfIno: number;
  checksumSeed: number;
  checksum: number;
}

/** Encodes a superblock into its 1024-byte on-disk form (s_checksum is written as given). */
export function encodeSuperblock(sb: Superblock): Uint8Array {
  const bytes = new Uint8Array(SUPERBLOCK_SIZE);
  const v = new DataView(bytes.buffer);
  v.setUint32(0x00, sb.inodesCount, true); // s_inodes_count
  v.setUint32(0x04, sb.blocksCount % 2 ** 32, true); // s_blocks_count_lo
  v.setUint32(0x08, sb.rBlocksCount % 2 ** 32, true); // s_r_blocks_count_lo
  v.setUint32(0x0c, sb.freeBlocksCount % 2 ** 32, true); // s_free_blocks_count_lo
  v.setUint32(0x10, sb.freeInodesCount, true); // s_free_inodes_count
  v.setUint32(0x14, sb.firstDataBlock, true); // s_first_data_block
  v.setUint32(0x18, sb.logBlockSize, true); // s_log_block_size
  v.setUint32(0x1c, sb.logClusterSize, true); // s_log_cluster_size
  v.setUint32(0x20, sb.blocksPerGroup, true); // s_blocks_per_group
  v.setUint32(0x24, sb.clustersPerGroup, true); // s_clusters_per_group
  v.setUint32(0x28, sb.inodesPerGroup, true); // s_inodes_per_group
  v.setUint32(0x2c, sb.mtime, true); // s_mtime
  v.setUint32(0x30, sb.wtime, true); // s_wtime
  v.setUint16(0x34, sb.mntCount, true); // s_mnt_count
  v.setUint16(0x36, sb.maxMntCount, true); // s_max_mnt_count
  v.setUint16(0x38, sb.magic, true); // s_magic
  v.setUint16(0x3a, sb.state, true); // s_state
  v.setUint16(0x3c, sb.errors, true); // s_errors
  v.setUint16(0x3e, sb.minorRevLevel, true); // s_minor_rev_level
  v.setUint32(0x40, sb.lastcheck, true); // s_lastcheck
  v.setUint32(0x44, sb.checkinterval, true); // s_checkinterval
  v.setUint32(0x48, sb.creatorOs, true); // s_creator_os
  v.setUint32(0x4c, sb.revLevel, true); // s_rev_level
  v.setUint16(0x50, sb.defResuid, true); // s_def_resuid
  v.setUint16(0x52, sb.defResgid, true); // s_def_resgid
  v.setUint32(0x54, sb.firstIno, true); // s_first_ino
  v.setUint16(0x58, sb.inodeSize, true); // s_inode_size
  v.setUint16(0x5a, sb.blockGroupNr, true); // s_block_group_nr
  v.setUint32(0x5c, sb.featureCompat, true); // s_feature_compat
  v.setUint32(0x60, sb.featureIncompat, true); // s_feature_incompat
  v.setUint32(0x64, sb.featureRoCompat, true); // s_feature_ro_compat
  bytes.set(sb.uuid.subarray(0, 16), 0x68); // s_uuid[16]
  bytes.set(new TextEncoder().encode(sb.volumeName).subarray(0, 16), 0x78); // s_volume_name[16]
  bytes.set(sb.hashSeed.subarray(0, 16), 0xec); // s_hash_seed[4]
  bytes[0xfc] = sb.defHashVersion; // s_def_hash_version
  v.setUint16(0xfe, sb.descSize, true); // s_desc_size
  v.setUint32(0x108, sb.mkfsTime, true); // s_mkfs_time
  v.setUint32(0x150, Math.floor(sb.blocksCount / 2 ** 32), true); // s_blocks_count_hi
  v.setUint32(0x154, Math.floor(sb.rBlocksCount / 2 ** 32), true); // s_r_blocks_count_hi
  v.setUint32(0x158, Math.floor(sb.freeBlocksCount / 2 ** 32), true); // s_free_blocks_count_hi
  v.setUint16(0x15c, sb.minExtraIsize, true); // s_min_extra_isize
  v.setUint16(0x15e, sb.wantExtraIsize, true); // s_want_extra_isize
  v.setUint32(0x160, sb.flags, true); // s_flags
  bytes[0x174] = sb.logGroupsPerFlex; // s_log_groups_per_flex
  bytes[0x175] = sb.checksumType; // s_checksum_type
  v.setUint32(0x24c, sb.backupBgs[0], true); // s_backup_bgs[0]
  v.setUint32(0x250, sb.backupBgs[1], true); // s_backup_bgs[1]
  v.setUint32(0x268, sb.lpfIno, true); // s_lpf_ino
  v.setUint32(0x270, sb.checksumSeed, true); // s_checksum_seed
  v.setUint32(0x3fc, sb.checksum, true); // s_checksum
  return bytes;
}

/** Decodes the 1024-byte superblock; a bad magic is a FORMAT_INVALID error. */
export function decodeSuperblock(bytes: Uint8Array): Superblock {
  if (bytes.length < SUPERBLOCK_SIZE) {
    throw new VhdError("FORMAT_INVALID", `ext4 superblock: need ${SUPERBLOCK_SIZE} bytes, got ${bytes.length}`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, SUPERBLOCK_SIZE);
  const magic = v.getUint16(0x38, true);
  if (magic !== EXT4_MAGIC) {
    throw new VhdError("FORMAT_INVALID", `ext4 superblock: bad magic 0x${magic.toString(16)} (want 0xef53)`, { offset: SUPERBLOCK_OFFSET + 0x38 });
  }
  const name = bytes.subarray(0x78, 0x88);
  const nul = name.indexOf(0);
  return {
    inodesCount: v.getUint32(0x00, true),
    blocksCount: v.getUint32(0x04, true) + v.getUint32(0x150, true) * 2 ** 32,
    rBlocksCount: v.getUint32(0x08, true) + v.getUint32(0x154, true) * 2 ** 32,
    freeBlocksCount: v.getUint32(0x0c, true) + v.getUint32(0x158, true) * 2 ** 32,
    freeInodesCount: v.getUint32(0x10, true),
    firstDataBlock: v.getUint32(0x14, true),
    logBlockSize: v.getUint32(0x18, true),
    logClusterSize: v.getUint32(0x1c, true),
    blocksPerGroup: v.getUint32(0x20, true),
    clustersPerGroup: v.getUint32(0x24, true),
    inodesPerGroup: v.getUint32(0x28, true),
    mtime: v.getUint32(0x2c, true),
    wtime: v.getUint32(0x30, true),
    mntCount: v.getUint16(0x34, true),
    maxMntCount: v.getUint16(0x36, true),
    magic,
    state: v.getUint16(0x3a, true),
    errors: v.getUint16(0x3c, true),
    minorRevLevel: v.getUint16(0x3e, true),
    lastcheck: v.getUint32(0x40, true),
    checkinterval: v.getUint32(0x44, true),
    creatorOs: v.getUint32(0x48, true),
    revLevel: v.getUint32(0x4c, true),
    defResuid: v.getUint16(0x50, true),
    defResgid: v.getUint16(0x52, true),
    firstIno: v.getUint32(0x54, true),
    inodeSize: v.getUint16(0x58, true),
    blockGroupNr: v.getUint16(0x5a, true),
    featureCompat: v.getUint32(0x5c, true),
    featureIncompat: v.getUint32(0x60, true),
    featureRoCompat: v.getUint32(0x64, true),
    uuid: copyBytes(bytes, 0x68, 0x78),
    volumeName: new TextDecoder().decode(nul === -1 ? name : name.subarray(0, nul)),
    hashSeed: copyBytes(bytes, 0xec, 0xfc),
    defHashVersion: bytes[0xfc] ?? 0,
    descSize: v.getUint16(0xfe, true),
    mkfsTime: v.getUint32(0x108, true),
    minExtraIsize: v.getUint16(0x15c, true),
    wantExtraIsize: v.getUint16(0x15e, true),
    flags: v.getUint32(0x160, true),
    logGroupsPerFlex: bytes[0x174] ?? 0,
    checksumType: bytes[0x175] ?? 0,
    backupBgs: [v.getUint32(0x24c, true), v.getUint32(0x250, true)],
    lpfIno: v.getUint32(0x268, true),
    checksumSeed: v.getUint32(0x270, true),
    checksum: v.getUint32(0x3fc, true),
  };
}
