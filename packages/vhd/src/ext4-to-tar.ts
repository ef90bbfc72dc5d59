// ext4 -> tar: walks a filesystem in a deterministic order (directories before their
// contents, names sorted bytewise) and streams a pax tar of it. Hard links become link
// entries, holes become GNU sparse 1.0 entries, and overlayfs whiteouts become OCI whiteouts
// again, so that a layer converted by `convertTar` exports to the tar it came from.
import { VhdError } from "./errors.js";
import { Ext4Reader, type DataRun } from "./ext4/reader.js";
import { FileMode, InodeFlag, type Inode } from "./format/inode.js";
import { ext4AclToVfs } from "./format/posix-acl.js";
import type { Xattr } from "./format/xattr.js";
import type { BlockSource } from "./io/block-source.js";
import { encodeEntryHeader, TAR_END, tarPadding, type TarWriteEntry } from "./tar/writer.js";

export interface ExportOptions {
  /** Keep overlayfs whiteouts (0/0 character devices, `trusted.overlay.opaque`) as they are. If not provided, false: they become `.wh.` entries. */
  keepWhiteouts?: boolean;
  /** Export only this directory's contents, with names relative to it (e.g. `upper` in a sandbox). If not provided, the root. */
  path?: string;
  /** Start with a `./` entry carrying the root directory's mode, owner, times and xattrs. If not provided, true. */
  rootEntry?: boolean;
  /**
   * Recycle output buffers: a yielded chunk then stays valid only until the consumer asks for
   * the chunk after the next one (so it may write one chunk while the next is produced). For
   * consumers that write each chunk out before asking again. If not provided, false: every
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
const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";

/**
 * Streams the filesystem on `source` as a tar. Each yielded chunk is a fresh buffer. `summary`
 * (when given) is filled in as the walk goes. Damaged structures end the stream with a
 * FORMAT_INVALID error naming them.
 */
export async function* ext4ToTar(source: BlockSource, options: ExportOptions = {}, summary: ExportSummary = { entries: {}, bytesOut: 0 }): AsyncGenerator<Uint8Array, void, undefined> {
  const reader = await Ext4Reader.open(source);
  const out = new ChunkBuffer(options.recycle ?? false);
  const count = (kind: string) => {
    summary.entries[kind] = (summary.entries[kind] ?? 0) + 1;
  };
  const links = new Map<number, string>();
  const visited = new Set<number>();
  const startIno = options.path ? await reader.lookup(options.path) : reader.root;
  const startInode = await reader.readInode(startIno);
  if ((startInode.mode & FileMode.S_IFMT) !== FileMode.S_IFDIR) throw new VhdError("INVALID_ARGUMENT", `export path ${options.path}: not a directory`);

  // Entries are prepared (inode, xattrs, link target, small file contents) a window ahead of
  // the one being written, so the many small reads of a directory overlap on the thread pool.
  const prepare = async (ino: number): Promise<Prepared> => {
    const inode = await reader.readInode(ino);
    const type = inode.mode & FileMode.S_IFMT;
    const prepared: Prepared = { inode, type, xattrs: exportXattrs(await reader.xattrs(ino, inode)) };
    if (type === FileMode.S_IFLNK) prepared.link = await reader.readLink(ino, inode);
    else if (type === FileMode.S_IFREG) {
      if (inode.flags & InodeFlag.INLINE_DATA) prepared.data = await reader.inlineData(ino, inode);
      else {
        prepared.runs = await reader.dataRuns(ino, inode);
        const stored = prepared.runs.reduce((n, r) => n + r.length, 0);
        if (stored === inode.size && inode.size <= SMALL_FILE) {
          const data = new Uint8Array(inode.size);
          await Promise.all(prepared.runs.map((r) => reader.readDisk(data.subarray(r.offset, r.offset + r.length), r.diskOffset)));
          prepared.data = data;
        }
      }
    }
    return prepared;
  };

  // An explicit stack instead of recursion: deep trees cannot overflow the JS stack.
  const stack: Frame[] = [];
  const openDir = async (ino: number, inode: Inode, prefix: string) => {
    if (visited.has(ino)) throw new VhdError("FORMAT_INVALID", `ext4: directory inode ${ino} is reachable twice (a cycle in the directory graph) at ${JSON.stringify(prefix)}`);
    visited.add(ino);
    const entries = (await reader.readDir(ino, inode)).map((e) => ({ name: e.name, ino: e.ino }));
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    stack.push({ prefix, entries, next: 0, ahead: [] });
  };
  if (options.rootEntry ?? true) {
    const xattrs = exportXattrs(await reader.xattrs(startIno, startInode));
    out.push(encodeEntryHeader({ path: "./", type: "dir", size: 0, mode: startInode.mode & 0o7777, uid: startInode.uid, gid: startInode.gid, mtime: startInode.mtime, xattrs }));
    count("directory");
  }
  await openDir(startIno, startInode, "");

  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const index = top.next++;
    const item = top.entries[index];
    if (!item) {
      stack.pop();
      continue;
    }
    for (let j = index; j < Math.min(top.entries.length, index + PREFETCH); j++) {
      if (!top.ahead[j]) {
        const p = prepare(top.entries[j]!.ino);
        p.catch(() => {}); // awaited below when its turn comes; never an unhandled rejection
        top.ahead[j] = p;
      }
    }
    const { inode, type, xattrs, link, data, runs } = await top.ahead[index]!;
    top.ahead[index] = undefined;
    const path = top.prefix + item.name;
    const base = { mode: inode.mode & 0o7777, uid: inode.uid, gid: inode.gid, mtime: inode.mtime };

    if (type === FileMode.S_IFDIR) {
      if (!options.keepLostFound && top.prefix === "" && !options.path && item.name === "lost+found" && (await reader.readDir(item.ino, inode)).length === 0) continue;
      const opaqueAt = options.keepWhiteouts ? -1 : xattrs.findIndex((x) => x.name === "trusted.overlay.opaque" && Buffer.from(x.value).toString() === "y");
      if (opaqueAt >= 0) xattrs.splice(opaqueAt, 1);
      out.push(encodeEntryHeader({ ...base, path: `${path}/`, type: "dir", size: 0, xattrs }));
      count("directory");
      if (opaqueAt >= 0) {
        out.push(encodeEntryHeader({ ...base, mode: 0o644, path: `${path}/${OPAQUE}`, type: "file", size: 0 }));
        count("opaque");
      }
      await openDir(item.ino, inode, `${path}/`);
    } else if (inode.linksCount > 1 && links.has(item.ino)) {
      out.push(encodeEntryHeader({ ...base, path, type: "hardlink", size: 0, linkname: links.get(item.ino)! }));
      count("hardlink");
    } else {
      if (inode.linksCount > 1) links.set(item.ino, path);
      if (type === FileMode.S_IFREG) {
        if (data) {
          out.push(encodeEntryHeader({ ...base, path, xattrs, type: "file", size: data.length }));
          out.push(data);
          out.pushZeros(tarPadding(data.length));
          count("file");
        } else {
          // Large files stream out while they are read: chunks are yielded as they fill.
          for await (const chunk of writeFile(reader, out, inode, runs ?? [], { ...base, path, xattrs }, count)) {
            summary.bytesOut += chunk.length;
            yield chunk;
            out.yielded(chunk);
          }
        }
      } else if (type === FileMode.S_IFLNK) {
        out.push(encodeEntryHeader({ ...base, path, type: "symlink", size: 0, linkname: link ?? "", xattrs }));
        count("symlink");
      } else if (type === FileMode.S_IFCHR || type === FileMode.S_IFBLK) {
        const { major, minor } = reader.device(inode);
        if (!options.keepWhiteouts && type === FileMode.S_IFCHR && major === 0 && minor === 0) {
          out.push(encodeEntryHeader({ ...base, path: top.prefix + WHITEOUT + item.name, type: "file", size: 0 }));
          count("whiteout");
        } else {
          out.push(encodeEntryHeader({ ...base, path, type: type === FileMode.S_IFCHR ? "char" : "block", size: 0, devmajor: major, devminor: minor, xattrs }));
          count(type === FileMode.S_IFCHR ? "char" : "block");
        }
      } else if (type === FileMode.S_IFIFO) {
        out.push(encodeEntryHeader({ ...base, path, type: "fifo", size: 0, xattrs }));
        count("fifo");
      } else {
        // Sockets cannot be archived (tar has no type for them); tar itself skips them too.
        count("skipped");
      }
    }
    for (const chunk of out.takeFull()) {
      summary.bytesOut += chunk.length;
      yield chunk;
      out.yielded(chunk);
    }
  }
  out.push(TAR_END);
  for (const chunk of out.takeAll()) {
    summary.bytesOut += chunk.length;
    yield chunk;
    out.yielded(chunk);
  }
}

