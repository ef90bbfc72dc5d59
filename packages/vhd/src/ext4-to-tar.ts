// ext4 -> tar: walks a filesystem in a deterministic order (directories before their
// contents, names sorted bytewise) and streams a pax tar of it. Hard links become link
// entries, holes become GNU sparse 1.0 entries, and overlayfs whiteouts become OCI whiteouts
// again, so that a layer converted by `convertTar` exports to the tar it came from.
import { InvariantError, VhdError } from "./errors.js";
import { Ext4Reader, type DataRun, type DirEntry, type Ext4Entry } from "./ext4/reader.js";
import { FileMode, type Inode } from "./format/inode.js";
import { ext4AclToVfs } from "./format/posix-acl.js";
import { TAR_BLOCK_SIZE } from "./format/tar-header.js";
import type { Xattr } from "./format/xattr.js";
import type { BlockSource } from "./io/block-source.js";
import { TAR_END, tarPadding, writeEntryHeader, type TarHeaderSink, type TarWriteEntry, type TarWriteType } from "./tar/writer.js";

export interface ExportOptions {
  /** Keep overlayfs whiteouts (0/0 character devices, `trusted.overlay.opaque`) as they are. If not provided, false: they become `.wh.` entries. */
  keepWhiteouts?: boolean;
  /** Export only this directory's contents, with names relative to it (e.g. `upper` in a sandbox). If not provided, the root. */
  path?: string;
  /** Start with a `./` entry carrying the root directory's mode, owner, times and xattrs. If not provided, true. */
  rootEntry?: boolean;
  /**
   * Recycle output buffers: a yielded chunk then stays valid only until the consumer asks for
   * the third chunk after it (so it may have two chunks being written while the next is
   * produced). For consumers that write chunks out promptly. If not provided, false: every
   * chunk is a fresh buffer.
   */
  recycle?: boolean;
  /** Include an empty `/lost+found` (which mkfs and our writer create, but a layer never holds). If not provided, false. */
  keepLostFound?: boolean;
}

export interface ExportSummary {
  entries: Record<string, number>;
  bytesOut: number;
}

/** Output chunk size: large writes and large reads of file data, as on the conversion side. */
const CHUNK = 4 << 20;
/** With `recycle`, yielded chunks the consumer may still hold (writes in flight). */
const RECYCLE_SLACK = 2;
const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";

/**
 * Streams the filesystem on `source` as a tar. Unless `recycle`, each yielded chunk is a fresh
 * buffer. `summary` (when given) is filled in as the walk goes. Damaged structures end the
 * stream with a FORMAT_INVALID error naming them.
 *
 * Two ways of reading, for the same output. Over a disk that reads synchronously (a raw image
 * or a fixed VHD: a file), each entry is read when its turn comes, with no promise per entry:
 * metadata from the reader's cache, and a small file's data straight into the output buffer.
 * Over any other disk (a VHDX), entries are prepared a window ahead (inode, xattrs, link target,
 * small file contents), so that the many small reads of a directory overlap on the thread pool.
 * Large files are read the same way in both: a window of parallel reads into the output.
 */
