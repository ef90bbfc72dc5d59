// The ext4 on-disk inode (struct ext4_inode), 256 bytes as lcow writes it: the 128-byte base
// plus 32 extra bytes (i_extra_isize = 32, up to i_projid) and room for in-inode xattrs.
import { VhdError } from "../errors.js";
import { copyBytes } from "./bytes.js";

export const INODE_SIZE = 256;
/** Bytes of the base inode every revision has. */
export const GOOD_OLD_INODE_SIZE = 128;
/** i_extra_isize we write: the fields from i_extra_isize up to and including i_projid. */
export const INODE_EXTRA_ISIZE = 32;
/** In-inode xattrs start right after the extra fields. */
export const INODE_XATTR_OFFSET = GOOD_OLD_INODE_SIZE + INODE_EXTRA_ISIZE;
/** Size of i_block: 15 32-bit words, holding the extent root, a fast symlink or inline data. */
export const I_BLOCK_SIZE = 60;

export const InodeNumber = {
  BAD_BLOCKS: 1,
  ROOT: 2,
  FIRST_NON_RESERVED: 11,
} as const;

/** File type bits of i_mode (S_IFMT). */
export const FileMode = {
  S_IFIFO: 0o010000,
  S_IFCHR: 0o020000,
  S_IFDIR: 0o040000,
  S_IFBLK: 0o060000,
  S_IFREG: 0o100000,
  S_IFLNK: 0o120000,
  S_IFSOCK: 0o140000,
  S_IFMT: 0o170000,
} as const;

/** i_flags bits we use. */
export const InodeFlag = {
  HUGE_FILE: 0x40000,
  EXTENTS: 0x80000,
  INLINE_DATA: 0x10000000,
} as const;

/** A timestamp as ext4 stores it: signed seconds (34 bits usable) and nanoseconds. */
export interface Ext4Time {
  sec: number;
  nsec: number;
}

export interface Inode {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  atime: Ext4Time;
  ctime: Ext4Time;
  mtime: Ext4Time;
  crtime: Ext4Time;
  dtime: number;
  linksCount: number;
  /** i_blocks in 512-byte units (huge_file without HUGE_FILE_FL). */
  blocks: number;
  flags: number;
  /** The 60 bytes of i_block, verbatim. */
  block: Uint8Array;
  generation: number;
  fileAcl: number;
  extraIsize: number;
  /** Bytes after the extra fields (in-inode xattr area), verbatim; INODE_SIZE - INODE_XATTR_OFFSET long. */
  xattrArea: Uint8Array;
}

/** Smallest and largest seconds the 32-bit field plus two epoch bits can carry. */
export const EXT4_TIME_MIN = -(2 ** 31);
export const EXT4_TIME_MAX = 2 ** 34 - 2 ** 31 - 1;

/**
 * The kernel's ext4_encode_extra_time: the low 32 bits go in the base field; the extra field
 * holds nanoseconds << 2 and two epoch bits that extend the range past 2038.
 */
export function encodeTime(t: Ext4Time): { base: number; extra: number } {
  const sec = Math.min(Math.max(Math.trunc(t.sec), EXT4_TIME_MIN), EXT4_TIME_MAX);
  const base = sec | 0; // signed low 32 bits
  const epoch = ((sec - base) / 2 ** 32) & 3;
  return { base: base >>> 0, extra: ((t.nsec << 2) | epoch) >>> 0 };
}

export function decodeTime(base: number, extra: number): Ext4Time {
  const epoch = extra & 3;
  return { sec: (base | 0) + epoch * 2 ** 32, nsec: extra >>> 2 };
}

/**
 * Writes the inode into `out` at `offset` (an inode table buffer), INODE_SIZE bytes. `view`
 * may be passed as a DataView over all of `out`, to avoid one per inode in a large table.
 */
export function encodeInodeInto(ino: Inode, out: Uint8Array, offset: number, view?: DataView): void {
  const v = new OffsetView(view ?? new DataView(out.buffer, out.byteOffset, out.byteLength), offset);
  const a = encodeTime(ino.atime);
  const c = encodeTime(ino.ctime);
  const m = encodeTime(ino.mtime);
  const cr = encodeTime(ino.crtime);
  v.setUint16(0x00, ino.mode, true); // i_mode
  v.setUint16(0x02, ino.uid & 0xffff, true); // i_uid (low 16)
  v.setUint32(0x04, ino.size % 2 ** 32, true); // i_size_lo
  v.setUint32(0x08, a.base, true); // i_atime
  v.setUint32(0x0c, c.base, true); // i_ctime
  v.setUint32(0x10, m.base, true); // i_mtime
  v.setUint32(0x14, ino.dtime, true); // i_dtime
  v.setUint16(0x18, ino.gid & 0xffff, true); // i_gid (low 16)
  v.setUint16(0x1a, ino.linksCount, true); // i_links_count
  v.setUint32(0x1c, ino.blocks % 2 ** 32, true); // i_blocks_lo
  v.setUint32(0x20, ino.flags, true); // i_flags
  v.setUint32(0x24, 0, true); // l_i_version
  out.set(ino.block.subarray(0, I_BLOCK_SIZE), offset + 0x28); // i_block[15]
  v.setUint32(0x64, ino.generation, true); // i_generation
  v.setUint32(0x68, ino.fileAcl % 2 ** 32, true); // i_file_acl_lo
  v.setUint32(0x6c, Math.floor(ino.size / 2 ** 32), true); // i_size_high
  v.setUint32(0x70, 0, true); // i_obso_faddr
  v.setUint16(0x74, Math.floor(ino.blocks / 2 ** 32), true); // l_i_blocks_high
  v.setUint16(0x76, Math.floor(ino.fileAcl / 2 ** 32), true); // l_i_file_acl_high
  v.setUint16(0x78, ino.uid >>> 16, true); // l_i_uid_high
  v.setUint16(0x7a, ino.gid >>> 16, true); // l_i_gid_high
  v.setUint16(0x7c, 0, true); // l_i_checksum_lo
  v.setUint16(0x7e, 0, true); // l_i_reserved
  v.setUint16(0x80, ino.extraIsize, true); // i_extra_isize
  v.setUint16(0x82, 0, true); // i_checksum_hi
  v.setUint32(0x84, c.extra, true); // i_ctime_extra
  v.setUint32(0x88, m.extra, true); // i_mtime_extra
  v.setUint32(0x8c, a.extra, true); // i_atime_extra
  v.setUint32(0x90, cr.base, true); // i_crtime
  v.setUint32(0x94, cr.extra, true); // i_crtime_extra
  v.setUint32(0x98, 0, true); // i_version_hi
  v.setUint32(0x9c, 0, true); // i_projid
  out.set(ino.xattrArea.subarray(0, INODE_SIZE - INODE_XATTR_OFFSET), offset + INODE_XATTR_OFFSET);
}

