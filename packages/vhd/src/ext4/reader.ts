// Reads ext4 (and ext2/ext3) filesystems from a block source: what our writer makes and what
// mkfs.ext4 makes. Extents and the old indirect block maps, linear and htree directories
// (read linearly: htree index blocks look like empty entries), inline data, in-inode and block
// xattrs, 32- and 64-byte group descriptors. Every structure read is bounds-checked and every
// walk is bounded, so damaged images give a typed error naming the structure and offset.
import { VhdError } from "../errors.js";
import { decodeDirBlock, type Dirent } from "../format/dirent.js";
import { decodeExtentNode, type Extent, type ExtentIndex } from "../format/extent.js";
import { decodeGroupDesc, GROUP_DESC_SIZE, type GroupDesc } from "../format/group-desc.js";
import { decodeDevice, decodeInode, FileMode, GOOD_OLD_INODE_SIZE, I_BLOCK_SIZE, InodeFlag, InodeNumber, type Inode } from "../format/inode.js";
import { decodeSuperblock, IncompatFeature, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, type Superblock } from "../format/superblock.js";
import { decodeInodeXattrs, decodeXattrBlock, type Xattr } from "../format/xattr.js";
import type { BlockSource } from "../io/block-source.js";
import { CachedSource } from "../io/cached-source.js";
import { fsChecksumSeed, groupDescChecksum, inodeChecksum, inodeChecksumSeed, inodeStoredChecksum, superblockChecksum } from "./csum.js";
import { RoCompatFeature } from "../format/superblock.js";

/** Incompat features we can read; any other is refused by name. */
const READABLE_INCOMPAT =
  IncompatFeature.FILETYPE |
  IncompatFeature.EXTENTS |
  IncompatFeature.FLEX_BG |
  IncompatFeature.BIT64 |
  IncompatFeature.INLINE_DATA |
  IncompatFeature.CSUM_SEED |
  IncompatFeature.LARGEDIR |
  IncompatFeature.MMP |
  IncompatFeature.META_BG;

const INCOMPAT_NAMES: Record<number, string> = {
  0x1: "compression",
  0x4: "needs_recovery",
  0x8: "journal_dev",
  0x400: "ea_inode",
  0x1000: "dirdata",
  0x10000: "encrypt",
  0x20000: "casefold",
  0x40000: "incompat_0x40000",
};

/** ext4's deepest extent tree is 5 levels; deeper (or looping) trees are damage. */
const MAX_EXTENT_DEPTH = 5;

/** A run of file data: `length` bytes of the file at `offset` are stored at disk byte `diskOffset`. */
export interface DataRun {
  offset: number;
  length: number;
  diskOffset: number;
}

export interface DirEntry {
  /** Raw name bytes as a latin1 string. */
  name: string;
  ino: number;
  fileType: number;
}

/** What an inode is, decoded for consumers (tar export, inspect). */
export interface Ext4Node {
  ino: number;
  inode: Inode;
  type: number; // FileMode.S_IF*
}

/** An inode with everything a tree walk needs of it besides file data (see `Ext4Reader.entry`). */
export interface Ext4Entry extends Ext4Node {
  /** In-inode and block xattrs, without the inline-data carrier `system.data`. */
  xattrs: Xattr[];
  /** Symlinks: the target (raw bytes as a latin1 string). */
  link?: string;
  /** Regular files with inline data: the content. */
  inline?: Uint8Array;
  /** Other regular files: where the data is (see `dataRuns`). */
  runs?: DataRun[];
}

/** A read a walk over metadata needs: `length` bytes at disk offset `position`. */
interface MetaRead {
  position: number;
  length: number;
}

/**
 * A walk over on-disk structures (extent trees, block maps, directories, xattr blocks), written
 * once for both kinds of caller: it yields each metadata read it needs and is resumed with the
 * bytes (read-only; possibly the cache's own), by `run` (awaiting each read) or `runSync` (for
 * sources that read synchronously, where a promise per read would cost more than the read).
 */
type Walk<T> = Generator<MetaRead, T, Uint8Array>;

export class Ext4Reader {
  readonly blockSize: number;
  readonly groups: number;
  readonly inodeSize: number;
  private readonly descs: GroupDesc[];

