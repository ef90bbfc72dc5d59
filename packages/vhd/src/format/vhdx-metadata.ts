// MS-VHDX 2.6 Metadata Region: a 64 KiB table (32-byte header, 32-byte entries) followed by
// the items it locates, and the known system items (2.6.2): File Parameters, Virtual Disk
// Size, Virtual Disk ID (Page 83 data), Logical and Physical Sector Size.
import { VhdError } from "../errors.js";
import { getU64, MiB, setU64, signatureAt, viewOf } from "./vhdx-common.js";
import { decodeGuid, encodeGuid, type Guid } from "./vhdx-guid.js";

/** Bytes of the metadata table at the start of the metadata region. */
export const VHDX_METADATA_TABLE_SIZE = 64 * 1024;
/** "metadata". */
export const VHDX_METADATA_SIGNATURE = "metadata";
/** The spec's maximum EntryCount. */
export const VHDX_METADATA_MAX_ENTRIES = 2047;
/** The spec's maximum item Length. */
export const VHDX_METADATA_MAX_ITEM = MiB;
/** Smallest and largest payload block size (2.6.2.1). */
export const VHDX_MIN_BLOCK_SIZE = MiB;
export const VHDX_MAX_BLOCK_SIZE = 256 * MiB;
/** Largest virtual disk (2.6.2.2): 64 TiB. */
export const VHDX_MAX_VIRTUAL_SIZE = 64 * 1024 * 1024 * MiB;
const HEADER_SIZE = 32;
const ENTRY_SIZE = 32;

/** One metadata table entry. */
export interface VhdxMetadataEntry {
  itemId: Guid;
  /** Offset of the item from the start of the metadata region: at least 64 KiB, or 0 with Length 0. */
  offset: number;
  length: number;
  /** User (true) or system (false) metadata. */
  isUser: boolean;
  /** Virtual disk metadata (copied when forking a differencing disk) vs file metadata. */
  isVirtualDisk: boolean;
  /** When true, a reader that does not know `itemId` must refuse the file. */
  isRequired: boolean;
}

/** Encodes the 64 KiB metadata table. */
export function encodeVhdxMetadataTable(entries: readonly VhdxMetadataEntry[]): Uint8Array {
  if (entries.length > VHDX_METADATA_MAX_ENTRIES) throw new VhdError("INVALID_ARGUMENT", `VHDX metadata table: ${entries.length} entries (at most ${VHDX_METADATA_MAX_ENTRIES})`);
  const out = new Uint8Array(VHDX_METADATA_TABLE_SIZE);
  const v = viewOf(out);
  out.set(Buffer.from(VHDX_METADATA_SIGNATURE, "latin1"), 0x00); // Signature
  v.setUint16(0x0a, entries.length, true); // EntryCount
  entries.forEach((e, i) => {
    const at = HEADER_SIZE + i * ENTRY_SIZE;
    encodeGuid(e.itemId, out, at + 0x00); // ItemId
    v.setUint32(at + 0x10, e.offset, true); // Offset
    v.setUint32(at + 0x14, e.length, true); // Length
    v.setUint32(at + 0x18, (e.isUser ? 1 : 0) | (e.isVirtualDisk ? 2 : 0) | (e.isRequired ? 4 : 0), true); // IsUser:1 IsVirtualDisk:1 IsRequired:1
  });
  return out;
}

/**
 * Decodes the metadata table and checks each entry's own constraints (Offset >= 64 KiB or a
 * 0/0 empty item, Length <= 1 MiB). Whether items fit the region and overlap is the opener's
 * job, since it knows the region length. `offset` (of the region in the file) names errors.
 */
export function decodeVhdxMetadataTable(bytes: Uint8Array, offset?: number): VhdxMetadataEntry[] {
  const where = offset === undefined ? "VHDX metadata table" : `VHDX metadata table at ${offset}`;
  if (bytes.length < VHDX_METADATA_TABLE_SIZE) throw new VhdError("FORMAT_INVALID", `${where}: need ${VHDX_METADATA_TABLE_SIZE} bytes, got ${bytes.length}`, { offset });
  const sig = signatureAt(bytes, 0x00, 8);
  if (sig !== VHDX_METADATA_SIGNATURE) throw new VhdError("FORMAT_INVALID", `${where}: bad signature ${JSON.stringify(sig)}`, { offset });
  const v = viewOf(bytes.subarray(0, VHDX_METADATA_TABLE_SIZE));
  const count = v.getUint16(0x0a, true); // EntryCount
  if (count > VHDX_METADATA_MAX_ENTRIES) throw new VhdError("FORMAT_INVALID", `${where}: EntryCount ${count} exceeds ${VHDX_METADATA_MAX_ENTRIES}`, { offset });
  const entries: VhdxMetadataEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = HEADER_SIZE + i * ENTRY_SIZE;
    const flags = v.getUint32(at + 0x18, true);
    const e: VhdxMetadataEntry = {
      itemId: decodeGuid(bytes, at + 0x00),
      offset: v.getUint32(at + 0x10, true),
      length: v.getUint32(at + 0x14, true),
      isUser: (flags & 1) !== 0,
      isVirtualDisk: (flags & 2) !== 0,
      isRequired: (flags & 4) !== 0,
    };
    if (e.length > VHDX_METADATA_MAX_ITEM) throw new VhdError("FORMAT_INVALID", `${where}: item ${e.itemId} Length ${e.length} exceeds 1 MiB`, { offset });
    if (e.length === 0 ? e.offset !== 0 : e.offset < VHDX_METADATA_TABLE_SIZE) {
      throw new VhdError("FORMAT_INVALID", `${where}: item ${e.itemId} Offset ${e.offset} (must be >= 64 KiB, or 0 for an empty item)`, { offset });
    }
    entries.push(e);
  }
  return entries;
}

