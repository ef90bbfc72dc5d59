// MS-VHDX 2.2.3 Region Table: two 64 KiB copies, at 192 KiB and 256 KiB, each a 16-byte
// header and up to 2047 32-byte entries locating the BAT, the metadata region and any
// future region.
import { VhdError } from "../errors.js";
import { crc32cWithZeroField, getU64, setU64, signatureAt, viewOf } from "./vhdx-common.js";
import { decodeGuid, encodeGuid, type Guid } from "./vhdx-guid.js";

/** File offsets of region table 1 and region table 2. */
export const VHDX_REGION_TABLE_OFFSETS = [192 * 1024, 256 * 1024] as const;
/** Bytes of one copy; the checksum covers all of it. */
export const VHDX_REGION_TABLE_SIZE = 64 * 1024;
/** "regi". */
export const VHDX_REGION_TABLE_SIGNATURE = "regi";
/** The spec's maximum EntryCount. */
export const VHDX_REGION_TABLE_MAX_ENTRIES = 2047;
const HEADER_SIZE = 16;
const ENTRY_SIZE = 32;

/** One region table entry. */
export interface VhdxRegionEntry {
  guid: Guid;
  /** File offset, a multiple of 1 MiB and at least 1 MiB. */
  fileOffset: number;
  /** Bytes, a multiple of 1 MiB. */
  length: number;
  /** When true, a reader that does not know `guid` must refuse the file. */
  required: boolean;
}

/** A decoded region table. */
export interface VhdxRegionTable {
  entries: VhdxRegionEntry[];
  /** As stored; recomputed on encode. */
  checksum: number;
}

/** Encodes the 64 KiB table; `checksum` is ignored and computed. */
export function encodeVhdxRegionTable(t: Omit<VhdxRegionTable, "checksum">): Uint8Array {
  if (t.entries.length > VHDX_REGION_TABLE_MAX_ENTRIES) throw new VhdError("INVALID_ARGUMENT", `VHDX region table: ${t.entries.length} entries (at most ${VHDX_REGION_TABLE_MAX_ENTRIES})`);
  const out = new Uint8Array(VHDX_REGION_TABLE_SIZE);
  const v = viewOf(out);
  out.set(Buffer.from(VHDX_REGION_TABLE_SIGNATURE, "latin1"), 0x00); // Signature
  v.setUint32(0x08, t.entries.length, true); // EntryCount
  t.entries.forEach((e, i) => {
    const at = HEADER_SIZE + i * ENTRY_SIZE;
    encodeGuid(e.guid, out, at + 0x00); // Guid
    setU64(v, at + 0x10, e.fileOffset); // FileOffset
    v.setUint32(at + 0x18, e.length, true); // Length
    v.setUint32(at + 0x1c, e.required ? 1 : 0, true); // Required
  });
  v.setUint32(0x04, crc32cWithZeroField(out, 0x04), true); // Checksum
  return out;
}

/**
 * Decodes and verifies one copy: signature, CRC-32C over the 64 KiB, EntryCount <= 2047.
 * Placement of the entries is judged by the opener, which knows the file size.
 */
export function decodeVhdxRegionTable(bytes: Uint8Array, offset?: number): VhdxRegionTable {
  const where = offset === undefined ? "VHDX region table" : `VHDX region table at ${offset}`;
  if (bytes.length < VHDX_REGION_TABLE_SIZE) throw new VhdError("FORMAT_INVALID", `${where}: need ${VHDX_REGION_TABLE_SIZE} bytes, got ${bytes.length}`, { offset });
  const b = bytes.subarray(0, VHDX_REGION_TABLE_SIZE);
  const sig = signatureAt(b, 0x00, 4);
  if (sig !== VHDX_REGION_TABLE_SIGNATURE) throw new VhdError("FORMAT_INVALID", `${where}: bad signature ${JSON.stringify(sig)}`, { offset });
  const v = viewOf(b);
  const checksum = v.getUint32(0x04, true);
  const want = crc32cWithZeroField(b, 0x04);
  if (checksum !== want) throw new VhdError("FORMAT_INVALID", `${where}: checksum 0x${checksum.toString(16)} does not match 0x${want.toString(16)}`, { offset });
  const count = v.getUint32(0x08, true); // EntryCount
  if (count > VHDX_REGION_TABLE_MAX_ENTRIES) throw new VhdError("FORMAT_INVALID", `${where}: EntryCount ${count} exceeds ${VHDX_REGION_TABLE_MAX_ENTRIES}`, { offset });
  const entries: VhdxRegionEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = HEADER_SIZE + i * ENTRY_SIZE;
    entries.push({
      guid: decodeGuid(b, at + 0x00),
      fileOffset: getU64(v, at + 0x10, `${where}: entry ${i} FileOffset`, offset),
      length: v.getUint32(at + 0x18, true),
      // Only bit 0 means anything; the other 31 bits are reserved.
      required: (v.getUint32(at + 0x1c, true) & 1) === 1,
    });
  }
  return { entries, checksum };
}