  private constructor(
    /** Metadata reads (inode tables, directories, extent and xattr blocks) go through a cache. */
    private readonly cache: CachedSource,
    /** File data is read straight from the disk: it is read once, and rarely near other data. */
    private readonly disk: BlockSource,
    readonly superblock: Superblock,
    descs: GroupDesc[],
    /** The metadata_csum seed when checksums are on (then every inode read is verified). */
    private readonly csumSeed: number | undefined,
  ) {
    this.blockSize = 1024 << superblock.logBlockSize;
    this.inodeSize = superblock.revLevel === 0 ? GOOD_OLD_INODE_SIZE : superblock.inodeSize;
    this.groups = descs.length;
    this.descs = descs;
  }

  /** The metadata cache over the disk, as a block source. */
  get source(): BlockSource {
    return this.cache;
  }

  /**
   * True when the disk reads synchronously (a raw image or fixed VHD file): then the `...Sync`
   * methods can be used, which walk metadata without a promise per read.
   */
  get canReadSync(): boolean {
    return this.cache.sync && this.disk.readSync !== undefined;
  }

  /**
   * Opens the filesystem on `source`; unsupported features and impossible geometry are errors.
   * Reads go through a small cache (metadata and small files in 256 KiB chunks).
   */
  static async open(disk: BlockSource): Promise<Ext4Reader> {
    const source = new CachedSource(disk);
    if (source.size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE) {
      throw new VhdError("FORMAT_INVALID", `ext4: disk of ${source.size} bytes is too small for a superblock`, { offset: 0 });
    }
    const sbBytes = new Uint8Array(SUPERBLOCK_SIZE);
    await source.read(sbBytes, SUPERBLOCK_OFFSET);
    const sb = decodeSuperblock(sbBytes);
    const bad = (what: string) => new VhdError("FORMAT_INVALID", `ext4 superblock: ${what}`, { offset: SUPERBLOCK_OFFSET });
    const checksums = (sb.featureRoCompat & RoCompatFeature.METADATA_CSUM) !== 0;
    if (checksums && superblockChecksum(sbBytes) !== sb.checksum) throw bad(`checksum 0x${sb.checksum.toString(16)} does not match (metadata_csum)`);
    if (sb.logBlockSize > 6) throw bad(`block size 2^${10 + sb.logBlockSize} is impossible`);
    const blockSize = 1024 << sb.logBlockSize;
    const inodeSize = sb.revLevel === 0 ? GOOD_OLD_INODE_SIZE : sb.inodeSize;
    if (inodeSize < GOOD_OLD_INODE_SIZE || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) throw bad(`inode size ${inodeSize}`);
    if (sb.blocksPerGroup === 0 || sb.blocksPerGroup > blockSize * 8) throw bad(`${sb.blocksPerGroup} blocks per group`);
    if (sb.inodesPerGroup === 0 || sb.inodesPerGroup > blockSize * 8) throw bad(`${sb.inodesPerGroup} inodes per group`);
    if (sb.blocksCount === 0 || sb.blocksCount * blockSize > source.size) {
      throw bad(`${sb.blocksCount} blocks of ${blockSize} bytes do not fit the ${source.size}-byte disk`);
    }
    if (sb.firstDataBlock >= sb.blocksCount) throw bad(`first data block ${sb.firstDataBlock}`);
    const unknown = sb.featureIncompat & ~READABLE_INCOMPAT;
    if (unknown !== 0) {
      const names = Object.entries(INCOMPAT_NAMES)
        .filter(([bit]) => unknown & Number(bit))
        .map(([, n]) => n);
      if (unknown & IncompatFeature.RECOVER) {
        throw new VhdError("FORMAT_INVALID", "ext4: the journal needs recovery (mount it once, or run e2fsck, then read it)", { offset: SUPERBLOCK_OFFSET + 0x60 });
      }
      throw new VhdError("FORMAT_INVALID", `ext4: unsupported feature ${names.join(", ") || `0x${unknown.toString(16)}`}`, { offset: SUPERBLOCK_OFFSET + 0x60 });
    }
    if (sb.featureIncompat & IncompatFeature.META_BG) {
      throw new VhdError("FORMAT_INVALID", "ext4: unsupported feature meta_bg", { offset: SUPERBLOCK_OFFSET + 0x60 });
    }
    const groups = Math.ceil((sb.blocksCount - sb.firstDataBlock) / sb.blocksPerGroup);
    if (Math.ceil(sb.inodesCount / sb.inodesPerGroup) !== groups && sb.inodesCount !== groups * sb.inodesPerGroup) {
      throw bad(`${sb.inodesCount} inodes do not match ${groups} groups of ${sb.inodesPerGroup}`);
    }
    const descSize = sb.featureIncompat & IncompatFeature.BIT64 ? Math.max(sb.descSize, 64) : GROUP_DESC_SIZE;
    if (descSize > 1024 || (descSize & (descSize - 1)) !== 0) throw bad(`group descriptor size ${descSize}`);
    const gdtStart = (sb.firstDataBlock + 1) * blockSize;
    const gdtBytes = groups * descSize;
    if (gdtStart + gdtBytes > source.size) throw bad(`group descriptor table of ${groups} groups runs past the disk`);
    const table = new Uint8Array(gdtBytes);
    await source.read(table, gdtStart);
    const descs: GroupDesc[] = [];
    const seed = fsChecksumSeed(sb);
    for (let g = 0; g < groups; g++) {
      const d = decodeGroupDesc(table, g * descSize, descSize);
      if (checksums && groupDescChecksum("crc32c", { seed, uuid: sb.uuid }, g, table.subarray(g * descSize, (g + 1) * descSize), descSize) !== d.checksum) {
        throw new VhdError("FORMAT_INVALID", `ext4 group descriptor ${g}: checksum 0x${d.checksum.toString(16)} does not match (metadata_csum)`, { offset: gdtStart + g * descSize });
      }
      const itableBlocks = Math.ceil((sb.inodesPerGroup * inodeSize) / blockSize);
      if (d.inodeTable === 0 || d.inodeTable + itableBlocks > sb.blocksCount) {
        throw new VhdError("FORMAT_INVALID", `ext4 group descriptor ${g}: inode table at block ${d.inodeTable} is outside the filesystem`, { offset: gdtStart + g * descSize });
      }
      descs.push(d);
    }
    return new Ext4Reader(source, disk, sb, descs, checksums ? seed : undefined);
  }

