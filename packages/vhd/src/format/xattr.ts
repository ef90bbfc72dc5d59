// ext4 extended attributes (fs/ext4/xattr.h): entries (struct ext4_xattr_entry) with their
// values, stored either in the inode after i_extra_isize (behind a 4-byte magic) or in one
// separate block with a 32-byte header (struct ext4_xattr_header).
import { VhdError } from "../errors.js";
import { copyBytes } from "./bytes.js";

export const XATTR_MAGIC = 0xea020000;
export const XATTR_BLOCK_HEADER_SIZE = 32;
export const XATTR_ENTRY_HEADER_SIZE = 16;
/** Every list of entries ends with four zero bytes. */
export const XATTR_END_SIZE = 4;

/** Name prefixes and their e_name_index, as the kernel's ext4_xattr_handler_map. */
const PREFIXES: readonly (readonly [string, number])[] = [
  // Full names first: the POSIX ACLs are stored with an empty suffix.
  ["system.posix_acl_access", 2],
  ["system.posix_acl_default", 3],
  ["user.", 1],
  ["trusted.", 4],
  ["security.", 6],
  ["system.", 7],
];

/** One attribute: its full name (latin1 string of the name's bytes) and raw value. */
export interface Xattr {
  name: string;
  value: Uint8Array;
}

interface EncodedName {
  index: number;
  suffix: Uint8Array;
}

/** Splits a full name into the kernel's (name index, suffix); unknown namespaces are an error. */
export function splitXattrName(name: string): EncodedName {
  for (const [prefix, index] of PREFIXES) {
    if (index === 2 || index === 3 ? name === prefix : name.startsWith(prefix)) {
      const suffix = new Uint8Array(Buffer.from(name.slice(prefix.length), "latin1"));
      if (suffix.length > 255) throw new VhdError("TAR_ENTRY_INVALID", `xattr ${name}: name longer than 255 bytes`);
      if (index !== 2 && index !== 3 && suffix.length === 0) break;
      return { index, suffix };
    }
  }
  throw new VhdError("TAR_ENTRY_INVALID", `xattr ${JSON.stringify(name)}: namespace not supported by ext4`);
}

export function joinXattrName(index: number, suffix: Uint8Array): string {
  const entry = PREFIXES.find(([, i]) => i === index);
  if (!entry) throw new VhdError("FORMAT_INVALID", `xattr name index ${index} unknown`);
  return entry[0] + Buffer.from(suffix).toString("latin1");
}

/** Bytes an entry header plus name takes (rounded to 4), not counting its value. */
export function xattrEntrySize(suffixLen: number): number {
  return (XATTR_ENTRY_HEADER_SIZE + suffixLen + 3) & ~3;
}

/** Bytes a value takes (rounded to 4). */
export function xattrValueSize(valueLen: number): number {
  return (valueLen + 3) & ~3;
}

/** ext4_xattr_hash_entry: rotate-xor over the name bytes, then over the value's 32-bit words. */
export function xattrEntryHash(suffix: Uint8Array, value: Uint8Array): number {
  let hash = 0;
  for (const c of suffix) hash = ((hash << 5) ^ (hash >>> 27) ^ c) >>> 0;
  if (value.length > 0) {
    const padded = new Uint8Array(xattrValueSize(value.length));
    padded.set(value);
    const v = new DataView(padded.buffer);
    for (let i = 0; i < padded.length; i += 4) hash = ((hash << 16) ^ (hash >>> 16) ^ v.getUint32(i, true)) >>> 0;
  }
  return hash;
}

/** ext4_xattr_rehash: the block hash combines the entries' hashes. */
export function xattrBlockHash(entryHashes: readonly number[]): number {
  let hash = 0;
  for (const h of entryHashes) {
    if (h === 0) return 0;
    hash = ((hash << 16) ^ (hash >>> 16) ^ h) >>> 0;
  }
  return hash;
}

interface Prepared {
  index: number;
  suffix: Uint8Array;
  value: Uint8Array;
  hash: number;
}

function prepare(attrs: readonly Xattr[]): Prepared[] {
  const out = attrs.map((a) => {
    const { index, suffix } = splitXattrName(a.name);
    return { index, suffix, value: a.value, hash: xattrEntryHash(suffix, a.value) };
  });
  // The kernel keeps block entries sorted by (index, name length, name) and binary-searches
  // nothing but compares in that order; we sort in-inode entries the same way for determinism.
  out.sort((x, y) => x.index - y.index || x.suffix.length - y.suffix.length || Buffer.compare(x.suffix, y.suffix));
  return out;
}

/** Bytes a set of attributes needs in a region whose entries start at its beginning. */
export function xattrRegionSize(attrs: readonly Xattr[]): number {
  let n = XATTR_END_SIZE;
  for (const a of attrs) n += xattrEntrySize(splitXattrName(a.name).suffix.length) + xattrValueSize(a.value.length);
  return n;
}

/**
 * Lays entries out from the front of `region` and values from its back. Value offsets are
 * relative to `valueBase` (the first entry in-inode, the block start in a block). Returns the
 * entry hashes.
 */
