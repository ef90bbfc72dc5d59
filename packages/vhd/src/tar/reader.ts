// A streaming tar reader for every dialect a container layer carries: V7, ustar, GNU (long
// names, old sparse headers) and pax (per-entry and global records, binary xattrs, sparse
// 0.0/0.1/1.0). We read tar ourselves instead of through tar-stream because tar-stream decodes
// pax values as UTF-8 (corrupting binary xattrs such as security.capability), keeps only the
// last of repeated pax keys (losing sparse 0.0 maps), ignores GNU sparse headers, and reports
// errors without the offending offset.
import { VhdError } from "../errors.js";
import { decodeGnuSparseExtension, decodeTarHeader, isZeroBlock, TAR_BLOCK_SIZE, type SparseRegion, type TarHeader } from "../format/tar-header.js";
import { decodePaxRecords, parsePaxTime, type PaxRecord } from "../format/pax.js";
import type { Xattr } from "../format/xattr.js";
import { ByteSource } from "./byte-source.js";

export type TarEntryType = "file" | "hardlink" | "symlink" | "char" | "block" | "dir" | "fifo";

export interface TarTime {
  sec: number;
  nsec: number;
}

/** One archive member with every extension applied. Names are latin1 strings of the raw bytes. */
export interface TarEntry {
  type: TarEntryType;
  path: string;
  linkname: string;
  /** Permission bits and setuid/setgid/sticky (the type bits some writers add are dropped). */
  mode: number;
  uid: number;
  gid: number;
  mtime: TarTime;
  atime: TarTime | undefined;
  ctime: TarTime | undefined;
  devmajor: number;
  devminor: number;
  xattrs: Xattr[];
  /** Size of the file (for a sparse file, its apparent size). */
  size: number;
  /** For sparse files, the data regions in order; the stored data is their concatenation. */
  sparse: SparseRegion[] | undefined;
  /** Bytes of data stored in the archive for this entry (what `read` returns in total). */
  dataSize: number;
  /** Offset of the entry's first header (including pax/GNU extension headers) in the stream. */
  headerOffset: number;
}

export interface TarReaderWarning {
  code: string;
  message: string;
  path?: string;
}

export interface TarReaderOptions {
  /**
   * Sees every byte of the stream except entry data returned by `read`/`readBuffered` (which
   * the caller accounts for): headers, extension bodies, padding, skipped data, the trailer.
   */
  onRawBytes?: (bytes: Uint8Array) => void;
  onWarning?: (w: TarReaderWarning) => void;
  /** Receives every header block and extension body as read (e.g. to digest the metadata). */
  onHeaderBytes?: (bytes: Uint8Array) => void;
}

/** Largest pax or GNU long-name body we accept: real headers are a few KiB. */
const MAX_EXTENSION_SIZE = 1 << 20;

export class TarReader {
  private readonly src: ByteSource;
  private readonly warn: (w: TarReaderWarning) => void;
  private readonly onHeaderBytes: ((bytes: Uint8Array) => void) | undefined;
  private globalPax: PaxRecord[] = [];
  private remaining = 0; // data bytes of the current entry not yet read
  private padding = 0; // zero padding after the current entry's data
  private current: TarEntry | undefined;
  private finished = false;

  constructor(source: AsyncIterable<Uint8Array>, options: TarReaderOptions = {}) {
    this.src = new ByteSource(source);
    this.warn = options.onWarning ?? (() => {});
    this.onHeaderBytes = options.onHeaderBytes;
    this.src.onConsume = options.onRawBytes;
  }

  /** Bytes of the stream consumed so far. */
  get position(): number {
    return this.src.position;
  }