  /** The group descriptor of group `g`. */
  groupDesc(g: number): GroupDesc {
    const d = this.descs[g];
    if (!d) throw new RangeError(`group ${g} of ${this.groups}`);
    return d;
  }

  /** Features as names, for inspection. */
  hasIncompat(bit: number): boolean {
    return (this.superblock.featureIncompat & bit) !== 0;
  }

  /** Reads and decodes inode `ino`. */
  async readInode(ino: number): Promise<Inode> {
    const offset = this.inodeOffset(ino);
    // A copy, not a view of the cache: callers may keep inodes (and their i_block) for long.
    const bytes = new Uint8Array(this.inodeSize);
    await this.cache.read(bytes, offset);
    return this.decodeInodeAt(ino, bytes, offset);
  }

  /**
   * `readInode`, synchronously (only when `canReadSync`). The inode's `block` and `xattrArea`
   * are views of the metadata cache, not copies: read-only, and keeping them keeps a whole cache
   * chunk in memory.
   */
  readInodeSync(ino: number): Inode {
    const offset = this.inodeOffset(ino);
    return this.decodeInodeAt(ino, this.cache.viewSync(offset, this.inodeSize), offset);
  }

  /** Disk offset of inode `ino` in its group's inode table. */
  private inodeOffset(ino: number): number {
    const sb = this.superblock;
    if (!(ino >= 1 && ino <= sb.inodesCount)) throw new VhdError("FORMAT_INVALID", `ext4: inode ${ino} is outside 1..${sb.inodesCount}`);
    const group = Math.floor((ino - 1) / sb.inodesPerGroup);
    const index = (ino - 1) % sb.inodesPerGroup;
    return this.groupDesc(group).inodeTable * this.blockSize + index * this.inodeSize;
  }

