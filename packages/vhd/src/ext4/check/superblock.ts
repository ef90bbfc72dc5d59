// Superblock pass: magic, geometry, features and checksum. Everything later sizes its tables
// from these numbers, so a geometry that could not describe the device stops the check here.
import { CompatFeature, decodeSuperblock, EXT4_MAGIC, IncompatFeature, RoCompatFeature, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE } from "../../format/superblock.js";
import { fsChecksumSeed, superblockChecksum } from "../csum.js";
import type { Geometry } from "./context.js";
import { FindingCode as C, type FindingList } from "./findings.js";
import { u16, u32 } from "./context.js";

/** s_feature_compat bit of the orphan file (e2fsprogs 1.47). */
const COMPAT_ORPHAN_FILE = 0x1000;

/** Incompat bits this checker reads; anything else is named and stops the check. */
const INCOMPAT_NAMES: Record<number, string> = {
  0x1: "compression",
  0x2: "filetype",
  0x4: "needs_recovery",
  0x8: "journal_dev",
  0x10: "meta_bg",
  0x40: "extent",
  0x80: "64bit",
  0x100: "mmp",
  0x200: "flex_bg",
  0x400: "ea_inode",
  0x1000: "dirdata",
  0x2000: "metadata_csum_seed",
  0x4000: "large_dir",
  0x8000: "inline_data",
  0x10000: "encrypt",
  0x20000: "casefold",
};
const INCOMPAT_SUPPORTED =
  IncompatFeature.FILETYPE |
  IncompatFeature.RECOVER |
  IncompatFeature.META_BG |
  IncompatFeature.EXTENTS |
  IncompatFeature.BIT64 |
  IncompatFeature.MMP |
  IncompatFeature.FLEX_BG |
  IncompatFeature.CSUM_SEED |
  IncompatFeature.LARGEDIR |
  IncompatFeature.INLINE_DATA |
  // Encryption and casefolding change names and hashes, not the structures checked here.
  IncompatFeature.ENCRYPT |
  IncompatFeature.CASEFOLD;

const RO_COMPAT_NAMES: Record<number, string> = {
  0x1: "sparse_super",
  0x2: "large_file",
  0x4: "btree_dir",
  0x8: "huge_file",
  0x10: "uninit_bg",
  0x20: "dir_nlink",
  0x40: "extra_isize",
  0x80: "has_snapshot",
  0x100: "quota",
  0x200: "bigalloc",
  0x400: "metadata_csum",
  0x800: "replica",
  0x1000: "read-only",
  0x2000: "project",
  0x4000: "shared_blocks",
  0x8000: "verity",
  0x10000: "orphan_present",
};
const RO_COMPAT_SUPPORTED =
  RoCompatFeature.SPARSE_SUPER |
  RoCompatFeature.LARGE_FILE |
  RoCompatFeature.HUGE_FILE |
  RoCompatFeature.GDT_CSUM |
  RoCompatFeature.DIR_NLINK |
  RoCompatFeature.EXTRA_ISIZE |
  RoCompatFeature.QUOTA |
  RoCompatFeature.METADATA_CSUM |
  RoCompatFeature.READONLY |
  RoCompatFeature.PROJECT |
  0x8000 | // verity: file contents only
  RoCompatFeature.ORPHAN_PRESENT;

function featureNames(bits: number, names: Record<number, string>): string {
  const out: string[] = [];
  for (let b = 0; b < 32; b++) {
    const bit = 2 ** b;
    if (bits & bit) out.push(names[bit] ?? `0x${bit.toString(16)}`);
  }
  return out.join(", ");
}

/**
 * Reads and validates the primary superblock. Returns the geometry, or undefined when the
 * superblock cannot describe a filesystem on this device (findings say why).
 */
