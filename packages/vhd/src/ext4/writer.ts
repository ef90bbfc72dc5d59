// The streaming ext4 writer. File data is appended as it arrives, block-aligned, right after
// the superblock and a group descriptor table reserved for the maximum disk size; directories,
// xattr blocks, bitmaps and inode tables are laid out after the data on `close()`, and the
// superblock and descriptors are written last. Memory grows with the number of entries (one
// small object each), never with file sizes.
import { InvariantError, VhdError } from "../errors.js";
import { BatchWriter } from "../io/batch-writer.js";
import type { BlockSink } from "../io/sink.js";
import { DirentType, encodeDirBlocks, EXT4_NAME_LEN, type Dirent } from "../format/dirent.js";
import { encodeExtentNodeInto, EXTENT_MAX_LEN, extentCapacity, type Extent } from "../format/extent.js";
import { encodeGroupDescInto, GROUP_DESC_SIZE } from "../format/group-desc.js";
import {
  encodeDevice,
  encodeInodeInto,
  FileMode,
  I_BLOCK_SIZE,
  INODE_EXTRA_ISIZE,
  INODE_SIZE,
  INODE_XATTR_OFFSET,
  InodeFlag,
  InodeNumber,
  type Ext4Time,
} from "../format/inode.js";
import {
  CompatFeature,
  encodeSuperblock,
  EXT4_MAGIC,
  IncompatFeature,
  RoCompatFeature,
  SUPERBLOCK_OFFSET,
} from "../format/superblock.js";
import { encodeInodeXattrs, encodeXattrBlock, splitXattrName, XATTR_BLOCK_HEADER_SIZE, xattrEntrySize, xattrRegionSize, xattrValueSize, type Xattr } from "../format/xattr.js";
import { buildExtentTree } from "./extent-tree.js";
import { BLOCK_SIZE, BLOCKS_PER_GROUP, MAX_BLOCKS, reservedStartBlocks, solveGeometry, type Geometry } from "./layout.js";

/** The default maximum disk size: 128 GiB, as Docker's lcow driver sized layers. */
export const DEFAULT_MAX_DISK_SIZE = 128 * 2 ** 30;
/** Largest payload stored inline (i_block) when `inlineData` is on. */
export const INLINE_DATA_MAX = I_BLOCK_SIZE;
/** ext4 symlink targets live in one block and are NUL-free: at most 4095 bytes. */
export const SYMLINK_MAX = BLOCK_SIZE - 1;
/** i_links_count is 16 bits; with dir_nlink a directory past this reports 1. */
const EXT4_LINK_MAX = 65000;

export interface Ext4WriterOptions {
  /** Largest image the filesystem may grow to, in bytes; also sizes the descriptor table. If not provided, 128 GiB. */
  maxDiskSize?: number;
  /** Store regular files of at most 60 bytes inside the inode (`inline_data`). If not provided, false. */
  inlineData?: boolean;
}

export interface CloseOptions {
  /** Filesystem UUID (16 bytes). */
  uuid: Uint8Array;
  /** Seconds since the epoch for the superblock times and for directories made implicitly. */
  timestamp: number;
  /** May enlarge the filesystem size in bytes (a multiple of the block size); identity if not provided. */
  roundSize?: (bytes: number) => number;
  /**
   * Smallest filesystem size in bytes: the rest is free space, as in a blank sandbox that a
   * container then writes to. If not provided, the filesystem is just big enough.
   */
  minSize?: number;
  /**
   * One inode per this many bytes of filesystem (mke2fs's inode_ratio), so that free space
   * comes with free inodes. If not provided, only the inodes in use (a read-only layer).
   */
  bytesPerInode?: number;
}

/** Metadata of a new node. `mode` holds only permission bits (and setuid/setgid/sticky). */
export interface NodeMeta {
  mode: number;
  uid: number;
  gid: number;
  mtime: Ext4Time;
  atime?: Ext4Time | undefined;
  ctime?: Ext4Time | undefined;
  xattrs?: readonly Xattr[] | undefined;
}

class Node {
  ino = 0;
  nlink = 0;
  size = 0;
  dataBlocks = 0;
  extents: Extent[] | undefined;
  treeRoot: Uint8Array | undefined;
  treeBlocks = 0;
  inline: Uint8Array | undefined;
  rdev: [number, number] | undefined;
  xattrs: Map<string, Uint8Array> | undefined;
  children: Map<string, Node> | undefined;
  /** Directories made because an entry needed them; their mtime is filled in on close. */
  implicit = false;
  atime: Ext4Time | undefined;
  ctime: Ext4Time | undefined;

  constructor(
    public mode: number,
    public uid: number,
    public gid: number,
    public mtime: Ext4Time,
  ) {}

  get type(): number {
    return this.mode & FileMode.S_IFMT;
  }
}

/** The file whose data is being written. */
interface OpenFile {
  node: Node;
  /** Data streams in order into blocks allocated up front (not sparse, not inline). */
  streaming: boolean;
  /** Bytes of the file covered so far (the next write must not start before this). */
  end: number;
  /** Logical block of the partial block held in `tail`, or -1. */
  tailBlock: number;
  tailLen: number;
}

const PATH_SEPARATOR = "/";

/**
 * A write-once ext4 image builder with a tar-writer-shaped API: create nodes by path, stream a
 * file's data after creating it, then `close()`. Paths are arrays of name components (latin1
 * strings of the raw bytes), already normalised by the caller. The first failure is sticky:
 * every later call rethrows it.
 */
