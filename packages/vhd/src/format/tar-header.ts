// The 512-byte tar header block in its three dialects: V7, POSIX ustar (also PAX's base) and
// GNU (atime/ctime/sparse fields where ustar has its prefix). Pure decode/encode, no I/O.
import { VhdError } from "../errors.js";

export const TAR_BLOCK_SIZE = 512;

export type TarDialect = "v7" | "ustar" | "gnu";

/** A GNU old-style sparse map entry: `numbytes` bytes of data at `offset` in the real file. */
export interface SparseRegion {
  offset: number;
  length: number;
}

/** The fields of one header block, numbers decoded, strings as latin1 (byte-exact). */
export interface TarHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  checksum: number;
  typeflag: string;
  linkname: string;
  dialect: TarDialect;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** ustar prefix joined to `name` already; kept for encode round trips. */
  prefix: string;
  /** GNU only. */
  atime?: number;
  ctime?: number;
  /** GNU old sparse ('S') headers: the first four map entries, the extension flag and the real size. */
  sparse?: SparseRegion[];
  isExtended?: boolean;
  realSize?: number;
}

function fieldString(block: Buffer, offset: number, length: number): string {
  if (block[offset] === 0) return "";
  let end = offset;
  const limit = offset + length;
  while (end < limit && block[end] !== 0) end++;
  return block.toString("latin1", offset, end);
}

/**
 * A numeric field: octal digits (leading spaces/NULs allowed, ending at a space or NUL), or
 * GNU base-256 when the top bit of the first byte is set (0x80 positive, 0xff negative).
 * Returns NaN for garbage so the caller can name the field in its error.
 */
export function decodeNumeric(block: Uint8Array, offset: number, length: number): number {
  const first = block[offset] ?? 0;
  if (first & 0x80) {
    // Base-256 is big-endian two's complement; bit 6 of the first byte gives the sign and bit
    // 7 is only the marker. Negative values are read inverted, then complemented (as Go does).
    const inv = first & 0x40 ? 0xff : 0;
    let value = 0;
    for (let i = 0; i < length; i++) {
      let c = (block[offset + i] ?? 0) ^ inv;
      if (i === 0) c &= 0x7f;
      value = value * 256 + c;
      if (value > Number.MAX_SAFE_INTEGER) return Number.NaN;
    }
    return inv ? -value - 1 : value;
  }
  let i = offset;
  const end = offset + length;
  while (i < end && (block[i] === 0x20 || block[i] === 0)) i++;
  let value = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i] ?? 0;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) return Number.NaN;
    value = value * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) if (block[i] !== 0x20 && block[i] !== 0) return Number.NaN;
  return digits === 0 ? 0 : value;
}

/** Sum of the header bytes, unsigned, with the checksum field taken as eight spaces. */
export function headerChecksum(block: Uint8Array): number {
  let sum = 0;
  if (block.byteOffset % 4 === 0) {
    // Two bytes per 16-bit lane at a time: 128 words x 2 x 255 stays below 65536 per lane.
    const words = new Uint32Array(block.buffer, block.byteOffset, TAR_BLOCK_SIZE / 4);
    let lanes = 0;
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      lanes += (w & 0x00ff00ff) + ((w >>> 8) & 0x00ff00ff);
    }
    sum = (lanes & 0xffff) + (lanes >>> 16);
  } else {
    for (let i = 0; i < TAR_BLOCK_SIZE; i++) sum += block[i]!;
  }
  for (let i = 148; i < 156; i++) sum -= block[i]!;
  return sum + 8 * 0x20;
}

/** The same sum with bytes taken as signed, which some old tars (Sun, early GNU) wrote. */
export function signedHeaderChecksum(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK_SIZE; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    sum += b > 127 ? b - 256 : b;
  }
  return sum;
}

export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < TAR_BLOCK_SIZE; i++) if (block[i] !== 0) return false;
  return true;
}

function dialectOf(block: Uint8Array): TarDialect {
  // "ustar\0" "00" is POSIX; "ustar " " \0" is GNU; anything else is V7.
  if (block[257] === 0x75 && block[258] === 0x73 && block[259] === 0x74 && block[260] === 0x61 && block[261] === 0x72) {
    if (block[262] === 0) return "ustar";
    if (block[262] === 0x20) return "gnu";
  }
  return "v7";
}

function sparseEntries(block: Uint8Array, offset: number, count: number, headerOffset: number): SparseRegion[] {
  const out: SparseRegion[] = [];
  for (let i = 0; i < count; i++) {
    const at = offset + i * 24;
    if (block[at] === 0) break; // an unused slot ends the list
    const o = decodeNumeric(block, at, 12);
    const n = decodeNumeric(block, at + 12, 12);
    if (!(o >= 0) || !(n >= 0)) {
      throw new VhdError("TAR_HEADER_INVALID", `tar header at offset ${headerOffset}: bad GNU sparse map entry ${i}`, { offset: headerOffset });
    }
    out.push({ offset: o, length: n });
  }
  return out;
}

/**
 * Decodes a header block (`ownerNames: false` skips uname/gname, which images do not store).
 * A checksum mismatch or a malformed numeric field is a
 * TAR_HEADER_INVALID error naming `headerOffset`, the byte offset of the block in the stream.
 */