function encodeEntries(list: Prepared[], region: Uint8Array, entriesAt: number, valueBase: number): number[] {
  const v = new DataView(region.buffer, region.byteOffset, region.byteLength);
  let at = entriesAt;
  let valueEnd = region.length;
  const hashes: number[] = [];
  for (const e of list) {
    valueEnd -= xattrValueSize(e.value.length);
    region[at] = e.suffix.length; // e_name_len
    region[at + 1] = e.index; // e_name_index
    v.setUint16(at + 2, e.value.length === 0 ? 0 : valueEnd - valueBase, true); // e_value_offs
    v.setUint32(at + 4, 0, true); // e_value_inum (no ea_inode)
    v.setUint32(at + 8, e.value.length, true); // e_value_size
    v.setUint32(at + 12, e.hash, true); // e_hash
    region.set(e.suffix, at + XATTR_ENTRY_HEADER_SIZE);
    region.set(e.value, valueEnd);
    hashes.push(e.hash);
    at += xattrEntrySize(e.suffix.length);
  }
  if (at + XATTR_END_SIZE > valueEnd) throw new RangeError("xattr region overflow");
  return hashes;
}

/** Encodes the in-inode xattr area (magic + entries + values) of `areaSize` bytes. */
export function encodeInodeXattrs(attrs: readonly Xattr[], areaSize: number): Uint8Array {
  const area = new Uint8Array(areaSize);
  if (attrs.length === 0) return area;
  if (4 + xattrRegionSize(attrs) > areaSize) throw new RangeError("xattrs do not fit the inode");
  new DataView(area.buffer).setUint32(0, XATTR_MAGIC, true); // h_magic of ext4_xattr_ibody_header
  // In-inode value offsets count from the first entry, which follows the magic.
  encodeEntries(prepare(attrs), area.subarray(4), 0, 0);
  return area;
}

/** Encodes an xattr block of `blockSize` bytes with the given reference count. */
export function encodeXattrBlock(attrs: readonly Xattr[], blockSize: number, refcount = 1): Uint8Array {
  if (XATTR_BLOCK_HEADER_SIZE + xattrRegionSize(attrs) > blockSize) throw new RangeError("xattrs do not fit a block");
  const block = new Uint8Array(blockSize);
  const hashes = encodeEntries(prepare(attrs), block, XATTR_BLOCK_HEADER_SIZE, 0);
  const v = new DataView(block.buffer);
  v.setUint32(0x00, XATTR_MAGIC, true); // h_magic
  v.setUint32(0x04, refcount, true); // h_refcount
  v.setUint32(0x08, 1, true); // h_blocks
  v.setUint32(0x0c, xattrBlockHash(hashes), true); // h_hash
  v.setUint32(0x10, 0, true); // h_checksum (metadata_csum only)
  return block;
}

function decodeEntries(region: Uint8Array, entriesAt: number, valueBase: number, where: string): Xattr[] {
  const v = new DataView(region.buffer, region.byteOffset, region.byteLength);
  const out: Xattr[] = [];
  let at = entriesAt;
  for (;;) {
    if (at + 4 > region.length) throw new VhdError("FORMAT_INVALID", `${where}: entries run past the end`);
    if (v.getUint32(at, true) === 0) break;
    if (at + XATTR_ENTRY_HEADER_SIZE > region.length) throw new VhdError("FORMAT_INVALID", `${where}: entry at ${at} truncated`);
    const nameLen = region[at] ?? 0;
    const index = region[at + 1] ?? 0;
    const offs = v.getUint16(at + 2, true);
    const inum = v.getUint32(at + 4, true);
    const size = v.getUint32(at + 8, true);
    if (inum !== 0) throw new VhdError("FORMAT_INVALID", `${where}: value stored in an inode (ea_inode) is not supported`);
    const nameEnd = at + XATTR_ENTRY_HEADER_SIZE + nameLen;
    const valueStart = valueBase + offs;
    if (nameEnd > region.length || (size > 0 && (valueStart < 0 || valueStart + size > region.length))) {
      throw new VhdError("FORMAT_INVALID", `${where}: entry at ${at} points outside its region`);
    }
    const suffix = region.subarray(at + XATTR_ENTRY_HEADER_SIZE, nameEnd);
    out.push({ name: joinXattrName(index, suffix), value: size > 0 ? copyBytes(region, valueStart, valueStart + size) : new Uint8Array(0) });
    at += xattrEntrySize(nameLen);
  }
  return out;
}

/** Decodes the in-inode xattr area; an area without the magic holds no attributes. */
export function decodeInodeXattrs(area: Uint8Array): Xattr[] {
  if (area.length < 4 || new DataView(area.buffer, area.byteOffset, 4).getUint32(0, true) !== XATTR_MAGIC) return [];
  return decodeEntries(area.subarray(4), 0, 0, "in-inode xattrs");
}

export function decodeXattrBlock(block: Uint8Array): { refcount: number; attrs: Xattr[] } {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  if (block.length < XATTR_BLOCK_HEADER_SIZE || v.getUint32(0, true) !== XATTR_MAGIC) {
    throw new VhdError("FORMAT_INVALID", "xattr block: bad magic");
  }
  return { refcount: v.getUint32(4, true), attrs: decodeEntries(block, XATTR_BLOCK_HEADER_SIZE, 0, "xattr block") };
}