/** What is read of an entry ahead of writing it. */
interface Prepared {
  inode: Inode;
  type: number;
  xattrs: Xattr[];
  link?: string;
  /** The whole content of a small non-sparse (or inline) file. */
  data?: Uint8Array;
  runs?: DataRun[];
}

interface Frame {
  prefix: string;
  entries: { name: string; ino: number }[];
  next: number;
  ahead: (Promise<Prepared> | undefined)[];
}

/** Entries prepared ahead of the one being written. */
const PREFETCH = 32;
/** Files up to this size are read whole while prepared. */
const SMALL_FILE = 256 << 10;

/** A large or sparse file: header, then its data read run by run into the output chunks. */
async function* writeFile(reader: Ext4Reader, out: ChunkBuffer, inode: Inode, runs: DataRun[], base: Omit<TarWriteEntry, "type" | "size">, count: (kind: string) => void): AsyncGenerator<Uint8Array> {
  const stored = runs.reduce((s, r) => s + r.length, 0);
  const sparse = stored < inode.size;
  if (sparse) {
    const map = runs.map((r) => ({ offset: r.offset, length: r.length }));
    // A trailing hole is recorded as an empty region at the end, as GNU tar does.
    const last = runs[runs.length - 1];
    if (!last || last.offset + last.length < inode.size) map.push({ offset: inode.size, length: 0 });
    out.push(encodeEntryHeader({ ...base, type: "file", size: stored, sparse: { map, realSize: inode.size } }));
  } else {
    out.push(encodeEntryHeader({ ...base, type: "file", size: inode.size }));
  }
  yield* copyRuns(reader, out, runs);
  out.pushZeros(tarPadding(stored));
  count(sparse ? "sparse" : "file");
}

