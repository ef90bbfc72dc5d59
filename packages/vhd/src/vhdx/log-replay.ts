// Finding the active log sequence (MS-VHDX 2.3.3) in a log held in memory. Pure: the reader
// decides what to do with the result (we replay into an in-memory overlay, never the file).
import { VhdError } from "../errors.js";
import { decodeVhdxLogEntry, decodeVhdxLogEntryHeader, VHDX_LOG_HEADER_SIZE, VHDX_LOG_SECTOR_SIZE, type VhdxLogEntry } from "../format/vhdx-log.js";
import type { Guid } from "../format/vhdx-guid.js";
import { signatureAt } from "../format/vhdx-common.js";

/** The active sequence: entries from the tail to the head, in replay order. */
export interface VhdxActiveSequence {
  entries: VhdxLogEntry[];
  /** Log offset of each entry, parallel to `entries`. */
  offsets: number[];
  /** The newest entry's header fields that replay needs. */
  head: VhdxLogEntry["header"];
}

/**
 * The valid entry at log offset `at`, or undefined. Entries may wrap around the end of the
 * ring; only then is a contiguous copy made.
 */
function entryAt(log: Uint8Array, at: number, logGuid: Guid): VhdxLogEntry | undefined {
  if (signatureAt(log, at, 4) !== "loge") return undefined;
  let header;
  try {
    header = decodeVhdxLogEntryHeader(log.subarray(at, at + VHDX_LOG_HEADER_SIZE));
  } catch {
    return undefined;
  }
  // Entries written under another LogGuid are stale even when intact (MS-VHDX 2.3.2 note 4).
  if (header.logGuid !== logGuid) return undefined;
  const len = header.entryLength;
  if (len === 0 || len % VHDX_LOG_SECTOR_SIZE !== 0 || len > log.length) return undefined;
  let bytes: Uint8Array;
  if (at + len <= log.length) {
    bytes = log.subarray(at, at + len);
  } else {
    bytes = new Uint8Array(len);
    bytes.set(log.subarray(at), 0);
    bytes.set(log.subarray(0, len - (log.length - at)), log.length - at);
  }
  try {
    return decodeVhdxLogEntry(bytes, at);
  } catch {
    return undefined;
  }
}

/**
 * Scans `log` (the whole log region) as the specification's procedure does and returns the
 * newest valid and complete sequence, or undefined when there is none. Work is bounded: each
 * start offset is tried at most once per pass and the scan stops after one lap of the ring.
 */
export function findActiveSequence(log: Uint8Array, logGuid: Guid): VhdxActiveSequence | undefined {
  const size = log.length;
  if (size === 0 || size % VHDX_LOG_SECTOR_SIZE !== 0) throw new VhdError("FORMAT_INVALID", `VHDX log: length ${size} is not a positive multiple of 4096`);
  const maxEntries = size / VHDX_LOG_SECTOR_SIZE;
  let candidate: VhdxActiveSequence | undefined;
  let currentTail = 0;
  let oldTail = 0;
  // One lap visits at most one start per sector; the extra iteration cap also stops a
  // sequence that covers the whole ring from being re-read forever.
  for (let iteration = 0; iteration <= maxEntries; iteration++) {
    const entries: VhdxLogEntry[] = [];
    const offsets: number[] = [];
    let head = currentTail;
    while (entries.length < maxEntries) {
      const e = entryAt(log, head, logGuid);
      if (!e) break;
      const last = entries[entries.length - 1];
      if (last && e.header.sequenceNumber !== last.header.sequenceNumber + 1n) break;
      entries.push(e);
      offsets.push(head);
      head = (head + e.header.entryLength) % size;
    }
    const headEntry = entries[entries.length - 1];
    // Valid when the head's Tail names an entry inside the sequence; replay starts there.
    const tailIndex = headEntry ? offsets.indexOf(headEntry.header.tail) : -1;
    if (headEntry && tailIndex >= 0 && (!candidate || headEntry.header.sequenceNumber > candidate.head.sequenceNumber)) {
      candidate = { entries: entries.slice(tailIndex), offsets: offsets.slice(tailIndex), head: headEntry.header };
    }
    currentTail = tailIndex < 0 ? (currentTail + VHDX_LOG_SECTOR_SIZE) % size : head;
    if (currentTail < oldTail) break;
    oldTail = currentTail;
  }
  return candidate;
}
