// GUIDs as MS-VHDX stores them: 16 bytes in Microsoft's mixed-endian layout (Data1 u32,
// Data2 u16, Data3 u16 little-endian, then Data4's 8 bytes in order). We carry them as the
// lowercase canonical string so decoded records compare with `toEqual` and print readably.
import { createHash, randomBytes } from "node:crypto";
import { VhdError } from "../errors.js";

/** A GUID in canonical form, lowercase: `2dc27766-f623-4200-9d64-115e9bfd4a08`. */
export type Guid = string;

/** The all-zero GUID (an empty LogGuid means "no log to replay"). */
export const ZERO_GUID: Guid = "00000000-0000-0000-0000-000000000000";

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Reads the 16-byte on-disk GUID at `offset`. */
export function decodeGuid(bytes: Uint8Array, offset = 0): Guid {
  const b = bytes.subarray(offset, offset + 16);
  if (b.length !== 16) throw new VhdError("FORMAT_INVALID", `GUID at ${offset}: need 16 bytes, got ${b.length}`);
  const h = (i: number) => b[i]!.toString(16).padStart(2, "0");
  // Data1..Data3 are little-endian integers, so their bytes print reversed.
  return `${h(3)}${h(2)}${h(1)}${h(0)}-${h(5)}${h(4)}-${h(7)}${h(6)}-${h(8)}${h(9)}-${h(10)}${h(11)}${h(12)}${h(13)}${h(14)}${h(15)}`;
}

/** Writes `guid` (any case) at `offset` of `out` in the on-disk layout. */
export function encodeGuid(guid: Guid, out: Uint8Array = new Uint8Array(16), offset = 0): Uint8Array {
  const g = guid.toLowerCase();
  if (!GUID_RE.test(g)) throw new VhdError("INVALID_ARGUMENT", `not a GUID: ${JSON.stringify(guid)}`);
  const hex = g.replace(/-/g, "");
  const byte = (i: number) => parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  const order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
  for (let i = 0; i < 16; i++) out[offset + i] = byte(order[i]!);
  return out;
}

/** True for the all-zero GUID. */
export function isZeroGuid(guid: Guid): boolean {
  return guid === ZERO_GUID;
}

/** Formats 16 random-or-derived bytes as an RFC 4122 version-4 GUID (variant and version bits set). */
function v4FromBytes(raw: Uint8Array): Guid {
  const b = Uint8Array.from(raw.subarray(0, 16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = Buffer.from(b).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A fresh random version-4 GUID. */
export function randomGuid(): Guid {
  return v4FromBytes(randomBytes(16));
}

/**
 * A version-4-shaped GUID derived from `seed` and `label` with SHA-256, so the same seed always
 * gives the same GUIDs (deterministic images) while each label (file write, data write, disk id)
 * still gets its own.
 */
export function derivedGuid(seed: string | Uint8Array, label: string): Guid {
  const h = createHash("sha256");
  h.update(typeof seed === "string" ? Buffer.from(seed, "utf8") : seed);
  h.update("\0lcow-vhdx\0");
  h.update(label);
  return v4FromBytes(h.digest());
}

/** Region table GUIDs (MS-VHDX 2.2.3.2, "Known Regions"). */
export const VhdxRegionGuid = {
  /** The block allocation table. */
  BAT: "2dc27766-f623-4200-9d64-115e9bfd4a08",
  /** The metadata region. */
  METADATA: "8b7ca206-4790-4b9a-b8fe-575f050f886e",
} as const;

/** Metadata item GUIDs (MS-VHDX 2.6.2, "Known Metadata Items"). */
export const VhdxMetadataGuid = {
  /** Block size, LeaveBlocksAllocated, HasParent. */
  FILE_PARAMETERS: "caa16737-fa36-4d43-b3b6-33f0aa44e76b",
  /** Virtual disk size in bytes. */
  VIRTUAL_DISK_SIZE: "2fa54224-cd1b-4876-b211-5dbed83bf4b8",
  /** The disk's identity, which SCSI Page 83 reports. */
  VIRTUAL_DISK_ID: "beca12ab-b2e6-4523-93ef-c309e000c746",
  /** 512 or 4096. */
  LOGICAL_SECTOR_SIZE: "8141bf1d-a96f-4709-ba47-f233a8faab5f",
  /** 512 or 4096. */
  PHYSICAL_SECTOR_SIZE: "cda348c7-445d-4471-9cc9-e9885251c556",
  /** Present only in differencing disks. */
  PARENT_LOCATOR: "a8d35f2d-b30b-454d-abf7-d3d84834ab0c",
} as const;