  /** Decodes and checks inode `ino` from its bytes (read at disk offset `offset`). */
  private decodeInodeAt(ino: number, bytes: Uint8Array, offset: number): Inode {
    const inode = decodeInode(bytes, 0, this.inodeSize, true);
    if (this.csumSeed !== undefined) {
      const want = inodeChecksum(inodeChecksumSeed(this.csumSeed, ino, inode.generation), bytes, this.inodeSize);
      if (want !== inodeStoredChecksum(bytes, this.inodeSize)) {
        throw new VhdError("FORMAT_INVALID", `ext4 inode ${ino}: checksum does not match (metadata_csum)`, { offset });
      }
    }
    if (inode.extraIsize > this.inodeSize - GOOD_OLD_INODE_SIZE || inode.extraIsize % 4 !== 0) {
      throw new VhdError("FORMAT_INVALID", `ext4 inode ${ino}: i_extra_isize ${inode.extraIsize} does not fit a ${this.inodeSize}-byte inode`, { offset });
    }
    return inode;
  }

  /** Runs a walk, awaiting each read it asks for. */
  private async run<T>(walk: Walk<T>): Promise<T> {
    let step = walk.next();
    while (!step.done) step = walk.next(await this.cache.view(step.value.position, step.value.length));
    return step.value;
  }

  /** Runs a walk with synchronous reads (only when `canReadSync`). */
  private runSync<T>(walk: Walk<T>): T {
    let step = walk.next();
    while (!step.done) step = walk.next(this.cache.viewSync(step.value.position, step.value.length));
    return step.value;
  }

  /** A walk step: `length` bytes of metadata at `position`, which must lie in the filesystem. */
  private *meta(position: number, length: number): Walk<Uint8Array> {
    this.checkRange(position, length);
    return yield { position, length };
  }

  private checkRange(diskOffset: number, length: number): void {
    if (diskOffset + length > this.superblock.blocksCount * this.blockSize) {
      throw new VhdError("FORMAT_INVALID", `ext4: read of ${length} bytes at ${diskOffset} runs past the filesystem`, { offset: diskOffset });
    }
  }

  /**
   * Inode `ino` with its xattrs, symlink target and data runs (or inline content): what a tree
   * walk needs of an entry besides file data.
   */
  async entry(ino: number): Promise<Ext4Entry> {
    const inode = await this.readInode(ino);
    return this.entryFromInode(ino, inode) ?? this.run(this.entryWalk(ino, inode));
  }

  /** `entry`, synchronously (only when `canReadSync`); the inode is a view, as in `readInodeSync`. */
  entrySync(ino: number): Ext4Entry {
    const inode = this.readInodeSync(ino);
    return this.entryFromInode(ino, inode) ?? this.runSync(this.entryWalk(ino, inode));
  }

  /**
   * `entry` when the inode holds all of it (most entries: no xattr block, a fast symlink, an
   * extent tree all in i_block), else undefined. Plain code rather than a walk: a walk's
   * generators cost more allocation than everything else about an entry.
   */
  private entryFromInode(ino: number, inode: Inode): Ext4Entry | undefined {
    if (inode.fileAcl !== 0) return undefined;
    const type = inode.mode & FileMode.S_IFMT;
    const all = decodeInodeXattrs(inode.xattrArea);
    let link: string | undefined;
    let runs: DataRun[] | undefined;
    if (type === FileMode.S_IFLNK) {
      if (!isFastSymlink(inode)) return undefined;
      link = latin1(inode.block.subarray(0, inode.size));
    } else if (type === FileMode.S_IFREG && !(inode.flags & InodeFlag.INLINE_DATA)) {
      if (!(inode.flags & InodeFlag.EXTENTS)) return undefined;
      const extents: Extent[] = [];
      if (this.extentNode(ino, inode.block, this.extentDepth(ino, inode), -1, extents)) return undefined;
      const list = new RunList(this.blockSize);
      for (const e of extents) list.add(e.logical, e.physical, e.len);
      runs = list.clip(inode.size);
    }
    const entry: Ext4Entry = { ino, inode, type, xattrs: all.length === 0 ? all : all.filter((x) => x.name !== "system.data") };
    if (link !== undefined) entry.link = link;
    else if (runs) entry.runs = runs;
    else if (type === FileMode.S_IFREG) entry.inline = this.inlineFrom(inode, all);
    return entry;
  }