export class Ext4Writer {
  private readonly maxDiskSize: number;
  private readonly maxBlocks: number;
  private readonly inlineData: boolean;
  private readonly startBlock: number;
  private readonly data: BatchWriter;
  private readonly nodes: Node[] = [];
  private readonly root: Node;
  private open: OpenFile | undefined;
  private lastFinished: Node | undefined;
  private readonly tail = new Uint8Array(BLOCK_SIZE);
  private err: unknown;
  private closed = false;

  constructor(
    private readonly sink: BlockSink,
    options: Ext4WriterOptions = {},
  ) {
    this.maxDiskSize = options.maxDiskSize ?? DEFAULT_MAX_DISK_SIZE;
    if (!Number.isSafeInteger(this.maxDiskSize) || this.maxDiskSize < 1 << 20) {
      throw new VhdError("INVALID_ARGUMENT", `maxDiskSize ${options.maxDiskSize}: must be at least 1 MiB`);
    }
    this.maxBlocks = Math.min(MAX_BLOCKS, Math.floor(this.maxDiskSize / BLOCK_SIZE));
    this.inlineData = options.inlineData ?? false;
    this.startBlock = reservedStartBlocks(this.maxDiskSize);
    this.data = new BatchWriter(sink, this.startBlock * BLOCK_SIZE);
    this.root = new Node(FileMode.S_IFDIR | 0o755, 0, 0, { sec: 0, nsec: 0 });
    this.root.implicit = true;
    this.root.children = new Map();
    this.root.nlink = 1;
    this.nodes.push(this.root);
  }

  /** Creates or updates a directory. An existing directory keeps its children (tar semantics). */
  mkdir(path: readonly string[], meta: NodeMeta): void {
    this.check();
    const existing = this.lookup(path);
    if (existing && existing.type === FileMode.S_IFDIR) {
      existing.mode = FileMode.S_IFDIR | (meta.mode & 0o7777);
      applyMeta(existing, meta);
      existing.implicit = false;
      return;
    }
    const node = this.newNode(FileMode.S_IFDIR, meta);
    node.children = new Map();
    this.place(path, node);
  }

  /**
   * Creates a regular file of `size` bytes and makes it the open file. Its data follows in
   * order through `write`, or, for a `sparse` file, through `writeAt` with holes between the
   * pieces; then `endFile`. Data not written reads as zeros.
   */
  createFile(path: readonly string[], meta: NodeMeta, size: number, sparse = false): void {
    this.check();
    if (this.open) throw new InvariantError("createFile while a file is open");
    const node = this.newNode(FileMode.S_IFREG, meta);
    node.size = size;
    let streaming = false;
    if (this.inlineData && !sparse && size > 0 && size <= INLINE_DATA_MAX) {
      node.inline = new Uint8Array(I_BLOCK_SIZE);
    } else if (sparse) {
      node.extents = [];
    } else {
      // Contiguous data: the blocks are known now, so extents are made once, here.
      const blocks = Math.ceil(size / BLOCK_SIZE);
      const physical = this.data.position / BLOCK_SIZE;
      if (physical + blocks > this.maxBlocks) throw this.fail(this.diskFull());
      node.extents = [];
      pushRun(node.extents, 0, physical, blocks);
      node.dataBlocks = blocks;
      streaming = true;
    }
    this.place(path, node);
    this.open = { node, streaming, end: 0, tailBlock: -1, tailLen: 0 };
  }

  /**
   * Appends data to the open file. `chunk` is copied before this returns; a promise is returned
   * only when the caller must wait for the output to drain, and must then be awaited.
   */
  write(chunk: Uint8Array): Promise<void> | undefined {
    this.check();
    const f = this.open;
    if (!f) throw new InvariantError("write without an open file");
    if (!f.streaming) return this.writeAt(f.end, chunk);
    if (f.end + chunk.length > f.node.size) throw new InvariantError(`write past the declared size ${f.node.size}`);
    f.end += chunk.length;
    return this.guard(this.data.append(chunk));
  }

  /** Writes data of the open (sparse or inline) file at `offset`, never before data already written. */
  async writeAt(offset: number, chunk: Uint8Array): Promise<void> {
    this.check();
    const f = this.open;
    if (!f) throw new InvariantError("writeAt without an open file");
    if (f.streaming) {
      if (offset !== f.end) throw new InvariantError("writeAt out of order on a file created without `sparse`");
      return this.write(chunk);
    }
    if (offset < f.end || offset + chunk.length > f.node.size) {
      throw new InvariantError(`writeAt ${offset}+${chunk.length} outside ${f.end}..${f.node.size}`);
    }
    try {
      if (f.node.inline) {
        f.node.inline.set(chunk, offset);
        f.end = offset + chunk.length;
        return;
      }
      let pos = offset;
      let data = chunk;
      while (data.length > 0) {
        const block = Math.floor(pos / BLOCK_SIZE);
        const within = pos % BLOCK_SIZE;
        if (f.tailLen > 0 && block !== f.tailBlock) await this.flushTail(f);
        if (f.tailLen === 0 && within === 0 && data.length >= BLOCK_SIZE) {
          const whole = data.length - (data.length % BLOCK_SIZE);
          await this.appendBlocks(f.node, block, data.subarray(0, whole));
          data = data.subarray(whole);
          pos += whole;
          continue;
        }
        if (f.tailLen === 0) {
          f.tailBlock = block;
          this.tail.fill(0);
        }
        const n = Math.min(BLOCK_SIZE - within, data.length);
        this.tail.set(data.subarray(0, n), within);
        f.tailLen = within + n;
        data = data.subarray(n);
        pos += n;
        if (f.tailLen === BLOCK_SIZE) await this.flushTail(f);
      }
      f.end = pos;
    } catch (err) {
      throw this.fail(err);
    }
  }

