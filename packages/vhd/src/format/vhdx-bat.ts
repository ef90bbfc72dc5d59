// MS-VHDX 2.4-2.5 Blocks and the BAT: one 64-bit entry per payload block, with one sector
// bitmap entry interleaved after every `chunkRatio` payload entries. An entry is State (bits
// 0-2), Reserved (bits 3-19) and FileOffsetMB (bits 20-63).
import { VhdError } from "../errors.js";
import { MiB, viewOf } from "./vhdx-common.js";

/** Bytes per BAT entry. */
export const VHDX_BAT_ENTRY_SIZE = 8;

/** Payload block states (2.5.1.1). Values 4 and 5 are reserved. */
export const VhdxPayloadState = {
  /** Dynamic disks: contents undefined, we read zeros. The state new blocks start in. */
  NOT_PRESENT: 0,
  /** Contents undefined; we read zeros. */
  UNDEFINED: 1,
  /** Contents are zeros. */
  ZERO: 2,
  /** Unmapped (trimmed); zeros or the old contents, we read zeros. */
  UNMAPPED: 3,
  /** Contents are in the file at FileOffsetMB. */
  FULLY_PRESENT: 6,
  /** Differencing disks only: some sectors come from the parent. */
  PARTIALLY_PRESENT: 7,
} as const;

/** Sector bitmap block states (2.5.1.2); only differencing disks allocate them. */
export const VhdxSectorBitmapState = {
  NOT_PRESENT: 0,
  PRESENT: 6,
} as const;

/** A decoded BAT entry. */
export interface VhdxBatEntry {
  state: number;
  /** File offset in MiB (0 when none). */
  fileOffsetMB: number;
  /** Bits 3-19, which must be zero; kept so callers can judge them. */
  reserved: number;
}

/** Encodes one entry into `out` at `at` (a fresh 8-byte array when not given). */
export function encodeVhdxBatEntry(e: { state: number; fileOffsetMB: number; reserved?: number }, out: Uint8Array = new Uint8Array(8), at = 0): Uint8Array {
  if (!Number.isSafeInteger(e.fileOffsetMB) || e.fileOffsetMB < 0 || e.fileOffsetMB >= 2 ** 44) throw new VhdError("INVALID_ARGUMENT", `BAT entry: FileOffsetMB ${e.fileOffsetMB} does not fit 44 bits`);
  const v = viewOf(out);
  // FileOffsetMB straddles the two 32-bit halves: its low 12 bits sit in bits 20-31.
  const lo = (e.state & 7) | (((e.reserved ?? 0) & 0x1ffff) << 3) | ((e.fileOffsetMB % 4096) << 20);
  v.setUint32(at, lo >>> 0, true);
  v.setUint32(at + 4, Math.floor(e.fileOffsetMB / 4096), true);
  return out;
}

/** Decodes the entry at `at` of `bytes`. */
export function decodeVhdxBatEntry(bytes: Uint8Array, at = 0): VhdxBatEntry {
  const v = viewOf(bytes);
  const lo = v.getUint32(at, true);
  const hi = v.getUint32(at + 4, true);
  return { state: lo & 7, reserved: (lo >>> 3) & 0x1ffff, fileOffsetMB: hi * 4096 + (lo >>> 20) };
}

/** The BAT geometry of a disk (2.4 and 2.5). */
export interface VhdxBatGeometry {
  blockSize: number;
  logicalSectorSize: number;
  virtualSize: number;
  /** Payload blocks per sector bitmap block: 2^23 sectors x sector size / block size. */
  chunkRatio: number;
  /** ceil(virtualSize / blockSize). */
  dataBlocksCount: number;
  /** ceil(dataBlocksCount / chunkRatio). */
  sectorBitmapBlocksCount: number;
  /** Entries in the BAT of a dynamic (or fixed) disk: the last one locates the last payload block. */
  totalBatEntries: number;
}

/** Computes the geometry; `hasParent` selects the differencing formula (whole chunks). */
export function vhdxBatGeometry(p: { virtualSize: number; blockSize: number; logicalSectorSize: number; hasParent?: boolean }): VhdxBatGeometry {
  // A sector bitmap block is 1 MiB = 2^23 bits, one per logical sector: the "chunk".
  const chunkSize = 2 ** 23 * p.logicalSectorSize;
  const chunkRatio = chunkSize / p.blockSize;
  const dataBlocksCount = Math.ceil(p.virtualSize / p.blockSize);
  const sectorBitmapBlocksCount = Math.ceil(dataBlocksCount / chunkRatio);
  const totalBatEntries = p.hasParent
    ? sectorBitmapBlocksCount * (chunkRatio + 1)
    : dataBlocksCount + Math.floor(Math.max(0, dataBlocksCount - 1) / chunkRatio);
  return { blockSize: p.blockSize, logicalSectorSize: p.logicalSectorSize, virtualSize: p.virtualSize, chunkRatio, dataBlocksCount, sectorBitmapBlocksCount, totalBatEntries };
}

/** BAT index of payload block `block`: the payload entries of each chunk precede its bitmap entry. */
export function payloadBatIndex(g: Pick<VhdxBatGeometry, "chunkRatio">, block: number): number {
  return block + Math.floor(block / g.chunkRatio);
}

/** BAT index of the sector bitmap entry of chunk `chunk`. */
export function sectorBitmapBatIndex(g: Pick<VhdxBatGeometry, "chunkRatio">, chunk: number): number {
  return (chunk + 1) * (g.chunkRatio + 1) - 1;
}

/** True when BAT index `index` is a sector bitmap entry. */
export function isSectorBitmapIndex(g: Pick<VhdxBatGeometry, "chunkRatio">, index: number): boolean {
  return (index + 1) % (g.chunkRatio + 1) === 0;
}

/** Bytes the BAT region needs for `g`, rounded up to 1 MiB as every region is. */
export function vhdxBatRegionLength(g: Pick<VhdxBatGeometry, "totalBatEntries">): number {
  return Math.max(1, Math.ceil((g.totalBatEntries * VHDX_BAT_ENTRY_SIZE) / MiB)) * MiB;
}