  private *entryWalk(ino: number, inode: Inode): Walk<Ext4Entry> {
    const type = inode.mode & FileMode.S_IFMT;
    const all = yield* this.xattrsWalk(ino, inode);
    const entry: Ext4Entry = { ino, inode, type, xattrs: all.length === 0 ? all : all.filter((x) => x.name !== "system.data") };
    if (type === FileMode.S_IFLNK) entry.link = yield* this.readLinkWalk(ino, inode);
    else if (type === FileMode.S_IFREG) {
      if (inode.flags & InodeFlag.INLINE_DATA) entry.inline = this.inlineFrom(inode, all);
      else entry.runs = yield* this.dataRunsWalk(ino, inode);
    }
    return entry;
  }

  /**
   * The file's data as runs in logical order (holes are gaps between runs; unwritten extents
   * count as holes). Works for extent-mapped and block-mapped (ext2/3) inodes.
   */
  async dataRuns(ino: number, inode: Inode): Promise<DataRun[]> {
    return this.run(this.dataRunsWalk(ino, inode));
  }

  /** `dataRuns`, synchronously (only when `canReadSync`). */
  dataRunsSync(ino: number, inode: Inode): DataRun[] {
    return this.runSync(this.dataRunsWalk(ino, inode));
  }

  private *dataRunsWalk(ino: number, inode: Inode): Walk<DataRun[]> {
    if (inode.flags & InodeFlag.INLINE_DATA) return [];
    const runs = new RunList(this.blockSize);
    if (inode.flags & InodeFlag.EXTENTS) {
      for (const e of yield* this.extentsWalk(ino, inode)) runs.add(e.logical, e.physical, e.len);
    } else {
      yield* this.blockMapWalk(ino, inode, runs);
    }
    return runs.clip(inode.size);
  }

  /** The initialized extents of an extent-mapped inode, in logical order, validated. */
  async extents(ino: number, inode: Inode): Promise<Extent[]> {
    return this.run(this.extentsWalk(ino, inode));
  }

  private *extentsWalk(ino: number, inode: Inode): Walk<Extent[]> {
    const out: Extent[] = [];
    const rootDepth = this.extentDepth(ino, inode);
    const indexes = this.extentNode(ino, inode.block, rootDepth, -1, out);
    // Index blocks seen, to refuse loops.
    if (indexes) yield* this.extentChildrenWalk(ino, indexes, rootDepth - 1, -1, out, new Set());
    return out;
  }

  /** Depth of an extent tree, from its root in i_block. */
  private extentDepth(ino: number, inode: Inode): number {
    const depth = inode.block[6]! | (inode.block[7]! << 8); // eh_depth, little-endian
    if (depth > MAX_EXTENT_DEPTH) throw new VhdError("FORMAT_INVALID", `ext4 inode ${ino}: extent tree: depth ${depth} exceeds ${MAX_EXTENT_DEPTH}`);
    return depth;
  }

  /**
   * Decodes and checks one node of an extent tree (the root is i_block, at offset -1): a leaf's
   * extents go to `out`; an index node's entries are returned, for the caller to read.
   */
  private extentNode(ino: number, node: Uint8Array, depth: number, at: number, out: Extent[]): ExtentIndex[] | undefined {
    let decoded: ReturnType<typeof decodeExtentNode>;
    try {
      decoded = decodeExtentNode(node, 0, node.length);
    } catch (err) {
      throw new VhdError("FORMAT_INVALID", `${extentWhere(ino)} node at offset ${at}: ${(err as Error).message}`, { offset: at, cause: err });
    }
    if (decoded.header.depth !== depth) {
      throw new VhdError("FORMAT_INVALID", `${extentWhere(ino)} node at offset ${at}: depth ${decoded.header.depth}, expected ${depth}`, { offset: at });
    }
    if (!decoded.leaf) return decoded.indexes;
    const blocks = this.superblock.blocksCount;
    for (const e of decoded.extents) {
      // ee_len above 32768 marks an unwritten (preallocated) extent: it reads as zeros.
      const len = e.len > 32768 ? e.len - 32768 : e.len;
      if (e.physical + len > blocks || e.physical === 0) {
        throw new VhdError("FORMAT_INVALID", `${extentWhere(ino)}: extent ${e.logical}+${len} -> block ${e.physical} is outside the filesystem`, { offset: at });
      }
      const last = out[out.length - 1];
      if (last && e.logical < last.logical + last.len) {
        throw new VhdError("FORMAT_INVALID", `${extentWhere(ino)}: extents overlap or are out of order at logical block ${e.logical}`, { offset: at });
      }
      if (e.len <= 32768) out.push({ logical: e.logical, len, physical: e.physical });
    }
    return undefined;
  }