  /**
   * The next entry, or null after the end-of-archive marker (or a clean end of input on a
   * block boundary). Unread data of the previous entry is skipped.
   */
  async next(): Promise<TarEntry | null> {
    if (this.finished) return null;
    await this.finishCurrent();
    let longName: string | undefined;
    let longLink: string | undefined;
    let pax: PaxRecord[] | undefined;
    let firstOffset = -1;
    for (;;) {
      const offset = this.src.position;
      if (firstOffset < 0) firstOffset = offset;
      if (!(await this.src.ensure(TAR_BLOCK_SIZE))) {
        if (this.src.buffered === 0 && firstOffset === offset) {
          // Input ended on a block boundary without the end marker: GNU tar accepts this with a
          // warning, and so do we (an error under `strict`: the stream may have been cut short).
          this.finished = true;
          this.warn({ code: "TAR_NO_END_MARKER", message: `tar stream ended at offset ${offset} without the end-of-archive blocks` });
          return null;
        }
        throw truncated(offset, longName ?? "", "in a header");
      }
      const block = this.src.take(TAR_BLOCK_SIZE);
      if (isZeroBlock(block)) {
        if (firstOffset !== offset) throw new VhdError("TAR_HEADER_INVALID", `tar header at offset ${offset}: end marker after an extension header`, { offset });
        this.finished = true;
        await this.drainTrailer();
        return null;
      }
      const h = decodeTarHeader(block, offset);
      this.onHeaderBytes?.(block);
      if (h.size < 0) throw new VhdError("TAR_HEADER_INVALID", `tar header at offset ${offset} (${JSON.stringify(display(h.name))}): negative size ${h.size}`, { offset, path: display(h.name) });
      switch (h.typeflag) {
        case "x":
        case "g": {
          const body = await this.readExtension(h, offset);
          const records = decodePaxRecords(body, offset);
          if (h.typeflag === "g") this.globalPax = mergeGlobal(this.globalPax, records);
          else pax = [...(pax ?? []), ...records];
          continue;
        }
        case "L":
          longName = nulTerminated(await this.readExtension(h, offset));
          continue;
        case "K":
          longLink = nulTerminated(await this.readExtension(h, offset));
          continue;
        case "V": // GNU volume label: not a file
        case "N": // old GNU long-name records: obsolete, GNU tar itself ignores them
          this.warn({ code: "TAR_IGNORED_ENTRY", message: `ignoring tar entry of type '${h.typeflag}' at offset ${offset}`, path: display(h.name) });
          await this.skipData(h.size, offset, h.name);
          firstOffset = -1;
          continue;
        case "M":
          throw new VhdError("TAR_ENTRY_INVALID", `tar entry at offset ${offset} (${JSON.stringify(display(h.name))}): multi-volume continuation entries are not supported`, { offset, path: display(h.name) });
      }
      return this.startEntry(h, offset, firstOffset, longName, longLink, pax === undefined ? this.globalPax : [...this.globalPax, ...pax]);
    }
  }

  /**
   * `next()` without waiting, for the common case: the rest of the current entry and the next
   * header are already buffered and the header is a plain one (no pax, GNU long name or sparse
   * extension). Returns undefined when `next()` must be used instead; nothing is lost then.
   */
  nextBuffered(): TarEntry | null | undefined {
    if (this.finished) return null;
    if (this.current) {
      if (!this.src.skipBuffered(this.remaining + this.padding)) return undefined;
      this.current = undefined;
      this.remaining = 0;
      this.padding = 0;
    }
    const block = this.src.peek(TAR_BLOCK_SIZE);
    if (!block) return undefined;
    const flag = block[156];
    // x, g, L, K, S, V, N, M and the end marker take the general path.
    if (flag === 0x78 || flag === 0x67 || flag === 0x4c || flag === 0x4b || flag === 0x53 || flag === 0x56 || flag === 0x4e || flag === 0x4d || block[0] === 0) return undefined;
    if (this.globalPax.length > 0) return undefined;
    const offset = this.src.position;
    const h = decodeTarHeader(block, offset, false);
    if (h.size < 0) return undefined;
    this.src.skipBuffered(TAR_BLOCK_SIZE);
    this.onHeaderBytes?.(block);
    return this.plainEntry(h, offset, h.name, h.linkname);
  }

  /** `read()` without waiting: a chunk if data is buffered, null at the entry's end, undefined when `read()` must wait. */
  readBuffered(max = Number.MAX_SAFE_INTEGER): Uint8Array | null | undefined {
    if (this.remaining === 0) return null;
    if (this.src.buffered === 0) return undefined;
    const chunk = this.src.takeSome(Math.min(max, this.remaining), true);
    this.remaining -= chunk.length;
    return chunk;
  }

  /**
   * The next piece of the current entry's data (at most `max` bytes, zero-copy when possible),
   * or null when the entry's data is exhausted. Truncated input is a TAR_TRUNCATED error.
   */
  async read(max = Number.MAX_SAFE_INTEGER): Promise<Uint8Array | null> {
    if (this.remaining === 0) return null;
    if (this.src.buffered === 0 && !(await this.src.pull())) {
      throw truncated(this.src.position, this.current?.path ?? "", "in the entry's data");
    }
    const chunk = this.src.takeSome(Math.min(max, this.remaining), true);
    this.remaining -= chunk.length;
    return chunk;
  }

