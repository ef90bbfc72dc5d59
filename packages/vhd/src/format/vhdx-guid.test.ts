import { describe, expect, it } from "vitest";
import { decodeGuid, derivedGuid, encodeGuid, randomGuid, VhdxMetadataGuid, VhdxRegionGuid, ZERO_GUID } from "./vhdx-guid.js";

describe("VHDX GUIDs", () => {
  it("encode in Microsoft's mixed-endian layout (bytes as qemu-img writes the BAT region GUID)", () => {
    expect(Buffer.from(encodeGuid(VhdxRegionGuid.BAT)).toString("hex")).toBe("6677c22d23f600429d64115e9bfd4a08");
    expect(Buffer.from(encodeGuid(VhdxRegionGuid.METADATA)).toString("hex")).toBe("06a27c8b90479a4bb8fe575f050f886e");
    expect(Buffer.from(encodeGuid(VhdxMetadataGuid.FILE_PARAMETERS)).toString("hex")).toBe("3767a1ca36fa434db3b633f0aa44e76b");
  });

  it("decode back to the canonical lowercase string, also from upper case input", () => {
    for (const g of [...Object.values(VhdxRegionGuid), ...Object.values(VhdxMetadataGuid), ZERO_GUID]) {
      expect(decodeGuid(encodeGuid(g.toUpperCase()))).toBe(g);
    }
    const out = new Uint8Array(20);
    encodeGuid(VhdxRegionGuid.BAT, out, 4);
    expect(decodeGuid(out, 4)).toBe(VhdxRegionGuid.BAT);
  });

  it("derives the same version-4 GUID from the same seed and label, different ones otherwise", () => {
    const a = derivedGuid("seed", "FileWriteGuid");
    expect(a).toBe(derivedGuid(Buffer.from("seed"), "FileWriteGuid"));
    expect(a).not.toBe(derivedGuid("seed", "DataWriteGuid"));
    expect(a).not.toBe(derivedGuid("seed2", "FileWriteGuid"));
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(randomGuid()).not.toBe(randomGuid());
  });

  it("rejects malformed GUID strings and short input", () => {
    expect(() => encodeGuid("not-a-guid")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => decodeGuid(new Uint8Array(8))).toThrow(expect.objectContaining({ code: "FORMAT_INVALID" }));
  });
});