  /** Whether the open file keeps its data in the inode (inline data) rather than in blocks. */
  get openFileIsInline(): boolean {
    return this.open?.node.inline !== undefined;
  }

  /** The extents (logical -> physical blocks) of the file `endFile` last finished; empty for inline data. */
  lastFileExtents(): readonly Extent[] {
    return this.lastFinished?.extents ?? [];
  }

  /** Finishes the open file: pads or flushes its last block and builds its extent tree. */
  endFile(): Promise<void> | undefined {
    this.check();
    const f = this.open;
    if (!f) throw new InvariantError("endFile without an open file");
    this.open = undefined;
    this.lastFinished = f.node;
    const node = f.node;
    if (f.streaming) {
      if (f.end !== node.size) throw new InvariantError(`endFile after ${f.end} of ${node.size} bytes`);
      const padded = this.data.appendZeros(node.dataBlocks * BLOCK_SIZE - node.size);
      if (padded || (node.extents?.length ?? 0) > ROOT_EXTENTS) return this.guard((async () => {
        await padded;
        await this.finishExtents(node);
      })());
      return undefined;
    }
    return this.guard((async () => {
      if (f.tailLen > 0) await this.flushTail(f);
      if (!node.inline) await this.finishExtents(node);
    })());
  }

  /** Makes a failure of `p` sticky (every later call rethrows it). */
  private guard(p: Promise<void> | undefined): Promise<void> | undefined {
    return p?.catch((err: unknown) => {
      throw this.fail(err);
    });
  }

  /** Creates a symbolic link; targets of 60 bytes or more get a data block. */
  async symlink(path: readonly string[], target: string, meta: NodeMeta): Promise<void> {
    this.check();
    const bytes = Buffer.from(target, "latin1");
    if (bytes.length === 0 || bytes.length > SYMLINK_MAX) {
      throw new VhdError("TAR_ENTRY_INVALID", `symlink ${showPath(path)}: target of ${bytes.length} bytes (ext4 takes 1 to ${SYMLINK_MAX})`, { path: showPath(path) });
    }
    const node = this.newNode(FileMode.S_IFLNK, meta);
    node.size = bytes.length;
    if (bytes.length < I_BLOCK_SIZE) {
      // A "fast" symlink: the kernel keeps targets shorter than i_block inside the inode.
      node.inline = new Uint8Array(I_BLOCK_SIZE);
      node.inline.set(bytes);
      this.place(path, node);
      return;
    }
    node.extents = [];
    this.place(path, node);
    try {
      const block = new Uint8Array(BLOCK_SIZE);
      block.set(bytes);
      await this.appendBlocks(node, 0, block);
      await this.finishExtents(node);
    } catch (err) {
      throw this.fail(err);
    }
  }

  /** Creates a character or block device, or a fifo. */
  mknod(path: readonly string[], kind: "char" | "block" | "fifo", meta: NodeMeta, major = 0, minor = 0): void {
    this.check();
    const type = kind === "char" ? FileMode.S_IFCHR : kind === "block" ? FileMode.S_IFBLK : FileMode.S_IFIFO;
    const node = this.newNode(type, meta);
    if (kind !== "fifo") {
      if (major > 0xfff || minor > 0xfffff) {
        throw new VhdError("TAR_ENTRY_INVALID", `device ${showPath(path)}: ${major}:${minor} exceeds Linux's 12-bit major / 20-bit minor`, { path: showPath(path) });
      }
      node.rdev = [major, minor];
    }
    this.place(path, node);
  }

  /** Adds `path` as another name of the node currently at `target` (a hard link). */
  link(target: readonly string[], path: readonly string[]): void {
    this.check();
    const node = this.lookup(target);
    if (!node) {
      throw new VhdError("TAR_ENTRY_INVALID", `hard link ${showPath(path)}: target ${showPath(target)} does not exist`, { path: showPath(path) });
    }
    if (node.type === FileMode.S_IFDIR) {
      throw new VhdError("TAR_ENTRY_INVALID", `hard link ${showPath(path)}: target ${showPath(target)} is a directory`, { path: showPath(path) });
    }
    if (this.lookup(path) === node) return; // linking a name to itself changes nothing
    if (node.nlink >= EXT4_LINK_MAX) {
      throw new VhdError("TAR_ENTRY_INVALID", `hard link ${showPath(path)}: ${showPath(target)} already has ${EXT4_LINK_MAX} links`, { path: showPath(path) });
    }
    this.place(path, node);
  }

  /** Sets (or replaces) one xattr on an existing node, e.g. the overlay opaque marker. */
  setXattr(path: readonly string[], name: string, value: Uint8Array): void {
    this.check();
    const node = this.lookup(path);
    if (!node) throw new InvariantError(`setXattr on missing ${showPath(path)}`);
    splitXattrName(name);
    (node.xattrs ??= new Map()).set(name, value);
  }

