import { beforeAll, describe, expect, it } from "vitest";
import { decodeVhdxBatEntry, encodeVhdxBatEntry, isSectorBitmapIndex, payloadBatIndex, sectorBitmapBatIndex, vhdxBatGeometry, vhdxBatRegionLength, VhdxPayloadState } from "./vhdx-bat.js";
import { qemuVhdxFixtures } from "./vhdx-qemu-fixture.js";

const MiB = 1024 * 1024;
let created: Buffer;
let converted: Buffer;
beforeAll(() => {
  ({ created, converted } = qemuVhdxFixtures());
});

describe("VHDX BAT entries", () => {
  it("decodes qemu's entries: ZERO blocks after create, FULLY_PRESENT at 8, 16, 24 MiB after convert", () => {
    const bat = 2 * MiB; // qemu's BAT region
    expect(decodeVhdxBatEntry(created, bat)).toEqual({ state: VhdxPayloadState.ZERO, fileOffsetMB: 0, reserved: 0 });
    const entries = [0, 1, 2, 3].map((i) => decodeVhdxBatEntry(converted, bat + i * 8));
    expect(entries).toEqual([
      { state: 6, fileOffsetMB: 8, reserved: 0 },
      { state: 6, fileOffsetMB: 16, reserved: 0 },
      { state: 6, fileOffsetMB: 24, reserved: 0 },
      { state: 0, fileOffsetMB: 0, reserved: 0 },
    ]);
    for (let i = 0; i < 3; i++) expect(Buffer.from(encodeVhdxBatEntry(entries[i]!)).equals(converted.subarray(bat + i * 8, bat + i * 8 + 8))).toBe(true);
  });

  it("splits FileOffsetMB across the two 32-bit halves (44 bits from bit 20)", () => {
    const big = 2 ** 44 - 1;
    expect(Buffer.from(encodeVhdxBatEntry({ state: 6, fileOffsetMB: big })).toString("hex")).toBe("0600f0ffffffffff");
    expect(decodeVhdxBatEntry(encodeVhdxBatEntry({ state: 7, fileOffsetMB: 4097, reserved: 5 }))).toEqual({ state: 7, fileOffsetMB: 4097, reserved: 5 });
    expect(decodeVhdxBatEntry(encodeVhdxBatEntry({ state: 6, fileOffsetMB: big })).fileOffsetMB).toBe(big);
    expect(() => encodeVhdxBatEntry({ state: 6, fileOffsetMB: 2 ** 44 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});

describe("VHDX BAT geometry", () => {
  it("computes the chunk ratio and entry counts of the spec's formulas", () => {
    // 512-byte sectors: a chunk is 2^23 x 512 = 4 GiB, so 4096 blocks of 1 MiB per bitmap entry.
    const g = vhdxBatGeometry({ virtualSize: 20 * 1000 ** 3, blockSize: MiB, logicalSectorSize: 512 });
    expect(g).toMatchObject({ chunkRatio: 4096, dataBlocksCount: 19074, sectorBitmapBlocksCount: 5, totalBatEntries: 19074 + 4 });
    expect(vhdxBatRegionLength(g)).toBe(MiB);
    // Differencing disks cover whole chunks.
    expect(vhdxBatGeometry({ virtualSize: 20 * 1000 ** 3, blockSize: MiB, logicalSectorSize: 512, hasParent: true }).totalBatEntries).toBe(5 * 4097);
    expect(vhdxBatGeometry({ virtualSize: 64 * MiB, blockSize: 8 * MiB, logicalSectorSize: 4096 })).toMatchObject({ chunkRatio: 4096, dataBlocksCount: 8, totalBatEntries: 8 });
    // Exactly one chunk: no bitmap entry is needed after the last payload entry.
    expect(vhdxBatGeometry({ virtualSize: 4 * 1024 * MiB, blockSize: MiB, logicalSectorSize: 512 }).totalBatEntries).toBe(4096);
    expect(vhdxBatGeometry({ virtualSize: 4 * 1024 * MiB + 512, blockSize: MiB, logicalSectorSize: 512 }).totalBatEntries).toBe(4098);
    expect(vhdxBatRegionLength({ totalBatEntries: MiB / 8 + 1 })).toBe(2 * MiB);
  });

  it("interleaves one sector bitmap entry after each chunk's payload entries", () => {
    const g = { chunkRatio: 4 };
    expect([0, 1, 2, 3, 4, 5, 8].map((b) => payloadBatIndex(g, b))).toEqual([0, 1, 2, 3, 5, 6, 10]);
    expect([0, 1].map((c) => sectorBitmapBatIndex(g, c))).toEqual([4, 9]);
    expect([3, 4, 5, 9].map((i) => isSectorBitmapIndex(g, i))).toEqual([false, true, false, true]);
  });
});
