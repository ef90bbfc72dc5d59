import { describe, expect, it } from "vitest";
import { buildExtentTree } from "../ext4/extent-tree.js";
import { decodeExtentNode, encodeExtentNodeInto, extentCapacity, type Extent } from "./extent.js";

describe("extent nodes", () => {
  it("holds 4 entries in i_block and 340 in a 4 KiB block", () => {
    expect(extentCapacity(60)).toBe(4);
    expect(extentCapacity(4096)).toBe(340);
  });

  it("round-trips a leaf with 48-bit physical blocks", () => {
    const extents: Extent[] = [
      { logical: 0, len: 32768, physical: 2 ** 33 + 5 },
      { logical: 40000, len: 1, physical: 7 },
    ];
    const bytes = new Uint8Array(60);
    encodeExtentNodeInto(extents, 0, bytes, 0, 60);
    expect(Buffer.from(bytes.subarray(0, 12)).toString("hex")).toBe("0af30200040000000000" + "0000");
    const node = decodeExtentNode(bytes);
    expect(node.leaf && node.extents).toEqual(extents);
  });

  it("builds index levels when the extents outgrow the inode", () => {
    const extents = Array.from({ length: 1000 }, (_, i) => ({ logical: i * 2, len: 1, physical: 100 + i * 3 }));
    let next = 5000;
    const tree = buildExtentTree(extents, 4096, () => next++);
    expect(tree.nodes).toHaveLength(3); // ceil(1000 / 340) leaves
    const root = decodeExtentNode(tree.root);
    expect(root.header.depth).toBe(1);
    const leaves = tree.nodes.map((n) => decodeExtentNode(n.bytes));
    expect(leaves.flatMap((l) => (l.leaf ? l.extents : []))).toEqual(extents);
    expect(!root.leaf && root.indexes.map((i) => i.child)).toEqual([5000, 5001, 5002]);
  });

  it("rejects a bad magic and an entry count above eh_max", () => {
    expect(() => decodeExtentNode(new Uint8Array(60))).toThrow(/bad magic/);
    const bytes = new Uint8Array(60);
    encodeExtentNodeInto([], 0, bytes, 0, 60);
    new DataView(bytes.buffer).setUint16(2, 9, true);
    expect(() => decodeExtentNode(bytes)).toThrow(expect.objectContaining({ code: "FORMAT_INVALID" }));
  });
});
