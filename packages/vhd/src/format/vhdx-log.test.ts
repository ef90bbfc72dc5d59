import { beforeAll, describe, expect, it } from "vitest";
import { decodeVhdxLogDescriptor, decodeVhdxLogEntry, encodeVhdxLogDescriptor, encodeVhdxLogEntry, encodeVhdxLogEntryHeader, decodeVhdxLogEntryHeader, vhdxLogDescriptorSectors } from "./vhdx-log.js";
import { crc32cWithZeroField } from "./vhdx-common.js";
import { qemuVhdxFixtures } from "./vhdx-qemu-fixture.js";

const MiB = 1024 * 1024;
let converted: Buffer;
beforeAll(() => {
  ({ converted } = qemuVhdxFixtures());
});

describe("VHDX log entries", () => {
  it("decodes the entry qemu leaves in its log (a BAT sector update) and re-encodes it byte for byte", () => {
    const log = converted.subarray(MiB, 2 * MiB); // qemu's log region
    const entry = decodeVhdxLogEntry(log, 0);
    expect(entry.header).toMatchObject({ entryLength: 8192, tail: 0, sequenceNumber: 1n, descriptorCount: 1 });
    expect(entry.writes).toHaveLength(1);
    const w = entry.writes[0]!;
    expect(w.fileOffset).toBe(2 * MiB); // the BAT's first sector...
    expect("data" in w && Buffer.from(w.data.subarray(0, 8)).toString("hex")).toBe("0600800000000000"); // ...making block 0 FULLY_PRESENT at 8 MiB
    const { header } = entry;
    const again = encodeVhdxLogEntry({ tail: header.tail, sequenceNumber: header.sequenceNumber, logGuid: header.logGuid, flushedFileOffset: header.flushedFileOffset, lastFileOffset: header.lastFileOffset }, entry.writes);
    expect(Buffer.from(again).equals(log.subarray(0, 8192))).toBe(true);
  });

  it("round-trips zero and data descriptors and headers at the spec's offsets", () => {
    const zero = encodeVhdxLogDescriptor({ kind: "zero", zeroLength: 8192, fileOffset: 4096, sequenceNumber: 9n });
    expect(Buffer.from(zero).toString("hex")).toBe("7a65726f00000000" + "0020000000000000" + "0010000000000000" + "0900000000000000");
    expect(decodeVhdxLogDescriptor(zero)).toEqual({ kind: "zero", zeroLength: 8192, fileOffset: 4096, sequenceNumber: 9n });
    const data = { kind: "data" as const, trailingBytes: 0xdeadbeef, leadingBytes: 0x0102030405060708n, fileOffset: 3 * MiB, sequenceNumber: 2n ** 40n + 3n };
    expect(Buffer.from(encodeVhdxLogDescriptor(data)).toString("hex").slice(0, 32)).toBe("64657363efbeadde0807060504030201");
    expect(decodeVhdxLogDescriptor(encodeVhdxLogDescriptor(data))).toEqual(data);
    const h = { checksum: 7, entryLength: 4096, tail: 4096, sequenceNumber: 5n, descriptorCount: 0, logGuid: "11111111-2222-3333-4444-555555555555", flushedFileOffset: 4 * MiB, lastFileOffset: 5 * MiB };
    expect(decodeVhdxLogEntryHeader(encodeVhdxLogEntryHeader(h))).toEqual(h);
    expect([0, 126, 127, 254, 255].map(vhdxLogDescriptorSectors)).toEqual([1, 1, 2, 2, 3]);
  });

  it("splits data sectors: leading 8 and trailing 4 bytes into the descriptor, sequence number around the data", () => {
    const sector = new Uint8Array(4096).map((_, i) => i & 255);
    const seq = 0x1122334455667788n;
    const writes = [{ fileOffset: 3 * MiB, data: sector }, { fileOffset: 5 * MiB, zeroLength: 4096 * 3 }];
    const bytes = encodeVhdxLogEntry({ tail: 0, sequenceNumber: seq, logGuid: "11111111-2222-3333-4444-555555555555", flushedFileOffset: 8 * MiB, lastFileOffset: 8 * MiB }, writes);
    expect(bytes.length).toBe(8192);
    const ds = bytes.subarray(4096);
    expect(Buffer.from(ds.subarray(0, 8)).toString("hex")).toBe("6461746144332211"); // "data", SequenceHigh (u32 LE)
    expect(Buffer.from(ds.subarray(4092)).toString("hex")).toBe("88776655"); // SequenceLow (u32 LE)
    expect(decodeVhdxLogEntry(bytes).writes).toEqual(writes);
  });

  it("rejects a flipped bit, a descriptor with another sequence number, and a torn data sector", () => {
    const guid = "11111111-2222-3333-4444-555555555555";
    const bytes = encodeVhdxLogEntry({ tail: 0, sequenceNumber: 3n, logGuid: guid, flushedFileOffset: 0, lastFileOffset: 0 }, [{ fileOffset: 0, data: new Uint8Array(4096) }]);
    const flipped = bytes.slice();
    flipped[5000]! ^= 1;
    expect(() => decodeVhdxLogEntry(flipped, 0)).toThrow(/checksum/);
    expect(() => decodeVhdxLogEntry(bytes.subarray(0, 4096))).toThrow(/exceeds/);
    // A torn write: the data sector kept an older sequence number; checksum fixed up so only the sequence check can catch it.
    const torn = encodeVhdxLogEntry({ tail: 0, sequenceNumber: 3n, logGuid: guid, flushedFileOffset: 0, lastFileOffset: 0 }, [{ fileOffset: 0, data: new Uint8Array(4096) }]);
    torn[4096 + 4092] = 2;
    new DataView(torn.buffer).setUint32(4, crc32cWithZeroField(torn, 4), true);
    expect(() => decodeVhdxLogEntry(torn)).toThrow(/carries SequenceNumber 2/);
  });
});