  /** Makes sure a directory exists at `path` (creating parents with defaults), returns nothing. */
  ensureDir(path: readonly string[]): void {
    this.check();
    this.dirAt(path, path.length);
  }

  /** Whether a node exists at `path`. */
  exists(path: readonly string[]): boolean {
    return this.lookup(path) !== undefined;
  }

  /**
   * Lays out directories, xattr blocks, bitmaps and inode tables after the data, then writes
   * the descriptors and superblock. Returns the filesystem size in bytes.
   */
  async close(options: CloseOptions): Promise<{ bytes: number; blocks: number; inodes: number }> {
    this.check();
    if (this.open) throw new InvariantError("close while a file is open");
    if (this.closed) throw new InvariantError("close called twice");
    this.closed = true;
    try {
      return await this.layOut(options);
    } catch (err) {
      throw this.fail(err);
    }
  }

  // ---- tree ----------------------------------------------------------------------------

  private newNode(type: number, meta: NodeMeta): Node {
    const node = new Node(type | (meta.mode & 0o7777), meta.uid, meta.gid, meta.mtime);
    applyMeta(node, meta);
    if (meta.uid > 0xffffffff || meta.gid > 0xffffffff || meta.uid < 0 || meta.gid < 0) {
      throw new VhdError("TAR_ENTRY_INVALID", `uid ${meta.uid} or gid ${meta.gid} does not fit ext4's 32 bits`);
    }
    this.nodes.push(node);
    return node;
  }

  private lookup(path: readonly string[]): Node | undefined {
    let node: Node | undefined = this.root;
    for (const name of path) {
      node = node.children?.get(name);
      if (!node) return undefined;
    }
    return node;
  }

  /** The directory at path[0..depth), created (with defaults) where missing. */
  private dirAt(path: readonly string[], depth: number): Node {
    let dir = this.root;
    for (let i = 0; i < depth; i++) {
      const name = path[i]!;
      let next = dir.children!.get(name);
      if (!next) {
        checkName(name, path);
        next = new Node(FileMode.S_IFDIR | 0o755, 0, 0, { sec: 0, nsec: 0 });
        next.implicit = true;
        next.children = new Map();
        next.nlink = 1;
        this.nodes.push(next);
        dir.children!.set(name, next);
      } else if (next.type !== FileMode.S_IFDIR) {
        throw new VhdError("TAR_ENTRY_INVALID", `${showPath(path)}: parent ${showPath(path.slice(0, i + 1))} is not a directory`, { path: showPath(path) });
      }
      dir = next;
    }
    return dir;
  }

  /** Puts `node` at `path`, replacing what is there (the last entry wins, as in extraction). */
  private place(path: readonly string[], node: Node): void {
    if (path.length === 0) {
      throw new VhdError("TAR_ENTRY_INVALID", `the root can only be a directory`, { path: "/" });
    }
    const name = path[path.length - 1]!;
    checkName(name, path);
    const dir = this.dirAt(path, path.length - 1);
    const old = dir.children!.get(name);
    if (old) {
      dir.children!.delete(name);
      unlinkTree(old);
    }
    dir.children!.set(name, node);
    node.nlink++;
  }

  // ---- data ----------------------------------------------------------------------------

  private async flushTail(f: OpenFile): Promise<void> {
    await this.appendBlocks(f.node, f.tailBlock, this.tail);
    f.tailLen = 0;
    f.tailBlock = -1;
  }

  /** Appends whole blocks of `node` starting at its logical block `logical`. */
  private async appendBlocks(node: Node, logical: number, bytes: Uint8Array): Promise<void> {
    const count = bytes.length / BLOCK_SIZE;
    const physical = this.data.position / BLOCK_SIZE;
    if (physical + count > this.maxBlocks) throw this.diskFull();
    await this.data.append(bytes);
    node.dataBlocks += count;
    pushRun(node.extents!, logical, physical, count);
  }

  /**
   * Builds the node's extent tree when its extents overflow the inode (index and leaf blocks
   * follow its data); a root that fits i_block is encoded when the inode table is written.
   */
  private async finishExtents(node: Node): Promise<void> {
    if ((node.extents?.length ?? 0) <= ROOT_EXTENTS) return;
    const first = this.data.position / BLOCK_SIZE;
    const tree = buildExtentTree(node.extents ?? [], BLOCK_SIZE, makeCounter(first));
    if (first + tree.nodes.length > this.maxBlocks) throw this.diskFull();
    for (const n of tree.nodes) await this.data.append(n.bytes);
    node.treeRoot = tree.root;
    node.treeBlocks = tree.nodes.length;
  }

  private diskFull(): VhdError {
    return new VhdError("EXT4_DISK_FULL", `the layer does not fit the maximum disk size of ${formatBytes(this.maxDiskSize)}`);
  }

  // ---- close ---------------------------------------------------------------------------

