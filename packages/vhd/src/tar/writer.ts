// Tar headers as lcow writes them: POSIX pax (ustar headers plus pax records wherever a value
// does not fit ustar exactly: long or non-ASCII names, big numbers, nanosecond or negative
// times, xattrs), and GNU sparse format 1.0 for files with holes, which GNU tar and bsdtar
// restore as holes.
import { encodePaxRecords, type PaxRecord } from "../format/pax.js";
import { encodeTarHeaderInto, TAR_BLOCK_SIZE, type SparseRegion } from "../format/tar-header.js";
import type { Xattr } from "../format/xattr.js";

export type TarWriteType = "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

export interface TarWriteEntry {
  /** Path inside the archive (latin1 string of the raw bytes); directories get a trailing "/". */
  path: string;
  type: TarWriteType;
  mode: number;
  uid: number;
  gid: number;
  mtime: { sec: number; nsec: number };
  /** Bytes of data that follow the header (for sparse files: the stored data only). */
  size: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: readonly Xattr[];
  /** For sparse files: the data regions and the apparent size. */
  sparse?: { map: SparseRegion[]; realSize: number };
}

const TYPEFLAG: Record<TarWriteType, string> = { file: "0", hardlink: "1", symlink: "2", char: "3", block: "4", dir: "5", fifo: "6" };
const OCTAL_MAX_8 = 0o7777777; // largest value an 8-byte octal field holds
const OCTAL_MAX_12 = 0o77777777777; // ... a 12-byte one
const ASCII_NAME = /^[\x20-\x7e]*$/;

/** Zero padding after `size` bytes of data. */
export function tarPadding(size: number): number {
  return (TAR_BLOCK_SIZE - (size % TAR_BLOCK_SIZE)) % TAR_BLOCK_SIZE;
}

/** The two zero blocks that end an archive. */
export const TAR_END = new Uint8Array(2 * TAR_BLOCK_SIZE);

/** Formats a time for pax: seconds with up to nine decimals; negative values count down (-1.5). */
export function formatPaxTime(t: { sec: number; nsec: number }): string {
  if (t.nsec === 0) return String(t.sec);
  const [whole, frac] = t.sec < 0 ? [`-${-t.sec - 1}`, 1e9 - t.nsec] : [String(t.sec), t.nsec];
  return `${whole}.${String(frac).padStart(9, "0").replace(/0+$/, "")}`;
}

/** Where `writeEntryHeader` puts the header blocks. */
export interface TarHeaderSink {
  /** Appends a copy of `bytes`. */
  push(bytes: Uint8Array): void;
  /** Appends `n` zero bytes. */
  pushZeros(n: number): void;
  /** The next 512 bytes of output, to fill in place (any content; they count as written). */
  block(): Uint8Array;
}

/**
 * The header blocks for one entry (a pax extended header when needed, then the ustar header),
 * plus, for sparse files, the sparse map that starts the data. The caller writes the data
 * (`entry.size` bytes, or the sparse regions' bytes) and `tarPadding` zeros after it.
 */
export function encodeEntryHeader(entry: TarWriteEntry): Uint8Array {
  const parts: Uint8Array[] = [];
  writeEntryHeader(entry, {
    push: (bytes) => parts.push(new Uint8Array(bytes)),
    pushZeros: (n) => parts.push(new Uint8Array(n)),
    block: () => {
      const b = new Uint8Array(TAR_BLOCK_SIZE);
      parts.push(b);
      return b;
    },
  });
  return Buffer.concat(parts);
}

/**
 * `encodeEntryHeader`, written to `out`. An entry that needs no pax records (most of them) is
 * encoded straight into the output, with no allocation.
 */
export function writeEntryHeader(entry: TarWriteEntry, out: TarHeaderSink): void {
  // Allocated only for an entry that needs records (most need none).
  let records: PaxRecord[] | undefined;
  const text = (key: string, value: string) => (records ??= []).push({ key, value: new Uint8Array(Buffer.from(value, "latin1")) });
  let name = entry.path;
  let size = entry.size;
  let sparseMap: Uint8Array | undefined;
  if (entry.sparse) {
    // GNU sparse 1.0: the real name in a pax record, a placeholder name in the header, and the
    // map (decimal lines, padded to a block) at the start of the data.
    text("GNU.sparse.major", "1");
    text("GNU.sparse.minor", "0");
    text("GNU.sparse.name", entry.path);
    text("GNU.sparse.realsize", String(entry.sparse.realSize));
    const slash = entry.path.lastIndexOf("/");
    name = `${entry.path.slice(0, slash + 1)}GNUSparseFile.0/${entry.path.slice(slash + 1)}`;
    const lines = [String(entry.sparse.map.length), ...entry.sparse.map.flatMap((r) => [String(r.offset), String(r.length)])].join("\n") + "\n";
    const raw = Buffer.from(lines, "latin1");
    sparseMap = new Uint8Array(raw.length + tarPadding(raw.length));
    sparseMap.set(raw);
    size += sparseMap.length;
  }
  // Paths are latin1 strings of the raw bytes: one char per byte.
  if (name.length > 100 || !ASCII_NAME.test(name)) {
    if (!entry.sparse) text("path", entry.path);
  }
  const linkname = entry.linkname ?? "";
  if (linkname.length > 100 || !ASCII_NAME.test(linkname)) text("linkpath", linkname);
  if (size > OCTAL_MAX_12) text("size", String(size));
  if (entry.uid > OCTAL_MAX_8) text("uid", String(entry.uid));
  if (entry.gid > OCTAL_MAX_8) text("gid", String(entry.gid));
  if (entry.mtime.nsec !== 0 || entry.mtime.sec < 0 || entry.mtime.sec > OCTAL_MAX_12) text("mtime", formatPaxTime(entry.mtime));
  if ((entry.devmajor ?? 0) > OCTAL_MAX_8) text("SCHILY.devmajor", String(entry.devmajor));
  if ((entry.devminor ?? 0) > OCTAL_MAX_8) text("SCHILY.devminor", String(entry.devminor));
  if (entry.xattrs && entry.xattrs.length > 0) {
    records ??= [];
    for (const x of entry.xattrs) records.push({ key: `SCHILY.xattr.${x.name}`, value: x.value });
  }

  if (records) {
    const body = encodePaxRecords(records);
    const base = name.slice(name.lastIndexOf("/", name.length - 2) + 1);
    encodeTarHeaderInto(out.block(), { name: truncateName(`PaxHeaders/${base}`), mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: 0, typeflag: "x", linkname: "" });
    out.push(body);
    out.pushZeros(tarPadding(body.length));
  }
  encodeTarHeaderInto(out.block(), {
    name: truncateName(name),
    mode: entry.mode & 0o7777,
    uid: entry.uid > OCTAL_MAX_8 ? 0 : entry.uid,
    gid: entry.gid > OCTAL_MAX_8 ? 0 : entry.gid,
    size: size > OCTAL_MAX_12 ? 0 : size,
    mtime: Math.min(Math.max(entry.mtime.sec, 0), OCTAL_MAX_12),
    typeflag: TYPEFLAG[entry.type],
    linkname: truncateName(linkname),
    devmajor: Math.min(entry.devmajor ?? 0, OCTAL_MAX_8),
    devminor: Math.min(entry.devminor ?? 0, OCTAL_MAX_8),
  });
  if (sparseMap) out.push(sparseMap);
}

/** A name cut to the 100-byte ustar field (the full one travels in a pax record). */
function truncateName(name: string): string {
  return name.length <= 100 ? name : name.slice(0, 100);
}
