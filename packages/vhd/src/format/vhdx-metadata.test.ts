import { beforeAll, describe, expect, it } from "vitest";
import { VhdxMetadataGuid } from "./vhdx-guid.js";
import {
  decodeVhdxFileParameters,
  decodeVhdxMetadataTable,
  decodeVhdxSectorSize,
  decodeVhdxVirtualDiskId,
  decodeVhdxVirtualDiskSize,
  encodeVhdxFileParameters,
  encodeVhdxMetadataTable,
  encodeVhdxSectorSize,
  encodeVhdxVirtualDiskId,
  encodeVhdxVirtualDiskSize,
  VHDX_METADATA_TABLE_SIZE,
} from "./vhdx-metadata.js";
import { qemuVhdxFixtures } from "./vhdx-qemu-fixture.js";

const META = 3 * 1024 * 1024; // where qemu puts the metadata region
let created: Buffer;
beforeAll(() => {
  ({ created } = qemuVhdxFixtures());
});

describe("VHDX metadata table and items", () => {
  it("decodes qemu's table, with the spec's flags per known item, and re-encodes it byte for byte", () => {
    const table = created.subarray(META, META + VHDX_METADATA_TABLE_SIZE);
    const entries = decodeVhdxMetadataTable(table, META);
    expect(entries.map((e) => [e.itemId, e.isUser, e.isVirtualDisk, e.isRequired])).toEqual([
      [VhdxMetadataGuid.FILE_PARAMETERS, false, false, true],
      [VhdxMetadataGuid.VIRTUAL_DISK_SIZE, false, true, true],
      [VhdxMetadataGuid.VIRTUAL_DISK_ID, false, true, true],
      [VhdxMetadataGuid.LOGICAL_SECTOR_SIZE, false, true, true],
      [VhdxMetadataGuid.PHYSICAL_SECTOR_SIZE, false, true, true],
    ]);
    expect(Buffer.from(encodeVhdxMetadataTable(entries)).equals(table)).toBe(true);
    const item = (id: string) => {
      const e = entries.find((x) => x.itemId === id)!;
      return created.subarray(META + e.offset, META + e.offset + e.length);
    };
    // qemu picks 8 MiB blocks for small disks.
    expect(decodeVhdxFileParameters(item(VhdxMetadataGuid.FILE_PARAMETERS))).toEqual({ blockSize: 8 * 1024 * 1024, leaveBlocksAllocated: false, hasParent: false });
    expect(decodeVhdxVirtualDiskSize(item(VhdxMetadataGuid.VIRTUAL_DISK_SIZE))).toBe(64 * 1024 * 1024);
    expect(decodeVhdxSectorSize(item(VhdxMetadataGuid.LOGICAL_SECTOR_SIZE), "Logical")).toBe(512);
    expect(decodeVhdxSectorSize(item(VhdxMetadataGuid.PHYSICAL_SECTOR_SIZE), "Physical")).toBe(512);
    const id = decodeVhdxVirtualDiskId(item(VhdxMetadataGuid.VIRTUAL_DISK_ID));
    expect(Buffer.from(encodeVhdxVirtualDiskId(id)).equals(item(VhdxMetadataGuid.VIRTUAL_DISK_ID))).toBe(true);
  });

  it("encodes items at the spec's offsets and bits", () => {
    expect(Buffer.from(encodeVhdxFileParameters({ blockSize: 1 << 20, leaveBlocksAllocated: true, hasParent: true })).toString("hex")).toBe("0000100003000000");
    expect(Buffer.from(encodeVhdxVirtualDiskSize(20 * 1000 ** 3)).toString("hex")).toBe("00c817a804000000");
    expect(Buffer.from(encodeVhdxSectorSize(4096)).toString("hex")).toBe("00100000");
    const table = encodeVhdxMetadataTable([{ itemId: VhdxMetadataGuid.PARENT_LOCATOR, offset: 0x10000, length: 20, isUser: true, isVirtualDisk: false, isRequired: true }]);
    expect(Buffer.from(table.subarray(0, 12)).toString("latin1").slice(0, 8)).toBe("metadata");
    expect(Buffer.from(table.subarray(0x0a, 0x0c)).toString("hex")).toBe("0100"); // EntryCount
    expect(Buffer.from(table.subarray(0x30, 0x40)).toString("hex")).toBe("00000100" + "14000000" + "05000000" + "00000000"); // Offset, Length, IsUser|IsRequired, Reserved2
  });

  it("rejects bad block sizes, sector sizes, item placement and signature", () => {
    expect(() => decodeVhdxFileParameters(encodeVhdxFileParameters({ blockSize: 3 << 20, leaveBlocksAllocated: false, hasParent: false }))).toThrow(/BlockSize/);
    expect(() => decodeVhdxFileParameters(encodeVhdxFileParameters({ blockSize: 512 << 20, leaveBlocksAllocated: false, hasParent: false }))).toThrow(/BlockSize/);
    expect(() => decodeVhdxSectorSize(encodeVhdxSectorSize(1024), "Logical")).toThrow(/Logical Sector Size: 1024/);
    const base = { itemId: VhdxMetadataGuid.FILE_PARAMETERS, isUser: false, isVirtualDisk: false, isRequired: true };
    expect(() => decodeVhdxMetadataTable(encodeVhdxMetadataTable([{ ...base, offset: 100, length: 8 }]))).toThrow(/Offset 100/);
    expect(() => decodeVhdxMetadataTable(encodeVhdxMetadataTable([{ ...base, offset: 0x10000, length: 2 << 20 }]))).toThrow(/exceeds 1 MiB/);
    expect(decodeVhdxMetadataTable(encodeVhdxMetadataTable([{ ...base, offset: 0, length: 0 }]))).toHaveLength(1);
    const bad = encodeVhdxMetadataTable([]);
    bad[0] = 0;
    expect(() => decodeVhdxMetadataTable(bad)).toThrow(expect.objectContaining({ code: "FORMAT_INVALID" }));
  });
});
