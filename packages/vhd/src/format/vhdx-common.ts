// Helpers shared by the VHDX structure files: 64-bit fields as JS numbers, and the CRC-32C
// that every VHDX checksummed structure computes "with the Checksum field taking the value of
// zero" (MS-VHDX 2.2.2, 2.2.3.1, 2.3.1.1).
import { VhdError } from "../errors.js";
import { crc32cUpdate } from "./crc32c.js";

/** 1 MiB: the alignment of every VHDX object (regions, log, payload blocks) in the file. */
export const MiB = 1024 * 1024;
/** 4 KiB: log sector size and the span of a header. */
export const KiB4 = 4096;

/**
 * Reads a little-endian u64 as a number. Offsets and sizes past 2^53 cannot address a real
 * file, so they are reported as FORMAT_INVALID naming `what` instead of losing precision.
 */
export function getU64(view: DataView, at: number, what: string, offset?: number): number {
  const lo = view.getUint32(at, true);
  const hi = view.getUint32(at + 4, true);
  if (hi >= 0x200000) throw new VhdError("FORMAT_INVALID", `${what}: value 0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")} is beyond 2^53`, { offset });
  return hi * 0x1_0000_0000 + lo;
}

/** Writes a number (a non-negative safe integer) as a little-endian u64. */
export function setU64(view: DataView, at: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new VhdError("INVALID_ARGUMENT", `u64 field: ${value} is not a non-negative safe integer`);
  view.setUint32(at, value % 0x1_0000_0000, true);
  view.setUint32(at + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** CRC-32C of `bytes` with the 4-byte checksum field at `checksumAt` taken as zero. */
export function crc32cWithZeroField(bytes: Uint8Array, checksumAt: number): number {
  let c = crc32cUpdate(0xffffffff, bytes.subarray(0, checksumAt));
  c = crc32cUpdate(c, new Uint8Array(4));
  c = crc32cUpdate(c, bytes.subarray(checksumAt + 4));
  return (c ^ 0xffffffff) >>> 0;
}

/** A DataView over exactly `bytes`, whatever its offset in its buffer. */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The 4- or 8-byte ASCII signature at `at`. */
export function signatureAt(bytes: Uint8Array, at: number, length: number): string {
  return Buffer.from(bytes.subarray(at, at + length)).toString("latin1");
}
