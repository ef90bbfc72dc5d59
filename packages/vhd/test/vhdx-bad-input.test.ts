// Bad VHDX input: each case is a valid file of ours with one structure broken, and must be a
// VhdError naming that structure (or, for one corrupt header, a note).
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeVhdxBatEntry, VhdxPayloadState } from "../src/format/vhdx-bat.js";
import { decodeVhdxHeader, encodeVhdxHeader, VHDX_HEADER_OFFSETS, VHDX_HEADER_SIZE } from "../src/format/vhdx-header.js";
import { encodeVhdxFileParameters, encodeVhdxMetadataTable, decodeVhdxMetadataTable, encodeVhdxVirtualDiskSize, VHDX_METADATA_TABLE_SIZE } from "../src/format/vhdx-metadata.js";
import { decodeVhdxRegionTable, encodeVhdxRegionTable, VHDX_REGION_TABLE_OFFSETS, VHDX_REGION_TABLE_SIZE, type VhdxRegionEntry } from "../src/format/vhdx-region-table.js";
import { VhdxMetadataGuid, VhdxRegionGuid } from "../src/format/vhdx-guid.js";
import { isVhdError } from "../src/errors.js";
import { createVhdx, openVhdxSource } from "../src/vhdx/index.js";
import { makeTempDir } from "./harness/tmp.js";
import { firstDiff, randomBytesSeeded, readAll } from "./vhdx-helpers.js";

const MiB = 1024 * 1024;
// Our layout: log 1 MiB, metadata 2 MiB, BAT 3 MiB, payload from 4 MiB.
const META = 2 * MiB;
const BAT = 3 * MiB;
const SIZE = 8 * MiB;
let dir: string;
let base: Buffer;
let model: Uint8Array;

