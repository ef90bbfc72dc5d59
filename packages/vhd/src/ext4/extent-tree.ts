// Builds an extent tree over a file's extents: up to 4 fit the inode's i_block; beyond that,
// leaf blocks of 340 extents, and index levels until the root fits 4 entries again.
import { encodeExtentNodeInto, extentCapacity, type Extent, type ExtentIndex } from "../format/extent.js";
import { I_BLOCK_SIZE } from "../format/inode.js";

export interface ExtentTree {
  /** The 60 bytes for i_block. */
  root: Uint8Array;
  /** Tree blocks to write, in allocation order. */
  nodes: { block: number; bytes: Uint8Array }[];
}

/** `allocate()` returns the next free block number; it is called once per tree block, in order. */
export function buildExtentTree(extents: readonly Extent[], blockSize: number, allocate: () => number): ExtentTree {
  const root = new Uint8Array(I_BLOCK_SIZE);
  const rootCapacity = extentCapacity(I_BLOCK_SIZE);
  if (extents.length <= rootCapacity) {
    encodeExtentNodeInto(extents, 0, root, 0, I_BLOCK_SIZE);
    return { root, nodes: [] };
  }
  const perBlock = extentCapacity(blockSize);
  const nodes: ExtentTree["nodes"] = [];
  let depth = 0;
  let level: readonly (Extent | ExtentIndex)[] = extents;
  while (level.length > rootCapacity) {
    const parents: ExtentIndex[] = [];
    for (let i = 0; i < level.length; i += perBlock) {
      const slice = level.slice(i, i + perBlock);
      const bytes = new Uint8Array(blockSize);
      encodeExtentNodeInto(slice as Extent[] | ExtentIndex[], depth, bytes, 0, blockSize);
      const block = allocate();
      nodes.push({ block, bytes });
      parents.push({ logical: slice[0]!.logical, child: block });
    }
    level = parents;
    depth++;
  }
  encodeExtentNodeInto(level as ExtentIndex[], depth, root, 0, I_BLOCK_SIZE);
  return { root, nodes };
}
