// MS-VHDX 2.2.2 Headers: two 4 KiB copies, at 64 KiB and 128 KiB. The valid copy with the
// larger SequenceNumber is current, so a torn header write leaves the other one in force.
import { VhdError } from "../errors.js";
import { crc32cWithZeroField, getU64, setU64, signatureAt, viewOf } from "./vhdx-common.js";
import { decodeGuid, encodeGuid, type Guid } from "./vhdx-guid.js";

/** File offsets of header 1 and header 2. */
export const VHDX_HEADER_OFFSETS = [64 * 1024, 128 * 1024] as const;
/** Bytes the checksum covers (the rest of each 64 KiB slot is reserved). */
export const VHDX_HEADER_SIZE = 4096;
/** "head". */
export const VHDX_HEADER_SIGNATURE = "head";
/** The only format version this specification (and we) know. */
export const VHDX_VERSION = 1;
/** The only log format version. */
export const VHDX_LOG_VERSION = 0;

/** A decoded VHDX header. */
export interface VhdxHeader {
  /** Orders the two copies; the larger valid one is current. */
  sequenceNumber: bigint;
  /** Changed on every open for write. */
  fileWriteGuid: Guid;
  /** Changed before the first change of user-visible data in a session. */
  dataWriteGuid: Guid;
  /** Zero when the log holds nothing to replay; otherwise only log entries carrying it are valid. */
  logGuid: Guid;
  logVersion: number;
  version: number;
  /** Bytes of the log, a multiple of 1 MiB. */
  logLength: number;
  /** File offset of the log, a multiple of 1 MiB. */
  logOffset: number;
  /** As stored; recomputed on encode. */
  checksum: number;
}

/** Encodes a header into its 4 KiB; `checksum` is ignored and computed. */
export function encodeVhdxHeader(h: Omit<VhdxHeader, "checksum">): Uint8Array {
  const out = new Uint8Array(VHDX_HEADER_SIZE);
  const v = viewOf(out);
  out.set(Buffer.from(VHDX_HEADER_SIGNATURE, "latin1"), 0x00); // Signature
  v.setBigUint64(0x08, h.sequenceNumber, true); // SequenceNumber
  encodeGuid(h.fileWriteGuid, out, 0x10); // FileWriteGuid
  encodeGuid(h.dataWriteGuid, out, 0x20); // DataWriteGuid
  encodeGuid(h.logGuid, out, 0x30); // LogGuid
  v.setUint16(0x40, h.logVersion, true); // LogVersion
  v.setUint16(0x42, h.version, true); // Version
  v.setUint32(0x44, h.logLength, true); // LogLength
  setU64(v, 0x48, h.logOffset); // LogOffset
  v.setUint32(0x04, crc32cWithZeroField(out, 0x04), true); // Checksum
  return out;
}

/**
 * Decodes and verifies one header copy (signature and CRC-32C over the 4 KiB). Field values are
 * not judged here (version, log placement): the opener does that for the current header only.
 * `offset` names the copy in errors.
 */
export function decodeVhdxHeader(bytes: Uint8Array, offset?: number): VhdxHeader {
  const where = offset === undefined ? "VHDX header" : `VHDX header at ${offset}`;
  if (bytes.length < VHDX_HEADER_SIZE) throw new VhdError("FORMAT_INVALID", `${where}: need ${VHDX_HEADER_SIZE} bytes, got ${bytes.length}`, { offset });
  const b = bytes.subarray(0, VHDX_HEADER_SIZE);
  const sig = signatureAt(b, 0x00, 4);
  if (sig !== VHDX_HEADER_SIGNATURE) throw new VhdError("FORMAT_INVALID", `${where}: bad signature ${JSON.stringify(sig)}`, { offset });
  const v = viewOf(b);
  const checksum = v.getUint32(0x04, true);
  const want = crc32cWithZeroField(b, 0x04);
  if (checksum !== want) throw new VhdError("FORMAT_INVALID", `${where}: checksum 0x${checksum.toString(16)} does not match 0x${want.toString(16)}`, { offset });
  return {
    sequenceNumber: v.getBigUint64(0x08, true),
    fileWriteGuid: decodeGuid(b, 0x10),
    dataWriteGuid: decodeGuid(b, 0x20),
    logGuid: decodeGuid(b, 0x30),
    logVersion: v.getUint16(0x40, true),
    version: v.getUint16(0x42, true),
    logLength: v.getUint32(0x44, true),
    logOffset: getU64(v, 0x48, `${where}: LogOffset`, offset),
    checksum,
  };
}