export async function* ext4ToTar(source: BlockSource, options: ExportOptions = {}, summary: ExportSummary = { entries: {}, bytesOut: 0 }): AsyncGenerator<Uint8Array, void, undefined> {
  const reader = await Ext4Reader.open(source);
  const sync = reader.canReadSync;
  const out = new ChunkBuffer(options.recycle ?? false);
  const walk = new TarWalk(reader, out, options, summary);
  const startIno = options.path ? await reader.lookup(options.path) : reader.root;
  const startInode = await reader.readInode(startIno);
  if ((startInode.mode & FileMode.S_IFMT) !== FileMode.S_IFDIR) throw new VhdError("INVALID_ARGUMENT", `export path ${options.path}: not a directory`);

  /** An entry read ahead, with a small file's whole content (asynchronous disks only). */
  const prepare = async (ino: number): Promise<Prepared> => {
    const entry: Prepared = await reader.entry(ino);
    const runs = entry.runs;
    if (runs && storedBytes(runs) === entry.inode.size && entry.inode.size <= SMALL_FILE) {
      const data = new Uint8Array(entry.inode.size);
      await Promise.all(runs.map((r) => reader.readDisk(data.subarray(r.offset, r.offset + r.length), r.diskOffset)));
      entry.data = data;
    }
    return entry;
  };
  const readDir = async (ino: number, inode: Inode) => (sync ? reader.readDirSync(ino, inode) : await reader.readDir(ino, inode));

  if (options.rootEntry ?? true) walk.writeRoot(startInode, await reader.xattrs(startIno, startInode));
  walk.openDir(startIno, await readDir(startIno, startInode), "", !sync);

  // The loop does the reading and the yielding; TarWalk writes the entries.
  const stack = walk.stack;
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const index = top.next++;
    const item = top.entries[index];
    if (!item) {
      stack.pop();
      continue;
    }
    let entry: Prepared;
    if (!top.ahead) entry = reader.entrySync(item.ino);
    else {
      for (let j = index; j < Math.min(top.entries.length, index + PREFETCH); j++) {
        if (!top.ahead[j]) {
          const p = prepare(top.entries[j]!.ino);
          p.catch(() => {}); // awaited below when its turn comes; never an unhandled rejection
          top.ahead[j] = p;
        }
      }
      entry = await top.ahead[index]!;
      top.ahead[index] = undefined;
    }
    if (walk.maybeLostFound(top.prefix, item.name, entry) && (await readDir(item.ino, entry.inode)).length === 0) continue;

    const step = walk.write(top.prefix, item.name, item.ino, entry, sync);
    if (step === OPEN_DIR) {
      walk.openDir(item.ino, await readDir(item.ino, entry.inode), `${top.prefix}${item.name}/`, !sync);
    } else if (step === STREAM) {
      // A large file streams out while it is read: chunks are yielded as they fill.
      const runs = entry.runs ?? [];
      for await (const chunk of copyRuns(reader, out, runs)) {
        summary.bytesOut += chunk.length;
        yield chunk;
        out.yielded(chunk);
      }
      out.pushZeros(tarPadding(storedBytes(runs)));
    }
    if (out.hasFull) {
      for (const chunk of out.takeFull()) {
        summary.bytesOut += chunk.length;
        yield chunk;
        out.yielded(chunk);
      }
    }
  }
  out.push(TAR_END);
  for (const chunk of out.takeAll()) {
    summary.bytesOut += chunk.length;
    yield chunk;
    out.yielded(chunk);
  }
}

/** What the loop does after `TarWalk.write`: nothing more, ... */
const WRITTEN = 0;
/** ... read the directory just written and walk into it, ... */
const OPEN_DIR = 1;
/** ... or stream the file's data (its header is written). */
const STREAM = 2;
type Step = typeof WRITTEN | typeof OPEN_DIR | typeof STREAM;

/**
 * The walk's state and the writing of each entry: everything but reads that may need an await.
 * (Kept out of the async generator, whose every line costs more to run and to optimize.)
 */
class TarWalk {
  /** An explicit stack instead of recursion: deep trees cannot overflow the JS stack. */
  readonly stack: Frame[] = [];
  /** First path of each inode with several links, for the hard-link entries that follow. */
  private readonly links = new Map<number, string>();
  private readonly visited = new Set<number>();

  constructor(
    private readonly reader: Ext4Reader,
    private readonly out: ChunkBuffer,
    private readonly options: ExportOptions,
    private readonly summary: ExportSummary,
  ) {}

  private count(kind: string): void {
    this.summary.entries[kind] = (this.summary.entries[kind] ?? 0) + 1;
  }

  /** The `./` entry. */
  writeRoot(inode: Inode, xattrs: Xattr[]): void {
    writeEntryHeader(tarEntry(inode, "./", "dir", 0, exportXattrs(xattrs)), this.out);
    this.count("directory");
  }