  /** Stops reading: closes the underlying source. */
  async close(): Promise<void> {
    await this.src.close();
  }

  private async startEntry(h: TarHeader, offset: number, firstOffset: number, longName: string | undefined, longLink: string | undefined, records: PaxRecord[]): Promise<TarEntry> {
    if (records.length === 0 && h.typeflag !== "S") return this.plainEntry(h, firstOffset, longName ?? h.name, longLink ?? h.linkname);
    const px = new Map<string, Uint8Array>();
    const xattrs = new Map<string, Uint8Array>();
    const libarchiveXattrs = new Map<string, Uint8Array>();
    const sparse00: number[] = [];
    for (const r of records) {
      if (r.key.startsWith("SCHILY.xattr.")) xattrs.set(r.key.slice(13), r.value);
      else if (r.key.startsWith("LIBARCHIVE.xattr.")) libarchiveXattrs.set(decodeURIComponentLatin1(r.key.slice(17)), Buffer.from(Buffer.from(r.value).toString("latin1"), "base64"));
      else if (r.key === "GNU.sparse.offset" || r.key === "GNU.sparse.numbytes") sparse00.push(paxNumber(r, offset, h.name));
      else px.set(r.key, r.value);
    }
    for (const [name, value] of libarchiveXattrs) if (!xattrs.has(name)) xattrs.set(name, value);
    const text = (key: string) => {
      const v = px.get(key);
      return v === undefined ? undefined : Buffer.from(v).toString("latin1");
    };
    const number = (key: string, fallback: number) => {
      const v = px.get(key);
      return v === undefined ? fallback : paxNumber({ key, value: v }, offset, h.name);
    };
    const time = (key: string, fallback: TarTime | undefined) => {
      const t = text(key);
      if (t === undefined) return fallback;
      const parsed = parsePaxTime(t);
      if (!parsed) throw new VhdError("TAR_HEADER_INVALID", `pax header at offset ${firstOffset} (${JSON.stringify(display(h.name))}): bad ${key} ${JSON.stringify(t)}`, { offset: firstOffset, path: display(h.name) });
      return parsed;
    };

    let path = text("path") ?? longName ?? h.name;
    const linkname = text("linkpath") ?? longLink ?? h.linkname;
    let dataSize = number("size", h.size);
    let size = dataSize;
    let sparse: SparseRegion[] | undefined;

    // GNU sparse files in pax form (formats 0.0, 0.1 and 1.0, as GNU tar writes them).
    const major = text("GNU.sparse.major");
    const minor = text("GNU.sparse.minor");
    const mapText = text("GNU.sparse.map");
    const isPaxSparse = major !== undefined || minor !== undefined || mapText !== undefined || sparse00.length > 0;
    if (isPaxSparse) {
      path = text("GNU.sparse.name") ?? path;
      size = number("GNU.sparse.realsize", number("GNU.sparse.size", size));
      if (major === "1") {
        const { map, consumed } = await this.readSparseMap1(offset, path, dataSize);
        sparse = map;
        dataSize -= consumed;
      } else {
        const nums = mapText !== undefined ? mapText.split(",").filter((s) => s !== "").map((s) => strictInt(s, offset, path)) : sparse00;
        if (nums.length % 2 !== 0) throw new VhdError("TAR_HEADER_INVALID", `pax header at offset ${firstOffset} (${JSON.stringify(display(path))}): sparse map has an odd number of values`, { offset: firstOffset, path: display(path) });
        sparse = [];
        for (let i = 0; i < nums.length; i += 2) sparse.push({ offset: nums[i]!, length: nums[i + 1]! });
      }
    } else if (h.typeflag === "S") {
      sparse = [...(h.sparse ?? [])];
      let extended = h.isExtended ?? false;
      while (extended) {
        const at = this.src.position;
        if (!(await this.src.ensure(TAR_BLOCK_SIZE))) throw truncated(at, path, "in a GNU sparse extension header");
        const ext = decodeGnuSparseExtension(this.src.take(TAR_BLOCK_SIZE), at);
        sparse.push(...ext.sparse);
        extended = ext.isExtended;
      }
      size = h.realSize ?? size;
    }
    if (sparse) validateSparse(sparse, size, dataSize, offset, path);

    let type = this.entryType(h, offset, path);
    if (type === "file" && h.typeflag !== "S" && path.endsWith("/")) type = "dir";

    const mtime = time("mtime", { sec: h.mtime, nsec: 0 })!;
    const entry: TarEntry = {
      type,
      path,
      linkname,
      mode: h.mode & 0o7777,
      uid: number("uid", h.uid),
      gid: number("gid", h.gid),
      mtime,
      atime: time("atime", h.atime !== undefined && h.atime !== 0 ? { sec: h.atime, nsec: 0 } : undefined),
      ctime: time("ctime", h.ctime !== undefined && h.ctime !== 0 ? { sec: h.ctime, nsec: 0 } : undefined),
      devmajor: number("SCHILY.devmajor", h.devmajor),
      devminor: number("SCHILY.devminor", h.devminor),
      xattrs: [...xattrs].map(([name, value]) => ({ name, value })),
      size: type === "file" ? size : 0,
      sparse,
      dataSize,
      headerOffset: firstOffset,
    };
    if (entry.uid < 0 || entry.gid < 0) throw new VhdError("TAR_HEADER_INVALID", `tar header at offset ${offset} (${JSON.stringify(display(path))}): negative uid or gid`, { offset, path: display(path) });
    this.current = entry;
    this.remaining = dataSize;
    this.padding = (TAR_BLOCK_SIZE - (dataSize % TAR_BLOCK_SIZE)) % TAR_BLOCK_SIZE;
    return entry;
  }