export async function checkSuperblock(read: (buf: Uint8Array, pos: number) => Promise<number>, deviceSize: number, f: FindingList): Promise<Geometry | undefined> {
  const S = "superblock";
  if (deviceSize < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE) {
    f.add(C.SUPERBLOCK_GEOMETRY, S, `device of ${deviceSize} bytes is too small to hold a superblock at byte ${SUPERBLOCK_OFFSET}`, SUPERBLOCK_OFFSET);
    return undefined;
  }
  const bytes = new Uint8Array(SUPERBLOCK_SIZE);
  await read(bytes, SUPERBLOCK_OFFSET);
  const magic = u16(bytes, 0x38);
  if (magic !== EXT4_MAGIC) {
    f.add(C.SUPERBLOCK_MAGIC, S, `bad magic 0x${magic.toString(16)} (want 0xef53): not an ext2/3/4 filesystem`, SUPERBLOCK_OFFSET + 0x38);
    return undefined;
  }
  const sb = decodeSuperblock(bytes);
  const at = (field: number) => SUPERBLOCK_OFFSET + field;
  const geometry = (field: number, message: string) => f.add(C.SUPERBLOCK_GEOMETRY, S, message, at(field));

  // Features first: an unknown incompat feature means we cannot interpret anything else.
  const incompat = sb.featureIncompat;
  const roCompat = sb.featureRoCompat;
  let fatal = false;
  const badIncompat = incompat & ~INCOMPAT_SUPPORTED;
  if (badIncompat) {
    f.add(C.FEATURE_UNSUPPORTED, S, `incompatible features not supported: ${featureNames(badIncompat, INCOMPAT_NAMES)}`, at(0x60));
    fatal = true;
  }
  const badRo = roCompat & ~RO_COMPAT_SUPPORTED;
  if (badRo) {
    f.add(C.FEATURE_UNSUPPORTED, S, `read-only-compatible features not supported: ${featureNames(badRo, RO_COMPAT_NAMES)}`, at(0x64));
    fatal = true;
  }
  if (sb.revLevel > 1) {
    geometry(0x4c, `revision level ${sb.revLevel} unknown (0 or 1)`);
    fatal = true;
  }

  const metadataCsum = (roCompat & RoCompatFeature.METADATA_CSUM) !== 0;
  if (metadataCsum) {
    if (sb.checksumType !== 1) f.add(C.FEATURE_INVALID, S, `s_checksum_type ${sb.checksumType} (want 1, crc32c)`, at(0x175));
    const want = superblockChecksum(bytes);
    if (want !== sb.checksum) {
      f.add(C.SUPERBLOCK_CHECKSUM, S, `s_checksum 0x${sb.checksum.toString(16)} does not match 0x${want.toString(16)}`, at(0x3fc));
    }
  }

  if (sb.logBlockSize > 6) {
    geometry(0x18, `s_log_block_size ${sb.logBlockSize}: block size above 64 KiB`);
    return undefined;
  }
  const blockSize = 1024 << sb.logBlockSize;
  const bitsPerBlock = blockSize * 8;
  const inodeSize = sb.revLevel === 0 ? 128 : sb.inodeSize;
  const is64 = (incompat & IncompatFeature.BIT64) !== 0;
  const descSize = is64 ? sb.descSize : 32;
  const blocksCount = is64 ? sb.blocksCount : sb.blocksCount % 2 ** 32;
  const firstIno = sb.revLevel === 0 ? 11 : sb.firstIno;

  if (sb.logClusterSize !== sb.logBlockSize) geometry(0x1c, `s_log_cluster_size ${sb.logClusterSize} differs from the block size without bigalloc`);
  if (sb.blocksPerGroup === 0 || sb.blocksPerGroup > bitsPerBlock || sb.blocksPerGroup % 8 !== 0) {
    geometry(0x20, `s_blocks_per_group ${sb.blocksPerGroup}: must be a non-zero multiple of 8 up to ${bitsPerBlock}`);
    fatal = true;
  } else if (sb.clustersPerGroup !== sb.blocksPerGroup) {
    geometry(0x24, `s_clusters_per_group ${sb.clustersPerGroup} differs from s_blocks_per_group ${sb.blocksPerGroup} without bigalloc`);
  }
  if (sb.inodesPerGroup === 0 || sb.inodesPerGroup > bitsPerBlock) {
    geometry(0x28, `s_inodes_per_group ${sb.inodesPerGroup}: must be between 1 and ${bitsPerBlock}`);
    fatal = true;
  }
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) {
    geometry(0x58, `s_inode_size ${inodeSize}: must be a power of two from 128 to the block size`);
    fatal = true;
  }
  if (is64 && (descSize < 64 || descSize > 1024 || (descSize & (descSize - 1)) !== 0)) {
    geometry(0xfe, `s_desc_size ${descSize}: with 64bit it must be a power of two from 64 to 1024`);
    fatal = true;
  }
  const wantFirst = blockSize === 1024 ? 1 : 0;
  if (sb.firstDataBlock !== wantFirst) {
    geometry(0x14, `s_first_data_block ${sb.firstDataBlock} (want ${wantFirst} for ${blockSize}-byte blocks)`);
    fatal = true;
  }
  if (blocksCount <= sb.firstDataBlock) {
    geometry(0x04, `s_blocks_count ${blocksCount} leaves no blocks`);
    fatal = true;
  }
  if (blocksCount * blockSize > deviceSize) {
    geometry(0x04, `filesystem of ${blocksCount} blocks (${blocksCount * blockSize} bytes) is larger than the device (${deviceSize} bytes): truncated image?`);
    fatal = true;
  }
  if (fatal) return undefined;

  const groups = Math.ceil((blocksCount - sb.firstDataBlock) / sb.blocksPerGroup);
  if (sb.inodesCount !== groups * sb.inodesPerGroup) {
    geometry(0x00, `s_inodes_count ${sb.inodesCount} is not ${groups} groups x ${sb.inodesPerGroup} inodes`);
    return undefined;
  }
  const itableBlocks = Math.ceil((sb.inodesPerGroup * inodeSize) / blockSize);
  // Every group's inode table must fit the filesystem; this also bounds the per-inode tables.
  if (groups * itableBlocks > blocksCount) {
    geometry(0x28, `${groups} inode tables of ${itableBlocks} blocks do not fit ${blocksCount} blocks`);
    return undefined;
  }
  if (firstIno < 11 || firstIno >= sb.inodesCount) {
    geometry(0x54, `s_first_ino ${firstIno}: must be at least 11 and below s_inodes_count`);
    return undefined;
  }
  if (sb.freeBlocksCount > blocksCount) geometry(0x0c, `s_free_blocks_count ${sb.freeBlocksCount} exceeds s_blocks_count ${blocksCount}`);
  if (sb.freeInodesCount > sb.inodesCount) geometry(0x10, `s_free_inodes_count ${sb.freeInodesCount} exceeds s_inodes_count ${sb.inodesCount}`);
  if (sb.rBlocksCount > blocksCount) geometry(0x08, `s_r_blocks_count ${sb.rBlocksCount} exceeds s_blocks_count ${blocksCount}`);

  const flexBg = (incompat & IncompatFeature.FLEX_BG) !== 0;
  if (flexBg && sb.logGroupsPerFlex > 31) geometry(0x174, `s_log_groups_per_flex ${sb.logGroupsPerFlex} above 31`);
  const metaBg = (incompat & IncompatFeature.META_BG) !== 0;
  const descPerBlock = blockSize / descSize;
  const gdtBlocks = Math.ceil(groups / descPerBlock);
  const reservedGdtBlocks = u16(bytes, 0xce); // s_reserved_gdt_blocks
  const firstMetaBg = u32(bytes, 0x104); // s_first_meta_bg
  if (reservedGdtBlocks > blockSize / 4) geometry(0xce, `s_reserved_gdt_blocks ${reservedGdtBlocks} above ${blockSize / 4}`);
  if (metaBg && firstMetaBg > gdtBlocks) geometry(0x104, `s_first_meta_bg ${firstMetaBg} beyond the ${gdtBlocks} descriptor blocks`);

  if (sb.state & 2) f.add(C.FS_STATE, S, "s_state has the error bit: the kernel recorded filesystem errors", at(0x3a));
  else if (!(sb.state & 1)) f.warn(C.FS_STATE, S, "s_state is not clean: the filesystem was not cleanly unmounted", at(0x3a));
  if (incompat & IncompatFeature.RECOVER) f.add(C.JOURNAL_NEEDS_RECOVERY, S, "needs_recovery is set: the journal must be replayed before the filesystem is consistent", at(0x60));
  if ((incompat & IncompatFeature.RECOVER) && !(sb.featureCompat & CompatFeature.HAS_JOURNAL)) {
    f.add(C.FEATURE_INVALID, S, "needs_recovery without has_journal", at(0x60));
  }
  const groupCsum = metadataCsum || (roCompat & RoCompatFeature.GDT_CSUM) !== 0;

  const journal = (sb.featureCompat & CompatFeature.HAS_JOURNAL) !== 0;
  const journalInum = journal ? u32(bytes, 0xe0) : 0; // s_journal_inum
  const orphanFile = (sb.featureCompat & COMPAT_ORPHAN_FILE) !== 0;
  const orphanFileInum = orphanFile ? u32(bytes, 0x280) : 0; // s_orphan_file_inum
  const hiddenInodes = new Set<number>();
  for (const ino of [journalInum, orphanFileInum, u32(bytes, 0x240), u32(bytes, 0x244), u32(bytes, 0x26c)]) {
    if (ino !== 0 && ino <= sb.inodesCount) hiddenInodes.add(ino); // journal, orphan file, usr/grp/prj quota
  }
  if (journal && (journalInum === 0 || journalInum > sb.inodesCount)) {
    if (u32(bytes, 0xe4) === 0) f.add(C.SPECIAL_INODE, S, `has_journal with s_journal_inum ${journalInum} out of range`, at(0xe0)); // not an external journal (s_journal_dev)
  }
  const lastOrphan = u32(bytes, 0xe8); // s_last_orphan
  const mmp = (incompat & IncompatFeature.MMP) !== 0;
  const mmpBlock = mmp ? u32(bytes, 0x168) + u32(bytes, 0x16c) * 2 ** 32 : 0; // s_mmp_block
  return {
    sb,
    sbBytes: bytes,
    blockSize,
    blocksCount,
    inodesCount: sb.inodesCount,
    groups,
    blocksPerGroup: sb.blocksPerGroup,
    inodesPerGroup: sb.inodesPerGroup,
    inodeSize,
    descSize,
    firstDataBlock: sb.firstDataBlock,
    firstIno,
    itableBlocks,
    reservedGdtBlocks,
    firstMetaBg,
    gdtBlocks,
    csumSeed: metadataCsum ? fsChecksumSeed(sb) : 0,
    metadataCsum,
    groupCsum,
    has: {
      extents: (incompat & IncompatFeature.EXTENTS) !== 0,
      filetype: (incompat & IncompatFeature.FILETYPE) !== 0,
      inlineData: (incompat & IncompatFeature.INLINE_DATA) !== 0,
      dirIndex: (sb.featureCompat & CompatFeature.DIR_INDEX) !== 0,
      dirNlink: (roCompat & RoCompatFeature.DIR_NLINK) !== 0,
      hugeFile: (roCompat & RoCompatFeature.HUGE_FILE) !== 0,
      largeDir: (incompat & IncompatFeature.LARGEDIR) !== 0,
      metaBg,
      flexBg,
      is64,
      sparseSuper: (roCompat & RoCompatFeature.SPARSE_SUPER) !== 0,
      sparseSuper2: (sb.featureCompat & CompatFeature.SPARSE_SUPER2) !== 0,
      extAttr: (sb.featureCompat & CompatFeature.EXT_ATTR) !== 0,
      resizeInode: (sb.featureCompat & CompatFeature.RESIZE_INODE) !== 0,
      journal,
      orphanFile,
    },
    journalInum,
    lastOrphan,
    orphanFileInum,
    mmpBlock,
    hiddenInodes,
  };
}