  /** Walks into directory `ino` next: its entries in bytewise name order. */
  openDir(ino: number, entries: DirEntry[], prefix: string, readAhead: boolean): void {
    if (this.visited.has(ino)) throw new VhdError("FORMAT_INVALID", `ext4: directory inode ${ino} is reachable twice (a cycle in the directory graph) at ${JSON.stringify(prefix)}`);
    this.visited.add(ino);
    // Names are latin1 strings of the raw bytes, so comparing strings compares bytes.
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.stack.push({ prefix, entries, next: 0, ahead: readAhead ? [] : undefined });
  }

  /** True for a root `lost+found` to drop if it is empty (the caller reads it to know). */
  maybeLostFound(prefix: string, name: string, entry: Ext4Entry): boolean {
    return !this.options.keepLostFound && prefix === "" && !this.options.path && name === "lost+found" && entry.type === FileMode.S_IFDIR;
  }

  /**
   * Writes entry `name` of the directory at `prefix`: its header, and the data of an inline
   * or read-ahead file, or (`sync`) of a small one, read straight into the output.
   */
  write(prefix: string, name: string, ino: number, entry: Prepared, sync: boolean): Step {
    const { inode, type } = entry;
    const out = this.out;
    const xattrs = exportXattrs(entry.xattrs);
    const path = prefix + name;
    if (type === FileMode.S_IFDIR) {
      const opaqueAt = this.options.keepWhiteouts ? -1 : xattrs.findIndex((x) => x.name === "trusted.overlay.opaque" && Buffer.from(x.value).toString() === "y");
      if (opaqueAt >= 0) xattrs.splice(opaqueAt, 1);
      writeEntryHeader(tarEntry(inode, `${path}/`, "dir", 0, xattrs), out);
      this.count("directory");
      if (opaqueAt >= 0) {
        const marker = tarEntry(inode, `${path}/${OPAQUE}`, "file", 0);
        marker.mode = 0o644;
        writeEntryHeader(marker, out);
        this.count("opaque");
      }
      return OPEN_DIR;
    }
    if (inode.linksCount > 1) {
      const first = this.links.get(ino);
      if (first !== undefined) {
        const link = tarEntry(inode, path, "hardlink", 0);
        link.linkname = first;
        writeEntryHeader(link, out);
        this.count("hardlink");
        return WRITTEN;
      }
      this.links.set(ino, path);
    }
    if (type === FileMode.S_IFREG) {
      const data = entry.inline ?? entry.data;
      if (data) {
        writeEntryHeader(tarEntry(inode, path, "file", data.length, xattrs), out);
        out.push(data);
        out.pushZeros(tarPadding(data.length));
        this.count("file");
        return WRITTEN;
      }
      const runs = entry.runs ?? [];
      const stored = storedBytes(runs);
      this.count(writeFileHeader(out, inode, runs, path, xattrs));
      if (!sync || stored > SMALL_FILE) return STREAM;
      // A small file: its data read straight into the output buffer.
      for (const r of runs) {
        for (let done = 0; done < r.length; ) {
          const space = out.reserve(r.length - done);
          this.reader.readDiskSync(space, r.diskOffset + done);
          done += space.length;
        }
      }
      out.pushZeros(tarPadding(stored));
    } else if (type === FileMode.S_IFLNK) {
      const symlink = tarEntry(inode, path, "symlink", 0, xattrs);
      symlink.linkname = entry.link ?? "";
      writeEntryHeader(symlink, out);
      this.count("symlink");
    } else if (type === FileMode.S_IFCHR || type === FileMode.S_IFBLK) {
      const { major, minor } = this.reader.device(inode);
      if (!this.options.keepWhiteouts && type === FileMode.S_IFCHR && major === 0 && minor === 0) {
        writeEntryHeader(tarEntry(inode, prefix + WHITEOUT + name, "file", 0), out);
        this.count("whiteout");
      } else {
        const device = tarEntry(inode, path, type === FileMode.S_IFCHR ? "char" : "block", 0, xattrs);
        device.devmajor = major;
        device.devminor = minor;
        writeEntryHeader(device, out);
        this.count(type === FileMode.S_IFCHR ? "char" : "block");
      }
    } else if (type === FileMode.S_IFIFO) {
      writeEntryHeader(tarEntry(inode, path, "fifo", 0, xattrs), out);
      this.count("fifo");
    } else {
      // Sockets cannot be archived (tar has no type for them); tar itself skips them too.
      this.count("skipped");
    }
    return WRITTEN;
  }
}

