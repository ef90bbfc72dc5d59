import { describe, expect, it } from "vitest";
import { decodeDirBlock, direntSize, DirentType, encodeDirBlocks, type Dirent } from "./dirent.js";

const name = (s: string) => Buffer.from(s, "latin1");

describe("directory entries", () => {
  it("pads names to 4 bytes and stretches the last entry to the block end", () => {
    const entries: Dirent[] = [
      { inode: 2, name: name("."), fileType: DirentType.DIR },
      { inode: 2, name: name(".."), fileType: DirentType.DIR },
      { inode: 12, name: name("hello"), fileType: DirentType.REG_FILE },
    ];
    const out = encodeDirBlocks(entries, 4096);
    expect(out.length).toBe(4096);
    const v = new DataView(out.buffer);
    expect(v.getUint16(4, true)).toBe(12); // "." -> 8 + 1 rounded to 12
    expect(v.getUint16(12 + 4, true)).toBe(12);
    expect(v.getUint16(24 + 4, true)).toBe(4096 - 24);
    expect(decodeDirBlock(out).map((d) => [d.inode, Buffer.from(d.name).toString("latin1"), d.fileType])).toEqual([
      [2, ".", 2],
      [2, "..", 2],
      [12, "hello", 1],
    ]);
  });

  it("never splits an entry across blocks", () => {
    const entries = Array.from({ length: 1000 }, (_, i) => ({ inode: 100 + i, name: name(`file-${String(i).padStart(40, "0")}`), fileType: 1 }));
    const out = encodeDirBlocks(entries, 4096);
    const perBlock = Math.floor(4096 / direntSize(45));
    expect(out.length / 4096).toBe(Math.ceil(1000 / perBlock));
    const decoded = [];
    for (let b = 0; b < out.length; b += 4096) decoded.push(...decodeDirBlock(out.subarray(b, b + 4096)));
    expect(decoded.map((d) => d.inode)).toEqual(entries.map((e) => e.inode));
  });

  it("rejects a rec_len that runs past the block", () => {
    const out = encodeDirBlocks([{ inode: 5, name: name("x"), fileType: 1 }], 4096);
    new DataView(out.buffer).setUint16(4, 8000, true);
    expect(() => decodeDirBlock(out)).toThrow(/bad rec_len/);
  });
});
