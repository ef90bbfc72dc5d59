// MS-VHDX 2.3 Log: a ring of 4 KiB sectors holding log entries. An entry is descriptor
// sectors (a 64-byte header, then 32-byte zero/data descriptors) followed by one data sector
// per data descriptor. Each data sector gives up its first 8 and last 4 bytes to the
// signature and split sequence number; its descriptor keeps them (LeadingBytes/TrailingBytes).
import { VhdError } from "../errors.js";
import { crc32cWithZeroField, getU64, KiB4, setU64, signatureAt, viewOf } from "./vhdx-common.js";
import { decodeGuid, encodeGuid, type Guid } from "./vhdx-guid.js";

/** Log sector size. */
export const VHDX_LOG_SECTOR_SIZE = KiB4;
/** Bytes of the entry header. */
export const VHDX_LOG_HEADER_SIZE = 64;
/** Bytes of a descriptor. */
export const VHDX_LOG_DESCRIPTOR_SIZE = 32;
/** Signatures of the log's structures. */
export const VhdxLogSignature = { ENTRY: "loge", ZERO: "zero", DATA: "desc", DATA_SECTOR: "data" } as const;

/** Entry header (2.3.1.1). */
export interface VhdxLogEntryHeader {
  /** As stored; the checksum covers the whole entry, so it is computed by `encodeVhdxLogEntry`. */
  checksum: number;
  /** Bytes of the entry, a multiple of 4 KiB. */
  entryLength: number;
  /** Offset in the log of the oldest entry of the sequence this entry ends. */
  tail: number;
  sequenceNumber: bigint;
  descriptorCount: number;
  logGuid: Guid;
  /** File size known stable when the entry was written; a shorter file was truncated. */
  flushedFileOffset: number;
  /** File size all structures fit in; replay extends the file to it. */
  lastFileOffset: number;
}

/** A zero descriptor (2.3.1.2): `zeroLength` bytes at `fileOffset` become zeros. */
export interface VhdxLogZeroDescriptor {
  kind: "zero";
  zeroLength: number;
  fileOffset: number;
  sequenceNumber: bigint;
}

/** A data descriptor (2.3.1.3): one 4 KiB sector written at `fileOffset`. */
export interface VhdxLogDataDescriptor {
  kind: "data";
  /** Bytes 4092-4095 of the sector (little-endian u32 as stored). */
  trailingBytes: number;
  /** Bytes 0-7 of the sector (little-endian u64 as stored). */
  leadingBytes: bigint;
  fileOffset: number;
  sequenceNumber: bigint;
}

export type VhdxLogDescriptor = VhdxLogZeroDescriptor | VhdxLogDataDescriptor;

/** Encodes the 64-byte entry header with its checksum field as given. */
export function encodeVhdxLogEntryHeader(h: VhdxLogEntryHeader): Uint8Array {
  const out = new Uint8Array(VHDX_LOG_HEADER_SIZE);
  const v = viewOf(out);
  out.set(Buffer.from(VhdxLogSignature.ENTRY, "latin1"), 0x00); // Signature
  v.setUint32(0x04, h.checksum, true); // Checksum
  v.setUint32(0x08, h.entryLength, true); // EntryLength
  v.setUint32(0x0c, h.tail, true); // Tail
  v.setBigUint64(0x10, h.sequenceNumber, true); // SequenceNumber
  v.setUint32(0x18, h.descriptorCount, true); // DescriptorCount
  // 0x1c Reserved
  encodeGuid(h.logGuid, out, 0x20); // LogGuid
  setU64(v, 0x30, h.flushedFileOffset); // FlushedFileOffset
  setU64(v, 0x38, h.lastFileOffset); // LastFileOffset
  return out;
}

/** Decodes an entry header (signature only; the entry as a whole is judged by `decodeVhdxLogEntry`). */
export function decodeVhdxLogEntryHeader(bytes: Uint8Array, offset?: number): VhdxLogEntryHeader {
  if (bytes.length < VHDX_LOG_HEADER_SIZE) throw new VhdError("FORMAT_INVALID", `VHDX log entry header: need 64 bytes, got ${bytes.length}`, { offset });
  const sig = signatureAt(bytes, 0x00, 4);
  if (sig !== VhdxLogSignature.ENTRY) throw new VhdError("FORMAT_INVALID", `VHDX log entry header: bad signature ${JSON.stringify(sig)}`, { offset });
  const v = viewOf(bytes.subarray(0, VHDX_LOG_HEADER_SIZE));
  return {
    checksum: v.getUint32(0x04, true),
    entryLength: v.getUint32(0x08, true),
    tail: v.getUint32(0x0c, true),
    sequenceNumber: v.getBigUint64(0x10, true),
    descriptorCount: v.getUint32(0x18, true),
    logGuid: decodeGuid(bytes, 0x20),
    flushedFileOffset: getU64(v, 0x30, "VHDX log entry FlushedFileOffset", offset),
    lastFileOffset: getU64(v, 0x38, "VHDX log entry LastFileOffset", offset),
  };
}