/** An entry as the walk writes it: with a small file's whole content when it was read ahead. */
interface Prepared extends Ext4Entry {
  data?: Uint8Array;
}

interface Frame {
  prefix: string;
  entries: DirEntry[];
  next: number;
  /** Entries being prepared ahead, by index (asynchronous disks only). */
  ahead: (Promise<Prepared> | undefined)[] | undefined;
}

/** Entries prepared ahead of the one being written. */
const PREFETCH = 32;
/** Files up to this size are read whole while prepared (asynchronous disks) or when written (synchronous ones). */
const SMALL_FILE = 256 << 10;

/** Bytes of data stored for `runs` (less than the file size when it has holes). */
function storedBytes(runs: readonly DataRun[]): number {
  let n = 0;
  for (const r of runs) n += r.length;
  return n;
}

/**
 * The header of a regular file read from runs: a plain file entry, or a GNU sparse one when
 * the file has holes. Returns the kind to count. The caller writes the runs' data and padding.
 */
function writeFileHeader(out: ChunkBuffer, inode: Inode, runs: DataRun[], path: string, xattrs: readonly Xattr[]): string {
  const stored = storedBytes(runs);
  const entry = tarEntry(inode, path, "file", stored, xattrs);
  if (stored === inode.size) {
    writeEntryHeader(entry, out);
    return "file";
  }
  const map = runs.map((r) => ({ offset: r.offset, length: r.length }));
  // A trailing hole is recorded as an empty region at the end, as GNU tar does.
  const last = runs[runs.length - 1];
  if (!last || last.offset + last.length < inode.size) map.push({ offset: inode.size, length: 0 });
  entry.sparse = { map, realSize: inode.size };
  writeEntryHeader(entry, out);
  return "sparse";
}

/**
 * A tar entry with `inode`'s permission bits, owner and mtime; callers set link names, device
 * numbers or a sparse map on it. (Built field by field: object spreads cost more than all the
 * rest of an entry's header.)
 */
function tarEntry(inode: Inode, path: string, type: TarWriteType, size: number, xattrs?: readonly Xattr[]): TarWriteEntry {
  return { path, type, size, mode: inode.mode & 0o7777, uid: inode.uid, gid: inode.gid, mtime: inode.mtime, xattrs };
}

/** Output chunks being read into at once, so the thread pool reads ahead of the writer. */
const READ_WINDOW = 4;

/**
 * Reads the runs' bytes straight into the output chunks and yields each chunk as soon as its
 * reads are done, while the reads of the next few chunks are in flight: reading the image and
 * writing the tar (on the consumer's side) overlap, and memory stays at a few chunks whatever
 * the file's size. The data in the chunk being filled when the runs end is read before this
 * returns.
 */
async function* copyRuns(reader: Ext4Reader, out: ChunkBuffer, runs: DataRun[]): AsyncGenerator<Uint8Array> {
  // Chunks filled before (by the header) hold no pending reads.
  yield* out.takeFull();
  /** For each full chunk not yet yielded, oldest first: its reads. */
  const filled: Promise<unknown>[] = [];
  let reads: Promise<void>[] = [];
  try {
    for (const r of runs) {
      for (let done = 0; done < r.length; ) {
        const space = out.reserve(r.length - done);
        reads.push(reader.readDisk(space, r.diskOffset + done));
        done += space.length;
        if (out.fullCount === filled.length) continue;
        // That read completed a chunk.
        const all = Promise.all(reads);
        all.catch(() => {}); // awaited in turn below; never an unhandled rejection
        filled.push(all);
        reads = [];
        if (filled.length >= READ_WINDOW) {
          await filled.shift();
          yield out.takeOldest();
        }
      }
    }
    while (filled.length > 0) {
      await filled.shift();
      yield out.takeOldest();
    }
  } finally {
    // Also on an error or an early return: no read may still be writing into a chunk.
    await Promise.allSettled([...filled, ...reads]);
  }
  await Promise.all(reads);
}

