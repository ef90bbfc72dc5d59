// POSIX pax extended header records: "<length> <key>=<value>\n", where length counts the
// whole record in bytes. Values are raw bytes: SCHILY.xattr values are binary
// (security.capability), so they are never decoded as UTF-8 here.
import { VhdError } from "../errors.js";
import { copyBytes } from "./bytes.js";

export interface PaxRecord {
  key: string;
  /** The value's bytes, verbatim. */
  value: Uint8Array;
}

/**
 * Decodes all records of a pax header body, in order. Repeated keys are all kept: GNU sparse
 * format 0.0 repeats GNU.sparse.offset/numbytes once per region.
 */
export function decodePaxRecords(body: Uint8Array, headerOffset = 0): PaxRecord[] {
  const records: PaxRecord[] = [];
  let at = 0;
  while (at < body.length) {
    // Trailing NUL padding (some writers pad the body) ends the records.
    if (body[at] === 0) break;
    let space = at;
    let length = 0;
    while (space < body.length && body[space] !== 0x20) {
      const c = body[space] ?? 0;
      if (c < 0x30 || c > 0x39) throw bad(headerOffset, at, "length is not a decimal number");
      length = length * 10 + (c - 0x30);
      space++;
    }
    if (space === at || space >= body.length || length < space - at + 3 || at + length > body.length || body[at + length - 1] !== 0x0a) {
      throw bad(headerOffset, at, `record length ${length} does not fit the header`);
    }
    const recordEnd = at + length - 1; // the newline
    let eq = space + 1;
    while (eq < recordEnd && body[eq] !== 0x3d) eq++;
    if (eq === recordEnd) throw bad(headerOffset, at, "record has no '='");
    const key = Buffer.from(body.buffer, body.byteOffset + space + 1, eq - space - 1).toString("latin1");
    records.push({ key, value: copyBytes(body, eq + 1, recordEnd) });
    at += length;
  }
  return records;
}

function bad(headerOffset: number, at: number, reason: string): VhdError {
  return new VhdError("TAR_HEADER_INVALID", `pax header at offset ${headerOffset}: record at byte ${at}: ${reason}`, { offset: headerOffset });
}

/** Encodes records (for tests and samples): the length prefix includes its own digits. */
export function encodePaxRecords(records: readonly PaxRecord[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const { key, value } of records) {
    const rest = Buffer.concat([Buffer.from(` ${key}=`, "utf8"), value, Buffer.from("\n")]);
    let length = rest.length + 1;
    while (String(length).length + rest.length > length) length++;
    parts.push(Buffer.concat([Buffer.from(String(length)), rest]));
  }
  return Buffer.concat(parts);
}

/** Parses a pax time "[-]seconds[.fraction]" into whole seconds and nanoseconds (floor semantics). */
export function parsePaxTime(text: string): { sec: number; nsec: number } | undefined {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(text);
  if (!m) return undefined;
  const whole = Number(m[2]);
  const frac = Number(((m[3] ?? "") + "000000000").slice(0, 9));
  if (!Number.isSafeInteger(whole)) return undefined;
  if (m[1] === "-") return frac === 0 ? { sec: -whole, nsec: 0 } : { sec: -whole - 1, nsec: 1e9 - frac };
  return { sec: whole, nsec: frac };
}