  /** The subtrees under an index node (at disk offset `at`), read and decoded in order. */
  private *extentChildrenWalk(ino: number, indexes: ExtentIndex[], depth: number, at: number, out: Extent[], seen: Set<number>): Walk<void> {
    const where = `ext4 inode ${ino}: extent tree`;
    for (const idx of indexes) {
      if (idx.child === 0 || idx.child >= this.superblock.blocksCount) {
        throw new VhdError("FORMAT_INVALID", `${where}: index points at block ${idx.child}, outside the filesystem`, { offset: at });
      }
      if (seen.has(idx.child)) throw new VhdError("FORMAT_INVALID", `${where}: block ${idx.child} appears twice (a loop)`, { offset: at });
      seen.add(idx.child);
      const childAt = idx.child * this.blockSize;
      const child = yield* this.meta(childAt, this.blockSize);
      const below = this.extentNode(ino, child, depth, childAt, out);
      if (below) yield* this.extentChildrenWalk(ino, below, depth - 1, childAt, out, seen);
    }
  }

  /** Walks ext2/3 block maps: 12 direct blocks, then single, double and triple indirect blocks. */
  private *blockMapWalk(ino: number, inode: Inode, runs: RunList): Walk<void> {
    const push = (logical: number, physical: number, count: number) => runs.add(logical, physical, count);
    const v = new DataView(inode.block.buffer, inode.block.byteOffset, I_BLOCK_SIZE);
    const perBlock = this.blockSize / 4;
    const limit = Math.ceil(inode.size / this.blockSize);
    const blocks = this.superblock.blocksCount;
    const check = (b: number, what: string) => {
      if (b >= blocks) throw new VhdError("FORMAT_INVALID", `ext4 inode ${ino}: ${what} block ${b} is outside the filesystem`);
    };
    for (let i = 0; i < 12 && i < limit; i++) {
      const b = v.getUint32(i * 4, true);
      if (b !== 0) {
        check(b, "data");
        push(i, b, 1);
      }
    }
    const state = { logical: 12 };
    for (let level = 1; level <= 3 && state.logical < limit; level++) {
      yield* this.indirectWalk(v.getUint32((11 + level) * 4, true), level, { perBlock, limit, state, check, push });
    }
  }

