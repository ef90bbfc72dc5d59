import { describe, expect, it } from "vitest";
import { decodeDevice, decodeInode, decodeTime, encodeDevice, encodeInode, encodeTime, EXT4_TIME_MAX, EXT4_TIME_MIN, FileMode, INODE_SIZE, type Inode } from "./inode.js";

const sample: Inode = {
  mode: FileMode.S_IFREG | 0o4755,
  uid: 0x12345678,
  gid: 70000,
  size: 9 * 2 ** 30 + 5,
  atime: { sec: 1, nsec: 2 },
  ctime: { sec: -1, nsec: 999_999_999 },
  mtime: { sec: 2 ** 32 + 7, nsec: 123_456_789 },
  crtime: { sec: 0, nsec: 0 },
  dtime: 0,
  linksCount: 3,
  blocks: 2 ** 33,
  flags: 0x80000,
  block: new Uint8Array(60).map((_, i) => i),
  generation: 9,
  fileAcl: 2 ** 40 + 3,
  extraIsize: 32,
  xattrArea: new Uint8Array(INODE_SIZE - 160).fill(0xab),
};

describe("inode", () => {
  it("round-trips every field, including the split high halves", () => {
    expect(decodeInode(encodeInode(sample))).toEqual(sample);
  });

  it("puts fields at the kernel's offsets", () => {
    const bytes = encodeInode(sample);
    const v = new DataView(bytes.buffer);
    expect(v.getUint16(0x00, true)).toBe(sample.mode);
    expect(v.getUint16(0x02, true) | (v.getUint16(0x78, true) << 16)).toBe(sample.uid | 0);
    expect(v.getUint32(0x6c, true)).toBe(2); // i_size_high: 9 GiB / 4 GiB
    expect(v.getUint16(0x80, true)).toBe(32); // i_extra_isize
    expect(bytes[0x28 + 59]).toBe(59); // last byte of i_block
  });

  it("encodes times before 1970, after 2038 and with nanoseconds as the kernel does", () => {
    for (const t of [{ sec: -1, nsec: 5 }, { sec: EXT4_TIME_MIN, nsec: 0 }, { sec: 2 ** 31, nsec: 1 }, { sec: EXT4_TIME_MAX, nsec: 999_999_999 }, { sec: 0, nsec: 0 }]) {
      const { base, extra } = encodeTime(t);
      expect(decodeTime(base, extra)).toEqual(t);
    }
    // Pre-1970: the low word is the two's complement, epoch bits stay 0.
    expect(encodeTime({ sec: -2, nsec: 0 })).toEqual({ base: 0xfffffffe, extra: 0 });
    // 2038+: epoch bit 1 set.
    expect(encodeTime({ sec: 2 ** 31, nsec: 0 }).extra & 3).toBe(1);
  });

  it("encodes device numbers in the old and the new form", () => {
    const small = encodeDevice(8, 1);
    expect(new DataView(small.buffer).getUint32(0, true)).toBe(0x0801);
    expect(decodeDevice(small)).toEqual({ major: 8, minor: 1 });
    const big = encodeDevice(259, 70000);
    expect(new DataView(big.buffer).getUint32(0, true)).toBe(0);
    expect(decodeDevice(big)).toEqual({ major: 259, minor: 70000 });
  });
});