  private async layOut(options: CloseOptions): Promise<{ bytes: number; blocks: number; inodes: number }> {
    const root = this.root;
    if (root.implicit) root.mtime = { sec: options.timestamp, nsec: 0 };
    // e2fsck expects /lost+found; mke2fs makes it 0700 root-owned.
    let lostFound = root.children!.get("lost+found");
    if (!lostFound) {
      lostFound = new Node(FileMode.S_IFDIR | 0o700, 0, 0, { sec: options.timestamp, nsec: 0 });
      lostFound.children = new Map();
      lostFound.nlink = 1;
      this.nodes.push(lostFound);
      root.children!.set("lost+found", lostFound);
    }

    // Inode numbers: root 2, lost+found 11 (where e2fsck looks first), the rest in creation order.
    const live = this.nodes.filter((n) => n.nlink > 0);
    root.ino = InodeNumber.ROOT;
    let nextIno = InodeNumber.FIRST_NON_RESERVED;
    if (lostFound.type === FileMode.S_IFDIR) lostFound.ino = nextIno++;
    for (const n of live) if (n.ino === 0) n.ino = nextIno++;
    const inodeCount = nextIno - 1;
    for (const n of live) if (n.implicit && n !== root) n.mtime = { sec: options.timestamp, nsec: 0 };

    // Directories, in inode order, after the file data.
    const dirs = live.filter((n) => n.type === FileMode.S_IFDIR).sort((a, b) => a.ino - b.ino);
    const parentOf = new Map<Node, Node>([[root, root]]);
    for (const d of dirs) for (const c of d.children!.values()) if (c.type === FileMode.S_IFDIR) parentOf.set(c, d);
    for (const d of dirs) {
      const entries: Dirent[] = [
        { inode: d.ino, name: DOT, fileType: DirentType.DIR },
        { inode: parentOf.get(d)!.ino, name: DOTDOT, fileType: DirentType.DIR },
      ];
      let subdirs = 0;
      for (const [name, child] of d.children!) {
        entries.push({ inode: child.ino, name: Buffer.from(name, "latin1"), fileType: direntType(child.type) });
        if (child.type === FileMode.S_IFDIR) subdirs++;
      }
      d.nlink = subdirs + 2 > EXT4_LINK_MAX ? 1 : subdirs + 2;
      const blocks = encodeDirBlocks(entries, BLOCK_SIZE);
      d.extents = [];
      d.size = blocks.length;
      await this.appendBlocks(d, 0, blocks);
      await this.finishExtents(d);
    }

    // Xattrs: what fits goes inside the inode, the rest into one block per distinct set.
    const inodeXattrs = new Map<Node, Uint8Array>();
    const xattrBlockOf = new Map<Node, number>();
    const blocksByContent = new Map<string, { block: number; refs: Node[]; attrs: Xattr[] }>();
    for (const n of live) {
      const inlineFile = n.inline !== undefined && n.type === FileMode.S_IFREG;
      if (!n.xattrs && !inlineFile) continue;
      const attrs: Xattr[] = [...(n.xattrs ?? [])].map(([name, value]) => ({ name, value }));
      if (inlineFile) attrs.push({ name: "system.data", value: new Uint8Array(0) });
      if (attrs.length === 0) continue;
      const { inInode, inBlock } = splitXattrs(attrs, showNode(n));
      if (inInode.length > 0) inodeXattrs.set(n, encodeInodeXattrs(inInode, INODE_SIZE - INODE_XATTR_OFFSET));
      if (inBlock.length > 0) {
        const key = inBlock.map((a) => `${a.name}\u0000${Buffer.from(a.value).toString("base64")}`).sort().join("\u0001");
        let shared = blocksByContent.get(key);
        if (!shared) {
          shared = { block: -1, refs: [], attrs: inBlock };
          blocksByContent.set(key, shared);
        }
        shared.refs.push(n);
      }
    }
    for (const shared of blocksByContent.values()) {
      shared.block = this.data.position / BLOCK_SIZE;
      if (shared.block + 1 > this.maxBlocks) throw this.diskFull();
      await this.data.append(encodeXattrBlock(shared.attrs, BLOCK_SIZE, shared.refs.length));
      for (const n of shared.refs) xattrBlockOf.set(n, shared.block);
    }

    const dataEnd = this.data.position / BLOCK_SIZE;
    const roundSize = options.roundSize ?? ((b: number) => b);
    const minBlocks = Math.ceil((options.minSize ?? 0) / BLOCK_SIZE);
    if (minBlocks > this.maxBlocks) throw this.diskFull();
    const wantInodes = options.bytesPerInode ? Math.max(inodeCount, Math.floor((minBlocks * BLOCK_SIZE) / options.bytesPerInode)) : inodeCount;
    const geo = solveGeometry(dataEnd, wantInodes, (blocks) => Math.ceil(roundSize(Math.max(blocks, minBlocks) * BLOCK_SIZE) / BLOCK_SIZE));
    if (geo.blocksCount > this.maxBlocks) throw this.diskFull();
    if (geo.gdtBlocks > this.startBlock - 1) throw this.diskFull();

    // Block bitmap: metadata at the start, every live node's blocks, the tail metadata.
    const bitmap = new Uint8Array(geo.groups * BLOCK_SIZE);
    const mark = (start: number, count: number) => markRange(bitmap, start, count);
    mark(0, 1 + geo.gdtBlocks);
    for (const n of live) {
      for (const e of n.extents ?? []) mark(e.physical, e.len);
    }
    for (const n of live) if (n.treeBlocks > 0) markTree(n, mark);
    for (const shared of blocksByContent.values()) mark(shared.block, 1);
    const metadataEnd = geo.inodeTablesStart + geo.groups * geo.inodeTableBlocksPerGroup;
    mark(geo.blockBitmapsStart, metadataEnd - geo.blockBitmapsStart);
    // Bits past the end of the filesystem in the last group are set, as e2fsck requires.
    mark(geo.blocksCount, geo.groups * BLOCKS_PER_GROUP - geo.blocksCount);

    // Inode tables and inode bitmaps, one group at a time.
    const byIno = new Array<Node | undefined>(inodeCount + 1);
    for (const n of live) byIno[n.ino] = n;
    const groupStats = Array.from({ length: geo.groups }, () => ({ freeBlocks: 0, freeInodes: 0, dirs: 0 }));
    const inodeBitmaps = new Uint8Array(geo.groups * BLOCK_SIZE);
    await this.data.append(bitmap);
    // The inode bitmaps follow the block bitmaps; fill them first, then append.
    for (let g = 0; g < geo.groups; g++) {
      const first = g * geo.inodesPerGroup + 1;
      let used = 0;
      for (let i = 0; i < geo.inodesPerGroup; i++) {
        const ino = first + i;
        if (ino <= inodeCount && (ino < InodeNumber.FIRST_NON_RESERVED || byIno[ino])) {
          markBit(inodeBitmaps, g * BLOCK_SIZE * 8 + i);
          used++;
          if (byIno[ino]?.type === FileMode.S_IFDIR) groupStats[g]!.dirs++;
        }
      }
      markRange(inodeBitmaps.subarray(g * BLOCK_SIZE, (g + 1) * BLOCK_SIZE), geo.inodesPerGroup, BLOCK_SIZE * 8 - geo.inodesPerGroup);
      groupStats[g]!.freeInodes = geo.inodesPerGroup - used;
      const groupBlocks = Math.min(BLOCKS_PER_GROUP, geo.blocksCount - g * BLOCKS_PER_GROUP);
      groupStats[g]!.freeBlocks = groupBlocks - popcount(bitmap, g * BLOCK_SIZE, BLOCK_SIZE, groupBlocks);
    }
    await this.data.append(inodeBitmaps);

    const table = new Uint8Array(geo.inodesPerGroup * INODE_SIZE);
    const tableView = new DataView(table.buffer);
    for (let g = 0; g < geo.groups; g++) {
      const first = g * geo.inodesPerGroup + 1;
      if (first > inodeCount) {
        // A table with no inode in use is all zeros: leave a hole (a sparse file, unallocated
        // VHDX blocks) instead of writing it. Without uninit_bg, zeros are what the kernel
        // and e2fsck expect of unused inodes.
        await this.data.skip(table.length);
        continue;
      }
      table.fill(0);
      for (let i = 0; i < geo.inodesPerGroup; i++) {
        const node = byIno[first + i];
        if (node) this.encodeNode(node, table, tableView, i * INODE_SIZE, inodeXattrs.get(node), xattrBlockOf.get(node));
      }
      await this.data.append(table);
    }
    // Trailing free blocks (from rounding) are a hole: the file is just extended.
    await this.data.flush();
    const bytes = geo.blocksCount * BLOCK_SIZE;

    const freeBlocks = groupStats.reduce((s, g) => s + g.freeBlocks, 0);
    const freeInodes = groupStats.reduce((s, g) => s + g.freeInodes, 0);
    const gdt = new Uint8Array(geo.gdtBlocks * BLOCK_SIZE);
    for (let g = 0; g < geo.groups; g++) {
      encodeGroupDescInto(
        {
          blockBitmap: geo.blockBitmapsStart + g,
          inodeBitmap: geo.inodeBitmapsStart + g,
          inodeTable: geo.inodeTablesStart + g * geo.inodeTableBlocksPerGroup,
          freeBlocksCount: groupStats[g]!.freeBlocks,
          freeInodesCount: groupStats[g]!.freeInodes,
          usedDirsCount: groupStats[g]!.dirs,
          flags: 0,
          itableUnused: 0,
          checksum: 0,
        },
        gdt,
        g * GROUP_DESC_SIZE,
      );
    }
    const hashSeed = options.uuid.slice().reverse();
    const sb = encodeSuperblock({
      inodesCount: geo.groups * geo.inodesPerGroup,
      blocksCount: geo.blocksCount,
      rBlocksCount: 0,
      freeBlocksCount: freeBlocks,
      freeInodesCount: freeInodes,
      firstDataBlock: 0,
      logBlockSize: Math.log2(BLOCK_SIZE) - 10,
      logClusterSize: Math.log2(BLOCK_SIZE) - 10,
      blocksPerGroup: BLOCKS_PER_GROUP,
      clustersPerGroup: BLOCKS_PER_GROUP,
      inodesPerGroup: geo.inodesPerGroup,
      mtime: 0,
      wtime: clampU32(options.timestamp),
      mntCount: 0,
      maxMntCount: 0xffff,
      magic: EXT4_MAGIC,
      state: 1,
      errors: 1,
      minorRevLevel: 0,
      lastcheck: clampU32(options.timestamp),
      checkinterval: 0,
      creatorOs: 0,
      revLevel: 1,
      defResuid: 0,
      defResgid: 0,
      firstIno: InodeNumber.FIRST_NON_RESERVED,
      inodeSize: INODE_SIZE,
      blockGroupNr: 0,
      featureCompat: CompatFeature.EXT_ATTR | CompatFeature.SPARSE_SUPER2,
      featureIncompat:
        IncompatFeature.FILETYPE | IncompatFeature.EXTENTS | IncompatFeature.FLEX_BG | (this.usesInlineData(live) ? IncompatFeature.INLINE_DATA : 0),
      featureRoCompat: RoCompatFeature.LARGE_FILE | RoCompatFeature.HUGE_FILE | RoCompatFeature.DIR_NLINK | RoCompatFeature.EXTRA_ISIZE,
      uuid: options.uuid,
      volumeName: "",
      hashSeed,
      defHashVersion: 1, // half_md4, mke2fs's default, should dir_index ever be turned on
      descSize: 0,
      mkfsTime: clampU32(options.timestamp),
      minExtraIsize: INODE_EXTRA_ISIZE,
      wantExtraIsize: INODE_EXTRA_ISIZE,
      flags: 0x1, // EXT2_FLAGS_SIGNED_HASH, as mke2fs sets on x86
      logGroupsPerFlex: 4,
      checksumType: 0,
      backupBgs: [0, 0], // sparse_super2 with no backup superblocks: a layer is rebuilt, not repaired
      lpfIno: 0,
      checksumSeed: 0,
      checksum: 0,
    });
    const head = new Uint8Array(BLOCK_SIZE);
    head.set(sb, SUPERBLOCK_OFFSET);
    await this.sink.write(head, 0);
    await this.sink.write(gdt, BLOCK_SIZE);
    return { bytes, blocks: geo.blocksCount, inodes: inodeCount };
  }

