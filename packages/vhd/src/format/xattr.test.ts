import { describe, expect, it } from "vitest";
import { decodeInodeXattrs, decodeXattrBlock, encodeInodeXattrs, encodeXattrBlock, splitXattrName, xattrEntryHash } from "./xattr.js";

const v = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

describe("xattrs", () => {
  it("maps names to the kernel's name indexes", () => {
    expect(splitXattrName("user.mime")).toEqual({ index: 1, suffix: v("mime") });
    expect(splitXattrName("security.capability").index).toBe(6);
    expect(splitXattrName("trusted.overlay.opaque").index).toBe(4);
    expect(splitXattrName("system.posix_acl_access")).toEqual({ index: 2, suffix: new Uint8Array(0) });
    expect(() => splitXattrName("bogus.name")).toThrow(/namespace/);
  });

  it("hashes names and values as ext4_xattr_hash_entry", () => {
    // Hand-computed: name "a" -> 0x61; value 01 00 00 00 -> (0x61 << 16) ^ 1.
    expect(xattrEntryHash(v("a"), new Uint8Array([1, 0, 0, 0]))).toBe(((0x61 << 16) ^ 1) >>> 0);
    expect(xattrEntryHash(v("ab"), new Uint8Array(0))).toBe(((0x61 << 5) ^ 0x62) >>> 0);
  });

  it("round-trips the in-inode area with binary values", () => {
    const attrs = [
      { name: "security.capability", value: new Uint8Array([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) },
      { name: "user.a", value: v("x") },
    ];
    const area = encodeInodeXattrs(attrs, 96);
    expect(new DataView(area.buffer).getUint32(0, true)).toBe(0xea020000);
    expect(decodeInodeXattrs(area).sort((a, b) => a.name.localeCompare(b.name))).toEqual(attrs.sort((a, b) => a.name.localeCompare(b.name)));
  });

  it("round-trips a block holding a value of nearly 4 KiB", () => {
    const big = new Uint8Array(4096 - 32 - 16 - 4 - 4).map((_, i) => i & 0xff);
    const block = encodeXattrBlock([{ name: "user.big", value: big }], 4096, 3);
    const { refcount, attrs } = decodeXattrBlock(block);
    expect(refcount).toBe(3);
    expect(attrs).toEqual([{ name: "user.big", value: big }]);
    expect(() => encodeXattrBlock([{ name: "user.big", value: new Uint8Array(4096) }], 4096)).toThrow();
  });

  it("rejects entries that point outside their region", () => {
    const area = encodeInodeXattrs([{ name: "user.a", value: v("xyz") }], 96);
    new DataView(area.buffer).setUint16(4 + 2, 500, true); // e_value_offs
    expect(() => decodeInodeXattrs(area)).toThrow(expect.objectContaining({ code: "FORMAT_INVALID" }));
  });
});