/** File Parameters item (2.6.2.1), 8 bytes. */
export interface VhdxFileParameters {
  /** Payload block size: a power of two from 1 MiB to 256 MiB. */
  blockSize: number;
  /** Fully provisioned ("fixed") VHDX: blocks must not be unallocated. */
  leaveBlocksAllocated: boolean;
  /** A differencing disk; its parent locator says where the parent is. */
  hasParent: boolean;
}

/** Bytes of each known item. */
export const VHDX_ITEM_SIZE = { fileParameters: 8, virtualDiskSize: 8, virtualDiskId: 16, logicalSectorSize: 4, physicalSectorSize: 4 } as const;

/** Encodes the File Parameters item. */
export function encodeVhdxFileParameters(p: VhdxFileParameters): Uint8Array {
  const out = new Uint8Array(VHDX_ITEM_SIZE.fileParameters);
  const v = viewOf(out);
  v.setUint32(0x00, p.blockSize, true); // BlockSize
  v.setUint32(0x04, (p.leaveBlocksAllocated ? 1 : 0) | (p.hasParent ? 2 : 0), true); // LeaveBlocksAllocated:1 HasParent:1
  return out;
}

/** Decodes the File Parameters item and checks BlockSize (power of two, 1..256 MiB). */
export function decodeVhdxFileParameters(bytes: Uint8Array, offset?: number): VhdxFileParameters {
  if (bytes.length < VHDX_ITEM_SIZE.fileParameters) throw new VhdError("FORMAT_INVALID", `VHDX metadata item File Parameters: need 8 bytes, got ${bytes.length}`, { offset });
  const v = viewOf(bytes);
  const blockSize = v.getUint32(0x00, true);
  const flags = v.getUint32(0x04, true);
  if (blockSize < VHDX_MIN_BLOCK_SIZE || blockSize > VHDX_MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new VhdError("FORMAT_INVALID", `VHDX metadata item File Parameters: BlockSize ${blockSize} is not a power of two from 1 MiB to 256 MiB`, { offset });
  }
  return { blockSize, leaveBlocksAllocated: (flags & 1) !== 0, hasParent: (flags & 2) !== 0 };
}

/** Encodes the Virtual Disk Size item. */
export function encodeVhdxVirtualDiskSize(size: number): Uint8Array {
  const out = new Uint8Array(VHDX_ITEM_SIZE.virtualDiskSize);
  setU64(viewOf(out), 0x00, size); // VirtualDiskSize
  return out;
}

/** Decodes the Virtual Disk Size item (range checks against the sector size are the opener's). */
export function decodeVhdxVirtualDiskSize(bytes: Uint8Array, offset?: number): number {
  if (bytes.length < VHDX_ITEM_SIZE.virtualDiskSize) throw new VhdError("FORMAT_INVALID", `VHDX metadata item Virtual Disk Size: need 8 bytes, got ${bytes.length}`, { offset });
  return getU64(viewOf(bytes), 0x00, "VHDX metadata item Virtual Disk Size", offset);
}

/** Encodes the Virtual Disk ID item (the Page 83 identity). */
export function encodeVhdxVirtualDiskId(id: Guid): Uint8Array {
  return encodeGuid(id); // VirtualDiskId
}

/** Decodes the Virtual Disk ID item. */
export function decodeVhdxVirtualDiskId(bytes: Uint8Array, offset?: number): Guid {
  if (bytes.length < VHDX_ITEM_SIZE.virtualDiskId) throw new VhdError("FORMAT_INVALID", `VHDX metadata item Virtual Disk ID: need 16 bytes, got ${bytes.length}`, { offset });
  return decodeGuid(bytes, 0x00);
}

/** Encodes a Logical or Physical Sector Size item. */
export function encodeVhdxSectorSize(size: number): Uint8Array {
  const out = new Uint8Array(4);
  viewOf(out).setUint32(0x00, size, true); // LogicalSectorSize / PhysicalSectorSize
  return out;
}

/** Decodes a sector size item; anything but 512 or 4096 is FORMAT_INVALID naming `which`. */
export function decodeVhdxSectorSize(bytes: Uint8Array, which: "Logical" | "Physical", offset?: number): number {
  if (bytes.length < 4) throw new VhdError("FORMAT_INVALID", `VHDX metadata item ${which} Sector Size: need 4 bytes, got ${bytes.length}`, { offset });
  const size = viewOf(bytes).getUint32(0x00, true);
  if (size !== 512 && size !== 4096) throw new VhdError("FORMAT_INVALID", `VHDX metadata item ${which} Sector Size: ${size} (must be 512 or 4096)`, { offset });
  return size;
}