  private usesInlineData(live: Node[]): boolean {
    return this.inlineData && live.some((n) => n.inline !== undefined && n.type === FileMode.S_IFREG);
  }

  private encodeNode(n: Node, table: Uint8Array, view: DataView, offset: number, xattrArea: Uint8Array | undefined, xattrBlock: number | undefined): void {
    let flags = 0;
    let block: Uint8Array;
    const type = n.type;
    if (type === FileMode.S_IFCHR || type === FileMode.S_IFBLK) {
      block = encodeDevice(n.rdev![0], n.rdev![1]);
    } else if (type === FileMode.S_IFIFO || type === FileMode.S_IFSOCK) {
      block = new Uint8Array(I_BLOCK_SIZE);
    } else if (n.inline) {
      block = n.inline;
      if (type === FileMode.S_IFREG) flags |= InodeFlag.INLINE_DATA;
    } else {
      block = n.treeRoot ?? this.encodeRoot(n.extents ?? []);
      flags |= InodeFlag.EXTENTS;
    }
    const blocks = n.dataBlocks + n.treeBlocks + (xattrBlock === undefined ? 0 : 1);
    encodeInodeInto(
      {
        mode: n.mode,
        uid: n.uid,
        gid: n.gid,
        size: n.size,
        atime: n.atime ?? n.mtime,
        ctime: n.ctime ?? n.mtime,
        mtime: n.mtime,
        crtime: n.mtime,
        dtime: 0,
        linksCount: n.nlink,
        blocks: blocks * (BLOCK_SIZE / 512),
        flags,
        block,
        generation: 0,
        fileAcl: xattrBlock ?? 0,
        extraIsize: INODE_EXTRA_ISIZE,
        xattrArea: xattrArea ?? EMPTY_XATTR_AREA,
      },
      table,
      offset,
      view,
    );
  }