/** A DataView shifted by a fixed offset, so field offsets stay literal in encodeInodeInto. */
class OffsetView {
  constructor(
    private readonly v: DataView,
    private readonly base: number,
  ) {}
  setUint16(at: number, value: number, le: boolean): void {
    this.v.setUint16(this.base + at, value, le);
  }
  setUint32(at: number, value: number, le: boolean): void {
    this.v.setUint32(this.base + at, value, le);
  }
}

export function encodeInode(ino: Inode): Uint8Array {
  const out = new Uint8Array(INODE_SIZE);
  encodeInodeInto(ino, out, 0);
  return out;
}

/**
 * Decodes an inode of `inodeSize` bytes (128 for old filesystems, usually 256). `block` and
 * `xattrArea` are copies unless `share` is set (the caller then owns `bytes` and never reuses it).
 */
export function decodeInode(bytes: Uint8Array, offset = 0, inodeSize = INODE_SIZE, share = false): Inode {
  const part = share ? (a: number, b: number) => bytes.subarray(a, b) : (a: number, b: number) => copyBytes(bytes, a, b);
  if (bytes.length < offset + inodeSize || inodeSize < GOOD_OLD_INODE_SIZE) {
    throw new VhdError("FORMAT_INVALID", `ext4 inode at ${offset}: truncated`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, inodeSize);
  const extraIsize = inodeSize > GOOD_OLD_INODE_SIZE ? v.getUint16(0x80, true) : 0;
  const has = (field: number, width: number) => GOOD_OLD_INODE_SIZE + extraIsize >= field + width;
  const extra = (field: number) => (has(field, 4) ? v.getUint32(field, true) : 0);
  const xattrStart = GOOD_OLD_INODE_SIZE + extraIsize;
  return {
    mode: v.getUint16(0x00, true),
    uid: (v.getUint16(0x02, true) | (v.getUint16(0x78, true) << 16)) >>> 0,
    gid: (v.getUint16(0x18, true) | (v.getUint16(0x7a, true) << 16)) >>> 0,
    size: v.getUint32(0x04, true) + v.getUint32(0x6c, true) * 2 ** 32,
    atime: decodeTime(v.getUint32(0x08, true), extra(0x8c)),
    ctime: decodeTime(v.getUint32(0x0c, true), extra(0x84)),
    mtime: decodeTime(v.getUint32(0x10, true), extra(0x88)),
    crtime: decodeTime(extra(0x90), extra(0x94)),
    dtime: v.getUint32(0x14, true),
    linksCount: v.getUint16(0x1a, true),
    blocks: v.getUint32(0x1c, true) + v.getUint16(0x74, true) * 2 ** 32,
    flags: v.getUint32(0x20, true),
    block: part(offset + 0x28, offset + 0x28 + I_BLOCK_SIZE),
    generation: v.getUint32(0x64, true),
    fileAcl: v.getUint32(0x68, true) + v.getUint16(0x76, true) * 2 ** 32,
    extraIsize,
    xattrArea: xattrStart < inodeSize ? part(offset + xattrStart, offset + inodeSize) : new Uint8Array(0),
  };
}

/**
 * Device numbers in i_block, as the kernel's ext4 writes them: the old 16-bit encoding in
 * i_block[0] when major and minor both fit a byte, else the new 32-bit one in i_block[1].
 */
export function encodeDevice(major: number, minor: number): Uint8Array {
  const block = new Uint8Array(I_BLOCK_SIZE);
  const v = new DataView(block.buffer);
  if (major < 256 && minor < 256) {
    v.setUint32(0, (major << 8) | minor, true);
  } else {
    v.setUint32(4, ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0, true);
  }
  return block;
}

export function decodeDevice(block: Uint8Array): { major: number; minor: number } {
  const v = new DataView(block.buffer, block.byteOffset, I_BLOCK_SIZE);
  const old = v.getUint32(0, true);
  if (old !== 0) return { major: (old >>> 8) & 0xff, minor: old & 0xff };
  const dev = v.getUint32(4, true);
  return { major: (dev >>> 8) & 0xfff, minor: (dev & 0xff) | ((dev >>> 12) & 0xfff00) };
}
