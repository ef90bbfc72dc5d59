import { beforeAll, describe, expect, it } from "vitest";
import { decodeVhdxFileIdentifier, encodeVhdxFileIdentifier, VHDX_FILE_IDENTIFIER_SIZE } from "./vhdx-file-identifier.js";
import { decodeVhdxHeader, encodeVhdxHeader, VHDX_HEADER_OFFSETS, VHDX_HEADER_SIZE } from "./vhdx-header.js";
import { qemuVhdxFixtures } from "./vhdx-qemu-fixture.js";

let created: Buffer;
beforeAll(() => {
  ({ created } = qemuVhdxFixtures());
});

describe("VHDX file type identifier", () => {
  it("decodes qemu's identifier (signature, UTF-16 creator)", () => {
    expect(decodeVhdxFileIdentifier(created).creator).toMatch(/^QEMU v/);
  });

  it("round-trips and rejects a wrong signature", () => {
    const bytes = encodeVhdxFileIdentifier({ creator: "lcow" });
    expect(bytes.length).toBe(VHDX_FILE_IDENTIFIER_SIZE);
    expect(Buffer.from(bytes.subarray(0, 16)).toString("hex")).toBe("7668647866696c656c0063006f007700"); // "vhdxfile" then UTF-16 "lcow"
    expect(decodeVhdxFileIdentifier(bytes)).toEqual({ creator: "lcow" });
    const bad = bytes.slice();
    bad[0] = 0x56;
    expect(() => decodeVhdxFileIdentifier(bad)).toThrow(expect.objectContaining({ code: "FORMAT_INVALID" }));
  });
});

describe("VHDX header", () => {
  it("decodes both of qemu's headers and re-encodes them byte for byte", () => {
    const [h1, h2] = VHDX_HEADER_OFFSETS.map((at) => decodeVhdxHeader(created.subarray(at, at + VHDX_HEADER_SIZE), at));
    expect(h1).toMatchObject({ version: 1, logVersion: 0, logOffset: 1024 * 1024, logLength: 1024 * 1024, logGuid: "00000000-0000-0000-0000-000000000000" });
    // qemu writes the two copies one sequence number apart.
    expect(h2!.sequenceNumber - h1!.sequenceNumber).toBe(1n);
    for (const at of VHDX_HEADER_OFFSETS) {
      const original = created.subarray(at, at + VHDX_HEADER_SIZE);
      expect(Buffer.from(encodeVhdxHeader(decodeVhdxHeader(original))).equals(original)).toBe(true);
    }
  });

  it("puts each field at the spec's offset", () => {
    const bytes = encodeVhdxHeader({
      sequenceNumber: 0x0102030405060708n,
      fileWriteGuid: "11111111-2222-3333-4444-555555555555",
      dataWriteGuid: "66666666-7777-8888-9999-aaaaaaaaaaaa",
      logGuid: "00000000-0000-0000-0000-000000000001",
      logVersion: 0,
      version: 1,
      logLength: 0x100000,
      logOffset: 0x200000,
    });
    const hex = Buffer.from(bytes.subarray(0, 0x50)).toString("hex");
    expect(hex.slice(0, 8)).toBe("68656164"); // "head"
    expect(hex.slice(16, 32)).toBe("0807060504030201"); // SequenceNumber
    expect(hex.slice(32, 64)).toBe("11111111".match(/../g)!.reverse().join("") + "22223333".replace(/(..)(..)(..)(..)/, "$2$1$4$3") + "4444555555555555");
    expect(hex.slice(0x40 * 2)).toBe("0000" + "0100" + "00001000" + "0000200000000000"); // LogVersion, Version, LogLength, LogOffset
  });

  it("rejects a bad signature, a flipped bit (CRC-32C) and short input", () => {
    const good = created.subarray(VHDX_HEADER_OFFSETS[0], VHDX_HEADER_OFFSETS[0] + VHDX_HEADER_SIZE);
    const flipped = Uint8Array.from(good);
    flipped[4000]! ^= 0x10; // in the reserved tail: the checksum covers the whole 4 KiB
    expect(() => decodeVhdxHeader(flipped, 65536)).toThrow(/header at 65536: checksum/);
    const sig = Uint8Array.from(good);
    sig[0] = 0;
    expect(() => decodeVhdxHeader(sig)).toThrow(/signature/);
    expect(() => decodeVhdxHeader(good.subarray(0, 100))).toThrow(expect.objectContaining({ code: "FORMAT_INVALID" }));
  });
});