/** Encodes one 32-byte descriptor. */
export function encodeVhdxLogDescriptor(d: VhdxLogDescriptor): Uint8Array {
  const out = new Uint8Array(VHDX_LOG_DESCRIPTOR_SIZE);
  const v = viewOf(out);
  if (d.kind === "zero") {
    out.set(Buffer.from(VhdxLogSignature.ZERO, "latin1"), 0x00); // ZeroSignature
    // 0x04 Reserved
    setU64(v, 0x08, d.zeroLength); // ZeroLength
  } else {
    out.set(Buffer.from(VhdxLogSignature.DATA, "latin1"), 0x00); // DataSignature
    v.setUint32(0x04, d.trailingBytes, true); // TrailingBytes
    v.setBigUint64(0x08, d.leadingBytes, true); // LeadingBytes
  }
  setU64(v, 0x10, d.fileOffset); // FileOffset
  v.setBigUint64(0x18, d.sequenceNumber, true); // SequenceNumber
  return out;
}

/** Decodes one descriptor; an unknown signature is FORMAT_INVALID. */
export function decodeVhdxLogDescriptor(bytes: Uint8Array, offset?: number): VhdxLogDescriptor {
  if (bytes.length < VHDX_LOG_DESCRIPTOR_SIZE) throw new VhdError("FORMAT_INVALID", `VHDX log descriptor: need 32 bytes, got ${bytes.length}`, { offset });
  const v = viewOf(bytes.subarray(0, VHDX_LOG_DESCRIPTOR_SIZE));
  const sig = signatureAt(bytes, 0x00, 4);
  const fileOffset = getU64(v, 0x10, "VHDX log descriptor FileOffset", offset);
  const sequenceNumber = v.getBigUint64(0x18, true);
  if (sig === VhdxLogSignature.ZERO) return { kind: "zero", zeroLength: getU64(v, 0x08, "VHDX log zero descriptor ZeroLength", offset), fileOffset, sequenceNumber };
  if (sig === VhdxLogSignature.DATA) return { kind: "data", trailingBytes: v.getUint32(0x04, true), leadingBytes: v.getBigUint64(0x08, true), fileOffset, sequenceNumber };
  throw new VhdError("FORMAT_INVALID", `VHDX log descriptor: bad signature ${JSON.stringify(sig)}`, { offset });
}

/** Descriptor sectors an entry with `count` descriptors needs: 126 fit beside the header, 128 per further sector. */
export function vhdxLogDescriptorSectors(count: number): number {
  return Math.ceil((VHDX_LOG_HEADER_SIZE + count * VHDX_LOG_DESCRIPTOR_SIZE) / VHDX_LOG_SECTOR_SIZE);
}

/** A log update as callers think of it: zero a range, or write a 4 KiB sector. */
export type VhdxLogWrite = { fileOffset: number; zeroLength: number } | { fileOffset: number; data: Uint8Array };

/** A decoded, verified log entry. */
export interface VhdxLogEntry {
  header: VhdxLogEntryHeader;
  /** The updates in order, data sectors reassembled to their 4 KiB on-disk form. */
  writes: VhdxLogWrite[];
}

/**
 * Encodes a whole entry: descriptors, data sectors (with leading/trailing bytes moved into the
 * descriptors and the sequence number split around the data), and the CRC-32C over all of it.
 * `entryLength` and `descriptorCount` are computed.
 */
export function encodeVhdxLogEntry(h: Omit<VhdxLogEntryHeader, "checksum" | "entryLength" | "descriptorCount">, writes: readonly VhdxLogWrite[]): Uint8Array {
  const descSectors = vhdxLogDescriptorSectors(writes.length);
  const data = writes.filter((w): w is { fileOffset: number; data: Uint8Array } => "data" in w);
  const entryLength = (descSectors + data.length) * VHDX_LOG_SECTOR_SIZE;
  const out = new Uint8Array(entryLength);
  out.set(encodeVhdxLogEntryHeader({ ...h, checksum: 0, entryLength, descriptorCount: writes.length }), 0);
  let dataIndex = 0;
  writes.forEach((w, i) => {
    const at = VHDX_LOG_HEADER_SIZE + i * VHDX_LOG_DESCRIPTOR_SIZE;
    if ("data" in w) {
      if (w.data.length !== VHDX_LOG_SECTOR_SIZE) throw new VhdError("INVALID_ARGUMENT", `VHDX log data write: need 4096 bytes, got ${w.data.length}`);
      const dv = viewOf(w.data);
      out.set(encodeVhdxLogDescriptor({ kind: "data", trailingBytes: dv.getUint32(4092, true), leadingBytes: dv.getBigUint64(0, true), fileOffset: w.fileOffset, sequenceNumber: h.sequenceNumber }), at);
      const sector = out.subarray((descSectors + dataIndex++) * VHDX_LOG_SECTOR_SIZE, (descSectors + dataIndex) * VHDX_LOG_SECTOR_SIZE);
      const sv = viewOf(sector);
      sector.set(Buffer.from(VhdxLogSignature.DATA_SECTOR, "latin1"), 0x00); // DataSignature
      sv.setUint32(0x04, Number(h.sequenceNumber >> 32n), true); // SequenceHigh
      sector.set(w.data.subarray(8, 4092), 0x08); // Data (4084 bytes)
      sv.setUint32(0xffc, Number(h.sequenceNumber & 0xffffffffn), true); // SequenceLow
    } else {
      out.set(encodeVhdxLogDescriptor({ kind: "zero", zeroLength: w.zeroLength, fileOffset: w.fileOffset, sequenceNumber: h.sequenceNumber }), at);
    }
  });
  viewOf(out).setUint32(0x04, crc32cWithZeroField(out, 0x04), true);
  return out;
}