  /** One indirect block of a block map, `level` levels above the data blocks. */
  private *indirectWalk(
    block: number,
    level: number,
    ctx: { perBlock: number; limit: number; state: { logical: number }; check: (b: number, what: string) => void; push: (logical: number, physical: number, count: number) => void },
  ): Walk<void> {
    const { perBlock, limit, state, check, push } = ctx;
    if (block === 0) {
      state.logical += perBlock ** level;
      return;
    }
    check(block, "indirect");
    const bytes = yield* this.meta(block * this.blockSize, this.blockSize);
    const bv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < perBlock && state.logical < limit; i++) {
      const b = bv.getUint32(i * 4, true);
      if (level === 1) {
        if (b !== 0) {
          check(b, "data");
          push(state.logical, b, 1);
        }
        state.logical++;
      } else {
        yield* this.indirectWalk(b, level - 1, ctx);
      }
    }
  }

  /**
   * Reads `buffer.length` bytes of disk at `diskOffset` (bounds-checked against the filesystem).
   * File data goes straight to the disk; `metadata` reads go through the cache.
   */
  async readDisk(buffer: Uint8Array, diskOffset: number, metadata = false): Promise<void> {
    this.checkRange(diskOffset, buffer.length);
    await (metadata ? this.cache : this.disk).read(buffer, diskOffset);
  }

  /** `readDisk` of file data, synchronously (only when `canReadSync`). */
  readDiskSync(buffer: Uint8Array, diskOffset: number): void {
    this.checkRange(diskOffset, buffer.length);
    this.disk.readSync!(buffer, diskOffset);
  }

  /** The inline data of an inode: i_block then the `system.data` xattr. */
  async inlineData(ino: number, inode: Inode): Promise<Uint8Array> {
    return this.inlineFrom(inode, await this.run(this.xattrsWalk(ino, inode)));
  }

  /** The inline data of `inode`, given all its xattrs. */
  private inlineFrom(inode: Inode, xattrs: Xattr[]): Uint8Array {
    const extra = xattrs.find((x) => x.name === "system.data")?.value ?? new Uint8Array(0);
    const out = new Uint8Array(Math.min(inode.size, I_BLOCK_SIZE + extra.length));
    out.set(inode.block.subarray(0, Math.min(out.length, I_BLOCK_SIZE)));
    if (out.length > I_BLOCK_SIZE) out.set(extra.subarray(0, out.length - I_BLOCK_SIZE), I_BLOCK_SIZE);
    return out;
  }

  /** All of a small file's (or directory's) content in memory; for directories and symlinks. */
  async readAll(ino: number, inode: Inode, max = 256 << 20): Promise<Uint8Array> {
    return this.run(this.readAllWalk(ino, inode, max));
  }

  private *readAllWalk(ino: number, inode: Inode, max: number): Walk<Uint8Array> {
    if (inode.size > max) throw new VhdError("FORMAT_INVALID", `ext4 inode ${ino}: ${inode.size} bytes is more than ${max} for a directory or link`);
    if (inode.flags & InodeFlag.INLINE_DATA) return this.inlineFrom(inode, yield* this.xattrsWalk(ino, inode));
    const out = new Uint8Array(inode.size);
    // Through the metadata cache: these are directory and symlink blocks.
    for (const r of yield* this.dataRunsWalk(ino, inode)) out.set(yield* this.meta(r.diskOffset, r.length), r.offset);
    return out;
  }

  /** A symlink's target (fast symlinks live in i_block). */
  async readLink(ino: number, inode: Inode): Promise<string> {
    return this.run(this.readLinkWalk(ino, inode));
  }

  private *readLinkWalk(ino: number, inode: Inode): Walk<string> {
    const bytes = isFastSymlink(inode) ? inode.block.subarray(0, inode.size) : yield* this.readAllWalk(ino, inode, 4096);
    return latin1(bytes);
  }

  /** A directory's entries except `.` and `..`, in on-disk order. */
  async readDir(ino: number, inode: Inode): Promise<DirEntry[]> {
    return this.run(this.readDirWalk(ino, inode));
  }

  /** `readDir`, synchronously (only when `canReadSync`). */
  readDirSync(ino: number, inode: Inode): DirEntry[] {
    return this.runSync(this.readDirWalk(ino, inode));
  }

  private *readDirWalk(ino: number, inode: Inode): Walk<DirEntry[]> {
    const out: DirEntry[] = [];
    const add = (list: Dirent[]) => {
      for (const d of list) {
        const name = latin1(d.name);
        if (name === "." || name === "..") continue;
        if (d.inode > this.superblock.inodesCount) {
          throw new VhdError("FORMAT_INVALID", `ext4 directory inode ${ino}: entry ${JSON.stringify(name)} points at inode ${d.inode}, outside the filesystem`);
        }
        out.push({ name, ino: d.inode, fileType: d.fileType });
      }
    };
    if (inode.flags & InodeFlag.INLINE_DATA) {
      // Inline directories: the parent's inode number, then entries in the rest of i_block
      // and in system.data.
      const data = this.inlineFrom(inode, yield* this.xattrsWalk(ino, inode));
      add(decodeDirBlock(data.subarray(4, Math.min(data.length, I_BLOCK_SIZE))));
      if (data.length > I_BLOCK_SIZE) add(decodeDirBlock(data.subarray(I_BLOCK_SIZE)));
      return out;
    }
    const runs = yield* this.dataRunsWalk(ino, inode);
    for (const r of runs) {
      for (let at = 0; at < r.length; at += this.blockSize) {
        const block = yield* this.meta(r.diskOffset + at, this.blockSize);
        try {
          add(decodeDirBlock(block, r.diskOffset + at));
        } catch (err) {
          throw new VhdError("FORMAT_INVALID", `ext4 directory inode ${ino}: ${(err as Error).message}`, { offset: r.diskOffset + at, cause: err });
        }
      }
    }
    return out;
  }

  /** In-inode and block xattrs. `withSystemData` keeps the inline-data carrier attribute. */
  async xattrs(ino: number, inode: Inode, withSystemData = false): Promise<Xattr[]> {
    const all = await this.run(this.xattrsWalk(ino, inode));
    return withSystemData ? all : all.filter((x) => x.name !== "system.data");
  }

  /** All in-inode and block xattrs, `system.data` included. */
  private *xattrsWalk(ino: number, inode: Inode): Walk<Xattr[]> {
    const out = decodeInodeXattrs(inode.xattrArea);
    if (inode.fileAcl !== 0) {
      if (inode.fileAcl >= this.superblock.blocksCount) {
        throw new VhdError("FORMAT_INVALID", `ext4 inode ${ino}: xattr block ${inode.fileAcl} is outside the filesystem`);
      }
      const block = yield { position: inode.fileAcl * this.blockSize, length: this.blockSize };
      try {
        out.push(...decodeXattrBlock(block).attrs);
      } catch (err) {
        throw new VhdError("FORMAT_INVALID", `ext4 inode ${ino}: ${(err as Error).message}`, { offset: inode.fileAcl * this.blockSize, cause: err });
      }
    }
    return out;
  }

  /** Device numbers of a character or block device inode. */
  device(inode: Inode): { major: number; minor: number } {
    return decodeDevice(inode.block);
  }

  /** Root inode number. */
  get root(): number {
    return InodeNumber.ROOT;
  }

  /** Resolves a path ("a/b/c", no leading slash needed) to an inode number, following no symlinks. */
  async lookup(path: string): Promise<number> {
    let ino: number = InodeNumber.ROOT;
    for (const part of path.split("/").filter((p) => p !== "" && p !== ".")) {
      const inode = await this.readInode(ino);
      if ((inode.mode & FileMode.S_IFMT) !== FileMode.S_IFDIR) throw new VhdError("INVALID_ARGUMENT", `path ${path}: ${part} is under a non-directory`);
      const hit = (await this.readDir(ino, inode)).find((e) => e.name === Buffer.from(part, "utf8").toString("latin1"));
      if (!hit) throw new VhdError("INVALID_ARGUMENT", `path ${path}: ${part} does not exist`);
      ino = hit.ino;
    }
    return ino;
  }
}

