// ext4 extent trees (fs/ext4/ext4_extents.h): a 12-byte header followed by 12-byte entries,
// either leaves (ext4_extent: logical block -> physical run) or indexes (ext4_extent_idx:
// logical block -> child node). The root lives in i_block (4 entries); other nodes fill a block.
import { VhdError } from "../errors.js";

export const EXTENT_MAGIC = 0xf30a;
export const EXTENT_HEADER_SIZE = 12;
export const EXTENT_ENTRY_SIZE = 12;
/** The longest initialized extent: ee_len is 16 bits and values above 32768 mean "unwritten". */
export const EXTENT_MAX_LEN = 32768;

/** A leaf entry: `len` blocks starting at logical block `logical` live at physical block `physical`. */
export interface Extent {
  logical: number;
  len: number;
  physical: number;
}

/** An index entry: the subtree covering logical blocks from `logical` is in block `child`. */
export interface ExtentIndex {
  logical: number;
  child: number;
}

export interface ExtentHeader {
  entries: number;
  max: number;
  depth: number;
}

/** Entries that fit a node of `bytes` bytes (60 for the inode root -> 4, 4096 -> 340). */
export function extentCapacity(bytes: number): number {
  return Math.floor((bytes - EXTENT_HEADER_SIZE) / EXTENT_ENTRY_SIZE);
}

/** Encodes a node (header plus entries) into `out` at `offset`; the node spans `nodeBytes`. */
export function encodeExtentNodeInto(
  entries: readonly Extent[] | readonly ExtentIndex[],
  depth: number,
  out: Uint8Array,
  offset: number,
  nodeBytes: number,
): void {
  const max = extentCapacity(nodeBytes);
  if (entries.length > max) throw new RangeError(`extent node holds at most ${max} entries, got ${entries.length}`);
  const v = viewOf(out, offset, nodeBytes);
  v.setUint16(0, EXTENT_MAGIC, true); // eh_magic
  v.setUint16(2, entries.length, true); // eh_entries
  v.setUint16(4, max, true); // eh_max
  v.setUint16(6, depth, true); // eh_depth
  v.setUint32(8, 0, true); // eh_generation
  let at = EXTENT_HEADER_SIZE;
  for (const e of entries) {
    v.setUint32(at, e.logical, true); // ee_block / ei_block
    if (depth === 0) {
      const x = e as Extent;
      v.setUint16(at + 4, x.len, true); // ee_len
      v.setUint16(at + 6, Math.floor(x.physical / 2 ** 32), true); // ee_start_hi
      v.setUint32(at + 8, x.physical % 2 ** 32, true); // ee_start_lo
    } else {
      const x = e as ExtentIndex;
      v.setUint32(at + 4, x.child % 2 ** 32, true); // ei_leaf_lo
      v.setUint16(at + 8, Math.floor(x.child / 2 ** 32), true); // ei_leaf_hi
      v.setUint16(at + 10, 0, true); // ei_unused
    }
    at += EXTENT_ENTRY_SIZE;
  }
}

/** A decoded node: a leaf (depth 0) with extents, or an index node with children. */
export type ExtentNode = { header: ExtentHeader; leaf: true; extents: Extent[] } | { header: ExtentHeader; leaf: false; indexes: ExtentIndex[] };

/** Decodes a node; a bad magic or an entry count above eh_max is FORMAT_INVALID. */
export function decodeExtentNode(bytes: Uint8Array, offset = 0, nodeBytes = bytes.length - offset): ExtentNode {
  if (nodeBytes < EXTENT_HEADER_SIZE || bytes.length < offset + nodeBytes) {
    throw new VhdError("FORMAT_INVALID", `extent node at ${offset}: truncated`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, nodeBytes);
  const magic = v.getUint16(0, true);
  if (magic !== EXTENT_MAGIC) throw new VhdError("FORMAT_INVALID", `extent node at ${offset}: bad magic 0x${magic.toString(16)}`);
  const header = { entries: v.getUint16(2, true), max: v.getUint16(4, true), depth: v.getUint16(6, true) };
  if (header.entries > header.max || header.max > extentCapacity(nodeBytes)) {
    throw new VhdError("FORMAT_INVALID", `extent node at ${offset}: ${header.entries} entries, max ${header.max}`);
  }
  const list: (Extent | ExtentIndex)[] = [];
  for (let i = 0, at = EXTENT_HEADER_SIZE; i < header.entries; i++, at += EXTENT_ENTRY_SIZE) {
    const logical = v.getUint32(at, true);
    if (header.depth === 0) {
      list.push({ logical, len: v.getUint16(at + 4, true), physical: v.getUint16(at + 6, true) * 2 ** 32 + v.getUint32(at + 8, true) });
    } else {
      list.push({ logical, child: v.getUint32(at + 4, true) + v.getUint16(at + 8, true) * 2 ** 32 });
    }
  }
  return header.depth === 0 ? { header, leaf: true, extents: list as Extent[] } : { header, leaf: false, indexes: list as ExtentIndex[] };
}

let lastView: DataView | undefined;

/** A DataView for the node; reused while the caller keeps encoding into the same small buffer. */
function viewOf(out: Uint8Array, offset: number, length: number): DataView {
  if (lastView && lastView.buffer === out.buffer && lastView.byteOffset === out.byteOffset + offset && lastView.byteLength === length) return lastView;
  lastView = new DataView(out.buffer, out.byteOffset + offset, length);
  return lastView;
}