  /** The common case (no pax records, not sparse), without the maps of the general path. */
  private plainEntry(h: TarHeader, firstOffset: number, path: string, linkname: string): TarEntry {
    const type = this.entryType(h, firstOffset, path);
    const entry: TarEntry = {
      type,
      path,
      linkname,
      mode: h.mode & 0o7777,
      uid: h.uid,
      gid: h.gid,
      mtime: { sec: h.mtime, nsec: 0 },
      atime: h.atime ? { sec: h.atime, nsec: 0 } : undefined,
      ctime: h.ctime ? { sec: h.ctime, nsec: 0 } : undefined,
      devmajor: h.devmajor,
      devminor: h.devminor,
      xattrs: NO_XATTRS,
      size: type === "file" ? h.size : 0,
      sparse: undefined,
      dataSize: h.size,
      headerOffset: firstOffset,
    };
    this.current = entry;
    this.remaining = h.size;
    this.padding = (TAR_BLOCK_SIZE - (h.size % TAR_BLOCK_SIZE)) % TAR_BLOCK_SIZE;
    return entry;
  }

  private entryType(h: TarHeader, offset: number, path: string): TarEntryType {
    switch (h.typeflag) {
      case "0":
      case "7":
        // Old V7 and some writers mark directories only by a trailing slash on a regular file.
        return path.endsWith("/") ? "dir" : "file";
      case "S":
        return "file";
      case "1":
        return "hardlink";
      case "2":
        return "symlink";
      case "3":
        return "char";
      case "4":
        return "block";
      case "5":
      case "D": // GNU dumpdir: a directory whose data lists its contents; the list is not needed
        return "dir";
      case "6":
        return "fifo";
      default:
        // POSIX: an unknown type is read as a regular file; GNU tar does the same, with a warning.
        this.warn({ code: "TAR_UNKNOWN_TYPE", message: `tar entry at offset ${offset} has unknown type '${h.typeflag}'; read as a regular file`, path: display(path) });
        return path.endsWith("/") ? "dir" : "file";
    }
  }

  private async finishCurrent(): Promise<void> {
    if (!this.current) return;
    const entry = this.current;
    const left = this.remaining + this.padding;
    this.remaining = 0;
    this.padding = 0;
    this.current = undefined;
    if (left > 0 && !(await this.src.skip(left))) throw truncated(this.src.position, entry.path, "in the entry's data");
  }

  private async skipData(size: number, offset: number, name: string): Promise<void> {
    const padded = Math.ceil(size / TAR_BLOCK_SIZE) * TAR_BLOCK_SIZE;
    if (!(await this.src.skip(padded))) throw truncated(offset, name, "in the entry's data");
  }

  private async readExtension(h: TarHeader, offset: number): Promise<Uint8Array> {
    if (h.size > MAX_EXTENSION_SIZE) {
      throw new VhdError("TAR_HEADER_INVALID", `tar header at offset ${offset}: extension header of ${h.size} bytes is larger than ${MAX_EXTENSION_SIZE}`, { offset });
    }
    const padded = Math.ceil(h.size / TAR_BLOCK_SIZE) * TAR_BLOCK_SIZE;
    if (!(await this.src.ensure(padded))) throw truncated(offset, h.name, "in an extension header");
    const body = this.src.take(padded).slice(0, h.size);
    this.onHeaderBytes?.(body);
    return body;
  }