/** Raw name bytes as a latin1 string (one char per byte). */
function latin1(bytes: Uint8Array): string {
  // fromCharCode is several times cheaper than a Buffer and toString for short names (the
  // walk decodes one per entry); long ones go through Buffer, clear of argument-count limits.
  if (bytes.length <= 1024) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

/** What extent-tree errors name (built only for an error: the walk decodes a tree per file). */
function extentWhere(ino: number): string {
  return `ext4 inode ${ino}: extent tree`;
}

/** A symlink whose target lives in i_block (shorter than 60 bytes, no data block). */
function isFastSymlink(inode: Inode): boolean {
  return !(inode.flags & (InodeFlag.EXTENTS | InodeFlag.INLINE_DATA)) && inode.size < I_BLOCK_SIZE && (inode.blocks === 0 || inode.fileAcl !== 0);
}

/** A file's data runs, built from block ranges in logical order: touching ranges merge. */
class RunList {
  private readonly runs: DataRun[] = [];

  constructor(private readonly blockSize: number) {}

  add(logical: number, physical: number, count: number): void {
    const last = this.runs[this.runs.length - 1];
    const offset = logical * this.blockSize;
    const diskOffset = physical * this.blockSize;
    if (last && last.offset + last.length === offset && last.diskOffset + last.length === diskOffset) last.length += count * this.blockSize;
    else this.runs.push({ offset, length: count * this.blockSize, diskOffset });
  }

  /** The runs, clipped to a file of `size` bytes (its last block is only partly the file's). */
  clip(size: number): DataRun[] {
    const runs = this.runs;
    let n = 0;
    while (n < runs.length && runs[n]!.offset < size) {
      const r = runs[n++]!;
      r.length = Math.min(r.length, size - r.offset);
    }
    runs.length = n;
    return runs;
  }
}