/** Chunks' worth of reads issued together, so the thread pool reads ahead of the writer. */
const READ_WINDOW = 4;

/**
 * Reads the runs' bytes straight into the output chunks, a window of several chunks at a time
 * with the reads in parallel, and yields each chunk once full (memory stays at a few chunks
 * whatever the file's size).
 */
async function* copyRuns(reader: Ext4Reader, out: ChunkBuffer, runs: DataRun[]): AsyncGenerator<Uint8Array> {
  let reads: Promise<void>[] = [];
  let budget = READ_WINDOW * CHUNK;
  for (const r of runs) {
    let done = 0;
    while (done < r.length) {
      const space = out.reserve(Math.min(r.length - done, budget));
      reads.push(reader.readDisk(space, r.diskOffset + done));
      done += space.length;
      budget -= space.length;
      if (budget === 0) {
        await Promise.all(reads);
        reads = [];
        budget = READ_WINDOW * CHUNK;
        yield* out.takeFull();
      }
    }
  }
  await Promise.all(reads);
}

/** Xattrs as a tar carries them: ACLs back in the Linux VFS form, the inline-data carrier dropped. */
function exportXattrs(list: Xattr[]): Xattr[] {
  return list
    .filter((x) => x.name !== "system.data")
    .map((x) => (x.name === "system.posix_acl_access" || x.name === "system.posix_acl_default" ? { name: x.name, value: ext4AclToVfs(x.value) } : x))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Output gathered into large chunks; file data is read directly into the chunk being filled.
 * With `recycle`, chunks come back to a pool once the consumer is past them: fresh memory costs
 * a page fault per 4 KiB, more than the copy it carries.
 */
class ChunkBuffer {
  private full: Uint8Array[] = [];
  private readonly pool: Uint8Array[] = [];
  private previous: Uint8Array | undefined;
  private chunk: Uint8Array;
  private fill = 0;

  constructor(private readonly recycle: boolean) {
    this.chunk = this.fresh();
  }

  /** Called when the consumer resumes after `chunk`: the one before it is then free. */
  yielded(chunk: Uint8Array): void {
    if (!this.recycle) return;
    if (this.previous && this.previous.length === CHUNK) this.pool.push(this.previous);
    this.previous = chunk;
  }

  private fresh(): Uint8Array {
    return this.pool.pop() ?? new Uint8Array(CHUNK);
  }

  push(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, CHUNK - this.fill);
      this.chunk.set(bytes.subarray(at, at + n), this.fill);
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
    if (this.fill === CHUNK) this.rotate();
    const k = Math.min(n, CHUNK - this.fill);
    const space = this.chunk.subarray(this.fill, this.fill + k);
    this.fill += k;
    if (this.fill === CHUNK) this.rotate();
    return space;
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
