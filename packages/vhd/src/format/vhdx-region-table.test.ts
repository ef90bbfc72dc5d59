import { beforeAll, describe, expect, it } from "vitest";
import { VhdxRegionGuid } from "./vhdx-guid.js";
import { decodeVhdxRegionTable, encodeVhdxRegionTable, VHDX_REGION_TABLE_OFFSETS, VHDX_REGION_TABLE_SIZE } from "./vhdx-region-table.js";
import { qemuVhdxFixtures } from "./vhdx-qemu-fixture.js";

let created: Buffer;
beforeAll(() => {
  ({ created } = qemuVhdxFixtures());
});

describe("VHDX region table", () => {
  it("decodes qemu's two copies (BAT at 2 MiB, metadata at 3 MiB) and re-encodes them byte for byte", () => {
    for (const at of VHDX_REGION_TABLE_OFFSETS) {
      const original = created.subarray(at, at + VHDX_REGION_TABLE_SIZE);
      const t = decodeVhdxRegionTable(original, at);
      // qemu marks its regions not required; Hyper-V marks them required. Both are valid.
      expect(t.entries).toEqual([
        { guid: VhdxRegionGuid.BAT, fileOffset: 2 * 1024 * 1024, length: 1024 * 1024, required: false },
        { guid: VhdxRegionGuid.METADATA, fileOffset: 3 * 1024 * 1024, length: 1024 * 1024, required: false },
      ]);
      expect(Buffer.from(encodeVhdxRegionTable(t)).equals(original)).toBe(true);
    }
  });

  it("puts entry fields at the spec's offsets", () => {
    const bytes = encodeVhdxRegionTable({ entries: [{ guid: VhdxRegionGuid.BAT, fileOffset: 0x300000, length: 0x100000, required: true }] });
    const hex = Buffer.from(bytes.subarray(0, 48)).toString("hex");
    expect(hex.slice(0, 8)).toBe("72656769"); // "regi"
    expect(hex.slice(16, 32)).toBe("0100000000000000"); // EntryCount, Reserved
    expect(hex.slice(64)).toBe("0000300000000000" + "00001000" + "01000000"); // FileOffset, Length, Required
  });

  it("rejects a bad checksum and an EntryCount over 2047", () => {
    const good = encodeVhdxRegionTable({ entries: [] });
    const flipped = good.slice();
    flipped[60000]! ^= 1;
    expect(() => decodeVhdxRegionTable(flipped, 196608)).toThrow(/region table at 196608: checksum/);
    expect(() => encodeVhdxRegionTable({ entries: new Array(2048).fill({ guid: VhdxRegionGuid.BAT, fileOffset: 0, length: 0, required: false }) })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
  });
});