  private readonly rootScratch = new Uint8Array(I_BLOCK_SIZE);

  /** Encodes a root that fits i_block into a scratch buffer (copied into the table right away). */
  private encodeRoot(extents: readonly Extent[]): Uint8Array {
    this.rootScratch.fill(0);
    encodeExtentNodeInto(extents, 0, this.rootScratch, 0, I_BLOCK_SIZE);
    return this.rootScratch;
  }

  private check(): void {
    if (this.err !== undefined) throw this.err;
  }

  private fail(err: unknown): unknown {
    this.err ??= err;
    return err;
  }
}

const DOT = Buffer.from(".");
const DOTDOT = Buffer.from("..");
const EMPTY_XATTR_AREA = new Uint8Array(INODE_SIZE - INODE_XATTR_OFFSET);
/** Extents that fit the inode's i_block without a tree block. */
const ROOT_EXTENTS = extentCapacity(I_BLOCK_SIZE);

/** Adds `count` blocks at `logical` -> `physical` to an extent list, merging with the last extent. */
function pushRun(extents: Extent[], logical: number, physical: number, count: number): void {
  let left = count;
  let l = logical;
  let p = physical;
  const last = extents[extents.length - 1];
  if (last && last.logical + last.len === l && last.physical + last.len === p && last.len < EXTENT_MAX_LEN) {
    const n = Math.min(left, EXTENT_MAX_LEN - last.len);
    last.len += n;
    left -= n;
    l += n;
    p += n;
  }
  while (left > 0) {
    const n = Math.min(left, EXTENT_MAX_LEN);
    extents.push({ logical: l, len: n, physical: p });
    left -= n;
    l += n;
    p += n;
  }
}

function makeCounter(first: number): () => number {
  let next = first;
  return () => next++;
}

function applyMeta(node: Node, meta: NodeMeta): void {
  node.uid = meta.uid;
  node.gid = meta.gid;
  node.mtime = meta.mtime;
  node.atime = meta.atime;
  node.ctime = meta.ctime;
  if (meta.xattrs && meta.xattrs.length > 0) {
    node.xattrs = new Map();
    for (const x of meta.xattrs) {
      splitXattrName(x.name);
      node.xattrs.set(x.name, x.value);
    }
    // Fail now, while the caller can still name the entry, if they cannot fit inode + one block.
    splitXattrs([...node.xattrs].map(([name, value]) => ({ name, value })), "the entry");
  } else if (node.type !== FileMode.S_IFDIR) {
    node.xattrs = undefined;
  }
}