  /** GNU sparse 1.0: the map is at the start of the data, decimal lines, padded to a block. */
  private async readSparseMap1(offset: number, path: string, dataSize: number): Promise<{ map: SparseRegion[]; consumed: number }> {
    const numbers: number[] = [];
    let want = -1;
    let consumed = 0;
    let partial = "";
    while (want < 0 || numbers.length < 1 + want * 2) {
      if (consumed + TAR_BLOCK_SIZE > dataSize || !(await this.src.ensure(TAR_BLOCK_SIZE))) throw truncated(offset, path, "in a sparse map");
      const block = Buffer.from(this.src.take(TAR_BLOCK_SIZE)).toString("latin1");
      consumed += TAR_BLOCK_SIZE;
      const lines = (partial + block).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (want >= 0 && numbers.length >= 1 + want * 2) break;
        numbers.push(strictInt(line, offset, path));
        if (numbers.length === 1) {
          want = numbers[0]!;
          if (want > 1 << 20) throw new VhdError("TAR_HEADER_INVALID", `tar entry at offset ${offset} (${JSON.stringify(display(path))}): sparse map of ${want} regions`, { offset, path: display(path) });
        }
      }
    }
    const map: SparseRegion[] = [];
    for (let i = 1; i < numbers.length; i += 2) map.push({ offset: numbers[i]!, length: numbers[i + 1]! });
    return { map, consumed };
  }

  private async drainTrailer(): Promise<void> {
    // Read the rest (the second zero block and any padding up to the record size) so that a
    // digest over the stream covers the whole blob and a pipe writer never sees EPIPE.
    while (await this.src.pull()) this.src.takeSome(this.src.buffered);
    while (this.src.buffered > 0) this.src.takeSome(this.src.buffered);
  }
}

const NO_XATTRS: Xattr[] = [];

function mergeGlobal(current: PaxRecord[], records: PaxRecord[]): PaxRecord[] {
  const keys = new Set(records.map((r) => r.key));
  return [...current.filter((r) => !keys.has(r.key)), ...records];
}

function paxNumber(r: PaxRecord, offset: number, name: string): number {
  return strictInt(Buffer.from(r.value).toString("latin1"), offset, name, r.key);
}

function strictInt(text: string, offset: number, name: string, key = "sparse map"): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new VhdError("TAR_HEADER_INVALID", `tar header at offset ${offset} (${JSON.stringify(display(name))}): bad ${key} value ${JSON.stringify(text.slice(0, 40))}`, { offset, path: display(name) });
  }
  return Number(text);
}

function validateSparse(map: SparseRegion[], size: number, dataSize: number, offset: number, path: string): void {
  let end = 0;
  let total = 0;
  for (const r of map) {
    if (r.offset < end || r.offset + r.length > size) {
      throw new VhdError("TAR_HEADER_INVALID", `tar entry at offset ${offset} (${JSON.stringify(display(path))}): sparse region ${r.offset}+${r.length} overlaps or exceeds the file size ${size}`, { offset, path: display(path) });
    }
    end = r.offset + r.length;
    total += r.length;
  }
  if (total !== dataSize) {
    throw new VhdError("TAR_HEADER_INVALID", `tar entry at offset ${offset} (${JSON.stringify(display(path))}): sparse map covers ${total} bytes but ${dataSize} are stored`, { offset, path: display(path) });
  }
}

function nulTerminated(body: Uint8Array): string {
  const nul = body.indexOf(0);
  return Buffer.from(nul === -1 ? body : body.subarray(0, nul)).toString("latin1");
}

function decodeURIComponentLatin1(s: string): string {
  // libarchive percent-encodes xattr names; the bytes are then taken as latin1 like all names.
  return Buffer.from(s.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1").toString("latin1");
}

function truncated(offset: number, path: string, where: string): VhdError {
  return new VhdError("TAR_TRUNCATED", `tar stream ended at offset ${offset}${path ? ` (${JSON.stringify(display(path))})` : ""} ${where}`, { offset, path: path ? display(path) : undefined });
}

/** A latin1 (raw bytes) name as readable UTF-8 text, for messages. */
export function display(name: string): string {
  return Buffer.from(name, "latin1").toString("utf8");
}