export function decodeTarHeader(bytes: Uint8Array, headerOffset = 0, ownerNames = true): TarHeader {
  const block = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const num = (offset: number, length: number, field: string, name: string): number => {
    const n = decodeNumeric(block, offset, length);
    if (Number.isNaN(n)) {
      throw new VhdError("TAR_HEADER_INVALID", `tar header at offset ${headerOffset} (${JSON.stringify(name)}): malformed ${field} field`, { offset: headerOffset, path: name });
    }
    return n;
  };
  const rawName = fieldString(block, 0, 100);
  const checksum = decodeNumeric(block, 148, 8);
  const unsigned = headerChecksum(block);
  if (checksum !== unsigned && checksum !== signedHeaderChecksum(block)) {
    throw new VhdError(
      "TAR_HEADER_INVALID",
      `tar header at offset ${headerOffset} (${JSON.stringify(rawName)}): checksum ${Number.isNaN(checksum) ? "unreadable" : checksum} does not match ${unsigned}`,
      { offset: headerOffset, path: rawName },
    );
  }
  const dialect = dialectOf(block);
  const prefix = dialect === "ustar" ? fieldString(block, 345, 155) : "";
  const name = prefix ? `${prefix}/${rawName}` : rawName;
  const typeflag = block[156] === 0 ? "0" : String.fromCharCode(block[156] ?? 0x30);
  const header: TarHeader = {
    name,
    mode: num(100, 8, "mode", name),
    uid: num(108, 8, "uid", name),
    gid: num(116, 8, "gid", name),
    size: num(124, 12, "size", name),
    mtime: num(136, 12, "mtime", name),
    checksum,
    typeflag,
    linkname: fieldString(block, 157, 100),
    dialect,
    uname: dialect === "v7" || !ownerNames ? "" : fieldString(block, 265, 32),
    gname: dialect === "v7" || !ownerNames ? "" : fieldString(block, 297, 32),
    devmajor: dialect === "v7" ? 0 : num(329, 8, "devmajor", name),
    devminor: dialect === "v7" ? 0 : num(337, 8, "devminor", name),
    prefix,
  };
  if (dialect === "gnu") {
    header.atime = num(345, 12, "atime", name);
    header.ctime = num(357, 12, "ctime", name);
    if (typeflag === "S") {
      header.sparse = sparseEntries(block, 386, 4, headerOffset);
      header.isExtended = block[482] !== 0;
      header.realSize = num(483, 12, "realsize", name);
    }
  }
  return header;
}

/** Decodes a GNU sparse extension block: 21 map entries and the "more follow" flag. */
export function decodeGnuSparseExtension(block: Uint8Array, headerOffset: number): { sparse: SparseRegion[]; isExtended: boolean } {
  return { sparse: sparseEntries(block, 0, 21, headerOffset), isExtended: block[504] !== 0 };
}

// Both writers fill the block in place, without intermediate strings or buffers: an export
// writes one header per entry, tens of thousands of them.
function writeString(block: Uint8Array, value: string, offset: number, length: number): void {
  if (value.length > length) throw new RangeError(`tar field of ${length} bytes cannot hold ${value.length}`);
  for (let i = 0; i < value.length; i++) block[offset + i] = value.charCodeAt(i) & 0xff; // latin1: one byte per char
}

function writeOctal(block: Uint8Array, value: number, offset: number, length: number): void {
  let v = Math.max(0, Math.trunc(value));
  // length - 1 zero-padded digits, then the NUL the block already holds.
  for (let i = offset + length - 2; i >= offset; i--) {
    block[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  if (v > 0) throw new RangeError(`tar field of ${length} bytes cannot hold ${value} in octal`);
}

/** What `encodeTarHeader` needs of a header. */
export type TarHeaderFields = Pick<TarHeader, "name" | "mode" | "uid" | "gid" | "size" | "mtime" | "typeflag" | "linkname"> & Partial<TarHeader>;

/** Encodes a ustar header (for tests and the built-in sample); PAX records are the caller's job. */
export function encodeTarHeader(h: TarHeaderFields): Uint8Array {
  const block = new Uint8Array(TAR_BLOCK_SIZE);
  encodeTarHeaderInto(block, h);
  return block;
}

/**
 * `encodeTarHeader` into the first 512 bytes of `block`, which may hold anything before (they
 * are zeroed first): an exporter encodes each header straight into its output buffer.
 */
export function encodeTarHeaderInto(block: Uint8Array, h: TarHeaderFields): void {
  block.fill(0, 0, TAR_BLOCK_SIZE);
  writeString(block, h.name, 0, 100);
  writeOctal(block, h.mode, 100, 8);
  writeOctal(block, h.uid, 108, 8);
  writeOctal(block, h.gid, 116, 8);
  writeOctal(block, h.size, 124, 12);
  writeOctal(block, h.mtime, 136, 12);
  block[156] = h.typeflag.charCodeAt(0);
  writeString(block, h.linkname, 157, 100);
  writeString(block, "ustar\u000000", 257, 8);
  writeString(block, h.uname ?? "", 265, 32);
  writeString(block, h.gname ?? "", 297, 32);
  writeOctal(block, h.devmajor ?? 0, 329, 8);
  writeOctal(block, h.devminor ?? 0, 337, 8);
  writeString(block, h.prefix ?? "", 345, 155);
  const unsigned = headerChecksum(block);
  writeOctal(block, unsigned, 148, 7); // six digits, then NUL and space as GNU tar writes it
  block[154] = 0;
  block[155] = 0x20;
}