/** Xattrs as a tar carries them: ACLs back in the Linux VFS form, the inline-data carrier dropped. */
function exportXattrs(list: Xattr[]): Xattr[] {
  if (list.length === 0) return list; // most entries: no new arrays
  return list
    .filter((x) => x.name !== "system.data")
    .map((x) => (x.name === "system.posix_acl_access" || x.name === "system.posix_acl_default" ? { name: x.name, value: ext4AclToVfs(x.value) } : x))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Output gathered into large chunks; headers are encoded and file data read directly into the
 * chunk being filled. With `recycle`, chunks come back to a pool once the consumer is past them:
 * fresh memory costs a page fault per 4 KiB, more than the copy it carries.
 */
class ChunkBuffer implements TarHeaderSink {
  private full: Uint8Array[] = [];
  private readonly pool: Uint8Array[] = [];
  /** Chunks the consumer may still be writing, oldest first (see `ExportOptions.recycle`). */
  private readonly lent: Uint8Array[] = [];
  private chunk: Uint8Array;
  private fill = 0;

  constructor(private readonly recycle: boolean) {
    this.chunk = this.fresh();
  }

  /** Called when the consumer resumes after `chunk`: the one two before it is then free. */
  yielded(chunk: Uint8Array): void {
    if (!this.recycle) return;
    this.lent.push(chunk);
    if (this.lent.length <= RECYCLE_SLACK) return;
    const free = this.lent.shift()!;
    if (free.length === CHUNK) this.pool.push(free);
  }

  private fresh(): Uint8Array {
    return this.pool.pop() ?? new Uint8Array(CHUNK);
  }

  push(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, CHUNK - this.fill);
      this.chunk.set(n === bytes.length ? bytes : bytes.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === CHUNK) this.rotate();
    }
  }

  pushZeros(n: number): void {
    let left = n;
    while (left > 0) {
      const k = Math.min(left, CHUNK - this.fill);
      this.chunk.fill(0, this.fill, this.fill + k);
      this.fill += k;
      left -= k;
      if (this.fill === CHUNK) this.rotate();
    }
  }

  /** Up to `n` bytes of the current chunk, counted as written: the caller fills them. */
  reserve(n: number): Uint8Array {
    const k = Math.min(n, CHUNK - this.fill);
    const space = this.chunk.subarray(this.fill, this.fill + k);
    this.fill += k;
    if (this.fill === CHUNK) this.rotate();
    return space;
  }

  /**
   * The next 512 bytes, for a header encoded in place. Everything before a header is a whole
   * number of 512-byte blocks and a chunk is too, so a header never straddles two chunks.
   */
  block(): Uint8Array {
    if (this.fill % TAR_BLOCK_SIZE !== 0) throw new InvariantError(`tar header at ${this.fill} bytes into an output chunk, not at a block boundary`);
    return this.reserve(TAR_BLOCK_SIZE);
  }

  /** True when chunks are ready for `takeFull`. */
  get hasFull(): boolean {
    return this.full.length > 0;
  }

  /** Full chunks not yet taken. */
  get fullCount(): number {
    return this.full.length;
  }

  /** The oldest full chunk (there must be one). */
  takeOldest(): Uint8Array {
    const chunk = this.full.shift();
    if (!chunk) throw new InvariantError("no full output chunk to take");
    return chunk;
  }

  takeFull(): Uint8Array[] {
    const f = this.full;
    this.full = [];
    return f;
  }

  takeAll(): Uint8Array[] {
    if (this.fill > 0) {
      this.full.push(this.chunk.subarray(0, this.fill));
      this.chunk = this.fresh();
      this.fill = 0;
    }
    return this.takeFull();
  }

  private rotate(): void {
    this.full.push(this.chunk);
    this.chunk = this.fresh();
    this.fill = 0;
  }
}