/** Drops one name of `node`; a directory's whole subtree loses its names too. */
function unlinkTree(node: Node): void {
  node.nlink--;
  if (node.children) {
    for (const child of node.children.values()) unlinkTree(child);
    node.children.clear();
  }
}

function checkName(name: string, path: readonly string[]): void {
  if (name.length === 0 || name === "." || name === ".." || name.includes(PATH_SEPARATOR) || name.includes("\u0000")) {
    throw new VhdError("TAR_ENTRY_INVALID", `${showPath(path)}: invalid name component ${JSON.stringify(name)}`, { path: showPath(path) });
  }
  if (name.length > EXT4_NAME_LEN) {
    throw new VhdError("TAR_ENTRY_INVALID", `${showPath(path)}: name component of ${name.length} bytes (ext4 takes at most ${EXT4_NAME_LEN})`, { path: showPath(path) });
  }
}

function direntType(type: number): number {
  switch (type) {
    case FileMode.S_IFREG:
      return DirentType.REG_FILE;
    case FileMode.S_IFDIR:
      return DirentType.DIR;
    case FileMode.S_IFCHR:
      return DirentType.CHRDEV;
    case FileMode.S_IFBLK:
      return DirentType.BLKDEV;
    case FileMode.S_IFIFO:
      return DirentType.FIFO;
    case FileMode.S_IFSOCK:
      return DirentType.SOCK;
    case FileMode.S_IFLNK:
      return DirentType.SYMLINK;
    default:
      return DirentType.UNKNOWN;
  }
}

/**
 * Chooses which xattrs live in the inode (96 bytes after the extra fields) and which in the
 * xattr block: in the kernel's sort order, each goes in the inode while it fits.
 * `system.data` (inline data) must be in the inode.
 */
function splitXattrs(attrs: Xattr[], where: string): { inInode: Xattr[]; inBlock: Xattr[] } {
  const sorted = attrs
    .map((a) => ({ a, s: splitXattrName(a.name) }))
    .sort((x, y) => (x.a.name === "system.data" ? -1 : y.a.name === "system.data" ? 1 : x.s.index - y.s.index || x.s.suffix.length - y.s.suffix.length || Buffer.compare(x.s.suffix, y.s.suffix)));
  const room = INODE_SIZE - INODE_XATTR_OFFSET - 4; // minus the in-inode magic
  let used = 4; // the terminating zero word
  const inInode: Xattr[] = [];
  const inBlock: Xattr[] = [];
  for (const { a, s } of sorted) {
    const need = xattrEntrySize(s.suffix.length) + xattrValueSize(a.value.length);
    if (inBlock.length === 0 && used + need <= room) {
      inInode.push(a);
      used += need;
    } else {
      inBlock.push(a);
    }
  }
  if (inBlock.length > 0 && XATTR_BLOCK_HEADER_SIZE + xattrRegionSize(inBlock) > BLOCK_SIZE) {
    throw new VhdError("TAR_ENTRY_INVALID", `${where}: extended attributes of ${xattrRegionSize(inBlock)} bytes do not fit one ${BLOCK_SIZE}-byte xattr block`, { path: where });
  }
  return { inInode, inBlock };
}

function markTree(n: Node, mark: (start: number, count: number) => void): void {
  // Extent tree blocks were appended right after the node's last data (or directory) blocks.
  const last = n.extents![n.extents!.length - 1]!;
  mark(last.physical + last.len, n.treeBlocks);
}

function markBit(bitmap: Uint8Array, bit: number): void {
  bitmap[bit >>> 3]! |= 1 << (bit & 7);
}

function markRange(bitmap: Uint8Array, start: number, count: number): void {
  let bit = start;
  const end = start + count;
  while (bit < end && (bit & 7) !== 0) markBit(bitmap, bit++);
  const fullEnd = end - ((end - bit) & 7);
  if (fullEnd > bit) bitmap.fill(0xff, bit >>> 3, fullEnd >>> 3);
  bit = Math.max(bit, fullEnd);
  while (bit < end) markBit(bitmap, bit++);
}

const POPCOUNT = new Uint8Array(256).map((_, i) => {
  let c = 0;
  for (let v = i; v; v >>= 1) c += v & 1;
  return c;
});

/** Set bits among the first `bits` bits of the `length`-byte bitmap at `offset`. */
function popcount(bitmap: Uint8Array, offset: number, length: number, bits: number): number {
  let count = 0;
  const fullBytes = Math.floor(bits / 8);
  for (let i = 0; i < fullBytes && i < length; i++) count += POPCOUNT[bitmap[offset + i]!]!;
  for (let b = fullBytes * 8; b < bits; b++) if (bitmap[offset + (b >>> 3)]! & (1 << (b & 7))) count++;
  return count;
}

function clampU32(n: number): number {
  return Math.min(Math.max(Math.trunc(n), 0), 0xffffffff);
}

function showPath(path: readonly string[]): string {
  return Buffer.from(path.join("/"), "latin1").toString("utf8");
}

function showNode(n: Node): string {
  return `inode ${n.ino}`;
}

function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

export type { Geometry };