/**
 * Decodes and verifies a whole entry (`bytes` holds at least EntryLength bytes, already
 * unwrapped from the ring): signature, EntryLength, checksum, every descriptor's signature,
 * sequence number and 4 KiB alignment, and every data sector's signature and split sequence
 * number. Any failure is FORMAT_INVALID; the replayer treats that as "not a valid entry here".
 */
export function decodeVhdxLogEntry(bytes: Uint8Array, offset?: number): VhdxLogEntry {
  const where = offset === undefined ? "VHDX log entry" : `VHDX log entry at log offset ${offset}`;
  const fail = (why: string): never => {
    throw new VhdError("FORMAT_INVALID", `${where}: ${why}`, { offset });
  };
  const header = decodeVhdxLogEntryHeader(bytes, offset);
  const { entryLength, descriptorCount, sequenceNumber } = header;
  if (entryLength === 0 || entryLength % VHDX_LOG_SECTOR_SIZE !== 0) fail(`EntryLength ${entryLength} is not a positive multiple of 4096`);
  if (entryLength > bytes.length) fail(`EntryLength ${entryLength} exceeds the ${bytes.length} bytes available`);
  if (header.tail % VHDX_LOG_SECTOR_SIZE !== 0) fail(`Tail ${header.tail} is not a multiple of 4096`);
  if (sequenceNumber === 0n) fail("SequenceNumber is zero");
  const descSectors = vhdxLogDescriptorSectors(descriptorCount);
  if (descSectors * VHDX_LOG_SECTOR_SIZE > entryLength) fail(`${descriptorCount} descriptors do not fit EntryLength ${entryLength}`);
  const entry = bytes.subarray(0, entryLength);
  const want = crc32cWithZeroField(entry, 0x04);
  if (want !== header.checksum) fail(`checksum 0x${header.checksum.toString(16)} does not match 0x${want.toString(16)}`);
  const writes: VhdxLogWrite[] = [];
  let dataIndex = 0;
  for (let i = 0; i < descriptorCount; i++) {
    const d = decodeVhdxLogDescriptor(entry.subarray(VHDX_LOG_HEADER_SIZE + i * VHDX_LOG_DESCRIPTOR_SIZE), offset);
    if (d.sequenceNumber !== sequenceNumber) fail(`descriptor ${i} SequenceNumber ${d.sequenceNumber} differs from the entry's ${sequenceNumber}`);
    if (d.fileOffset % VHDX_LOG_SECTOR_SIZE !== 0) fail(`descriptor ${i} FileOffset ${d.fileOffset} is not a multiple of 4096`);
    if (d.kind === "zero") {
      if (d.zeroLength % VHDX_LOG_SECTOR_SIZE !== 0) fail(`descriptor ${i} ZeroLength ${d.zeroLength} is not a multiple of 4096`);
      writes.push({ fileOffset: d.fileOffset, zeroLength: d.zeroLength });
      continue;
    }
    const start = (descSectors + dataIndex++) * VHDX_LOG_SECTOR_SIZE;
    if (start + VHDX_LOG_SECTOR_SIZE > entryLength) fail(`data sector of descriptor ${i} lies past EntryLength ${entryLength}`);
    const sector = entry.subarray(start, start + VHDX_LOG_SECTOR_SIZE);
    const sv = viewOf(sector);
    if (signatureAt(sector, 0x00, 4) !== VhdxLogSignature.DATA_SECTOR) fail(`data sector of descriptor ${i} has a bad signature`);
    const seq = (BigInt(sv.getUint32(0x04, true)) << 32n) | BigInt(sv.getUint32(0xffc, true)); // SequenceHigh, SequenceLow
    if (seq !== sequenceNumber) fail(`data sector of descriptor ${i} carries SequenceNumber ${seq}, not ${sequenceNumber}`);
    const data = new Uint8Array(VHDX_LOG_SECTOR_SIZE);
    const dv = viewOf(data);
    dv.setBigUint64(0, d.leadingBytes, true);
    data.set(sector.subarray(0x08, 0xffc), 0x08);
    dv.setUint32(0xffc, d.trailingBytes, true);
    writes.push({ fileOffset: d.fileOffset, data });
  }
  return { header, writes };
}