beforeAll(async () => {
  dir = await makeTempDir("vhdx-bad");
  const file = join(dir, "base.vhdx");
  const sink = await createVhdx(file, { virtualSize: SIZE, seed: "bad" });
  model = new Uint8Array(SIZE);
  for (const block of [0, 2, 5]) {
    const d = randomBytesSeeded(MiB, block);
    model.set(d, block * MiB);
    await sink.write(d, block * MiB);
  }
  await sink.close();
  base = await readFile(file);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
/** Writes a patched copy of the base file and opens it. */
async function openPatched(patch: (b: Buffer) => Buffer | void) {
  const bytes = Buffer.from(base);
  const out = patch(bytes) ?? bytes;
  const file = join(dir, `case-${n++}.vhdx`);
  await writeFile(file, out);
  return openVhdxSource(file);
}

async function expectError(patch: (b: Buffer) => Buffer | void, message: RegExp) {
  const err = await openPatched(patch).then(
    async ({ source }) => {
      await source.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(isVhdError(err), `expected a VhdError, got ${String(err)}`).toBe(true);
  expect(err).toMatchObject({ code: "FORMAT_INVALID", message: expect.stringMatching(message) });
  return err as { offset?: number };
}

function patchRegions(b: Buffer, edit: (entries: VhdxRegionEntry[]) => VhdxRegionEntry[]): void {
  for (const at of VHDX_REGION_TABLE_OFFSETS) {
    const t = decodeVhdxRegionTable(b.subarray(at, at + VHDX_REGION_TABLE_SIZE));
    b.set(encodeVhdxRegionTable({ entries: edit(t.entries) }), at);
  }
}

function patchHeader(b: Buffer, index: 0 | 1, edit: (h: ReturnType<typeof decodeVhdxHeader>) => Parameters<typeof encodeVhdxHeader>[0]): void {
  const at = VHDX_HEADER_OFFSETS[index];
  b.set(encodeVhdxHeader(edit(decodeVhdxHeader(b.subarray(at, at + VHDX_HEADER_SIZE)))), at);
}

const setBat = (b: Buffer, index: number, e: { state: number; fileOffsetMB: number }): void => void encodeVhdxBatEntry(e, b, BAT + index * 8);
const itemOffset = (b: Buffer, id: string) => META + decodeVhdxMetadataTable(b.subarray(META, META + VHDX_METADATA_TABLE_SIZE)).find((e) => e.itemId === id)!.offset;

describe("VHDX bad input", () => {
  it("the unpatched base file opens cleanly", async () => {
    const { source, notes } = await openPatched(() => {});
    expect(notes).toEqual([]);
    expect(firstDiff(await readAll(source), model)).toBe(-1);
    await source.close();
  });

  it("truncated inside the header section", async () => {
    await expectError((b) => b.subarray(0, 100 * 1024), /truncated before the end of the VHDX header section/);
  });

  it("truncated inside the payload: the BAT entry points outside the file", async () => {
    const err = await expectError((b) => b.subarray(0, b.length - MiB / 2), /BAT entry 5 \(payload block 5\) points to file offset 6291456, outside the file/);
    expect(err.offset).toBe(BAT + 5 * 8);
  });

  it("not a VHDX (bad file identifier)", async () => {
    await expectError((b) => void b.write("vhdXfile", 0, "latin1"), /file identifier: bad signature/);
  });

  it("one corrupt header is a note, and the other header is used", async () => {
    const { source, notes } = await openPatched((b) => void (b[VHDX_HEADER_OFFSETS[1] + 100]! ^= 1));
    expect(notes).toEqual([expect.stringMatching(/^VHDX header 2: .*checksum.*; using header 1$/)]);
    expect(source.info.headerIndex).toBe(0);
    expect(firstDiff(await readAll(source), model)).toBe(-1);
    await source.close();
  });

  it("both headers corrupt", async () => {
    await expectError((b) => {
      b[VHDX_HEADER_OFFSETS[0] + 100]! ^= 1;
      b.write("HEAD", VHDX_HEADER_OFFSETS[1], "latin1");
    }, /both VHDX headers are corrupt \(header 1: .*checksum.*; header 2: .*bad signature/);
  });

  it("a header of another VHDX version", async () => {
    await expectError((b) => patchHeader(b, 1, (h) => ({ ...h, version: 2 })), /header at 131072: Version 2 is not supported/);
  });

  it("one corrupt region table is a note; both are an error", async () => {
    const { source, notes } = await openPatched((b) => void (b[VHDX_REGION_TABLE_OFFSETS[0] + 40]! ^= 1));
    expect(notes).toEqual([expect.stringMatching(/region table 1 corrupt .*; using region table 2/)]);
    await source.close();
    await expectError((b) => {
      b[VHDX_REGION_TABLE_OFFSETS[0] + 40]! ^= 1;
      b[VHDX_REGION_TABLE_OFFSETS[1] + 40]! ^= 1;
    }, /both VHDX region tables are corrupt/);
  });

  it("a region table entry pointing outside the file", async () => {
    const err = await expectError((b) => patchRegions(b, (es) => es.map((e) => (e.guid === VhdxRegionGuid.BAT ? { ...e, fileOffset: 64 * MiB } : e))), /BAT region at file offset 67108864 length 1048576 lies outside the file/);
    expect(err.offset).toBe(64 * MiB);
  });

  it("regions that overlap each other or the log", async () => {
    await expectError((b) => patchRegions(b, (es) => es.map((e) => (e.guid === VhdxRegionGuid.BAT ? { ...e, fileOffset: META } : e))), /BAT region at file offset 2097152 overlaps VHDX metadata region|metadata region at file offset 2097152 overlaps VHDX BAT region/);
    await expectError((b) => patchRegions(b, (es) => es.map((e) => (e.guid === VhdxRegionGuid.METADATA ? { ...e, fileOffset: MiB } : e))), /metadata region at file offset 1048576 overlaps VHDX log/);
  });

  it("an unknown required region, a missing BAT", async () => {
    await expectError((b) => {
      patchRegions(b, (es) => [...es, { guid: "12345678-1234-4234-8234-123456789abc", fileOffset: 7 * MiB, length: MiB, required: true }]);
      return Buffer.concat([b, Buffer.alloc(MiB)]);
    }, /region 12345678-1234-4234-8234-123456789abc is marked required and is not supported/);
    await expectError((b) => patchRegions(b, (es) => es.filter((e) => e.guid !== VhdxRegionGuid.BAT)), /no BAT region/);
  });

  it("a BAT entry pointing outside the file, into the header section, or at another structure", async () => {
    await expectError((b) => setBat(b, 1, { state: VhdxPayloadState.FULLY_PRESENT, fileOffsetMB: 1000 }), /BAT entry 1 \(payload block 1\) points to file offset 1048576000, outside the file/);
    await expectError((b) => setBat(b, 1, { state: VhdxPayloadState.FULLY_PRESENT, fileOffsetMB: 0 }), /BAT entry 1 .* points to file offset 0/);
    await expectError((b) => setBat(b, 1, { state: VhdxPayloadState.FULLY_PRESENT, fileOffsetMB: 3 }), /payload block 1 \(BAT entry 1\) at file offset 3145728 overlaps VHDX BAT region/);
  });

  it("two blocks overlapping in the file", async () => {
    const err = await expectError((b) => setBat(b, 5, { state: VhdxPayloadState.FULLY_PRESENT, fileOffsetMB: 4 }), /payload block 5 \(BAT entry 5\) at file offset 4194304 overlaps/);
    expect(err).toMatchObject({ code: "FORMAT_INVALID" });
  });

  it("BAT states a dynamic disk cannot have: PARTIALLY_PRESENT, reserved 4", async () => {
    await expectError((b) => setBat(b, 1, { state: VhdxPayloadState.PARTIALLY_PRESENT, fileOffsetMB: 0 }), /BAT entry 1 \(payload block 1\): state PARTIALLY_PRESENT belongs to differencing disks/);
    await expectError((b) => setBat(b, 1, { state: 4, fileOffsetMB: 0 }), /state 4 is reserved/);
  });

  it("a differencing disk: HasParent, or a parent locator", async () => {
    await expectError((b) => b.set(encodeVhdxFileParameters({ blockSize: MiB, leaveBlocksAllocated: false, hasParent: true }), itemOffset(b, VhdxMetadataGuid.FILE_PARAMETERS)), /File Parameters has HasParent set: differencing disks are not supported/);
    await expectError((b) => {
      const entries = decodeVhdxMetadataTable(b.subarray(META, META + VHDX_METADATA_TABLE_SIZE));
      entries.push({ itemId: VhdxMetadataGuid.PARENT_LOCATOR, offset: 0x20000, length: 20, isUser: false, isVirtualDisk: false, isRequired: true });
      b.set(encodeVhdxMetadataTable(entries), META);
    }, /Parent Locator is present: differencing disks are not supported/);
  });

  it("a virtual size that is not a multiple of the logical sector size", async () => {
    const err = await expectError((b) => b.set(encodeVhdxVirtualDiskSize(SIZE - 100), itemOffset(b, VhdxMetadataGuid.VIRTUAL_DISK_SIZE)), /Virtual Disk Size: 8388508 is not a positive multiple of the logical sector size 512/);
    expect(err.offset).toBe(itemOffset(base, VhdxMetadataGuid.VIRTUAL_DISK_SIZE));
  });

  it("metadata: a missing required item, an unknown required item, overlapping items, an item outside the region", async () => {
    const edit = (f: (es: ReturnType<typeof decodeVhdxMetadataTable>) => ReturnType<typeof decodeVhdxMetadataTable>) => (b: Buffer) => {
      b.set(encodeVhdxMetadataTable(f(decodeVhdxMetadataTable(b.subarray(META, META + VHDX_METADATA_TABLE_SIZE)))), META);
    };
    await expectError(edit((es) => es.filter((e) => e.itemId !== VhdxMetadataGuid.VIRTUAL_DISK_SIZE)), /Virtual Disk Size is missing/);
    await expectError(edit((es) => [...es, { itemId: "12345678-1234-4234-8234-123456789abc", offset: 0x20000, length: 4, isUser: false, isVirtualDisk: false, isRequired: true }]), /item 12345678-1234-4234-8234-123456789abc is marked required/);
    await expectError(edit((es) => es.map((e) => (e.itemId === VhdxMetadataGuid.LOGICAL_SECTOR_SIZE ? { ...e, offset: 0x10004 } : e))), /overlaps item/);
    await expectError(edit((es) => es.map((e) => (e.itemId === VhdxMetadataGuid.LOGICAL_SECTOR_SIZE ? { ...e, offset: MiB - 2 } : e))), /lies outside the metadata region/);
  });

  it("a BAT region too small for the virtual size", async () => {
    await expectError((b) => b.set(encodeVhdxVirtualDiskSize(200 * 1024 * MiB), itemOffset(b, VhdxMetadataGuid.VIRTUAL_DISK_SIZE)), /BAT region at file offset 3145728 holds 131072 entries, 209*\d+ needed/);
  });
});
