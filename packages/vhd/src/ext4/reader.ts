// Reads ext4 (and ext2/ext3) filesystems from a block source: what our writer makes and what
// mkfs.ext4 makes. Extents and the old indirect block maps, linear and htree directories
// (read linearly: htree index blocks look like empty entries), inline data, in-inode and block
// xattrs, 32- and 64-byte group descriptors. Every structure read is bounds-checked and every
// walk is bounded, so damaged images give a typed error naming the structure and offset.
import { VhdError } from "../errors.js";
import { decodeDirBlock, type Dirent } from "../format/dirent.js";
import { decodeExtentNode, type Extent } from "../format/extent.js";
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

export class Ext4Reader {
  readonly blockSize: number;
  readonly groups: number;
  readonly inodeSize: number;
  private readonly descs: GroupDesc[];

  private constructor(
    /** Metadata reads (inode tables, directories, extent and xattr blocks) go through a cache. */
    readonly source: BlockSource,
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
    const sb = this.superblock;
    if (ino < 1 || ino > sb.inodesCount) throw new VhdError("FORMAT_INVALID", `ext4: inode ${ino} is outside 1..${sb.inodesCount}`);
    const group = Math.floor((ino - 1) / sb.inodesPerGroup);
    const index = (ino - 1) % sb.inodesPerGroup;
    const offset = this.groupDesc(group).inodeTable * this.blockSize + index * this.inodeSize;
    const bytes = new Uint8Array(this.inodeSize);
    await this.source.read(bytes, offset);
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

  /**
   * The file's data as runs in logical order (holes are gaps between runs; unwritten extents
   * count as holes). Works for extent-mapped and block-mapped (ext2/3) inodes.
   */
  async dataRuns(ino: number, inode: Inode): Promise<DataRun[]> {
    if (inode.flags & InodeFlag.INLINE_DATA) return [];
    const runs: DataRun[] = [];
    const bs = this.blockSize;
    const push = (logical: number, physical: number, count: number) => {
      const last = runs[runs.length - 1];
      const offset = logical * bs;
      const diskOffset = physical * bs;
      if (last && last.offset + last.length === offset && last.diskOffset + last.length === diskOffset) last.length += count * bs;
      else runs.push({ offset, length: count * bs, diskOffset });
    };
    if (inode.flags & InodeFlag.EXTENTS) {
      for (const e of await this.extents(ino, inode)) push(e.logical, e.physical, e.len);
    } else {
      await this.blockMap(ino, inode, push);
    }
    // Clip to the file size: the last block is only partly the file's.
    const out: DataRun[] = [];
    for (const r of runs) {
      if (r.offset >= inode.size) break;
      out.push({ ...r, length: Math.min(r.length, inode.size - r.offset) });
    }
    return out;
  }

  /** The initialized extents of an extent-mapped inode, in logical order, validated. */
  async extents(ino: number, inode: Inode): Promise<Extent[]> {
    const out: Extent[] = [];
    const seen = new Set<number>();
    const blocks = this.superblock.blocksCount;
    const where = `ext4 inode ${ino}: extent tree`;
    const walk = async (node: Uint8Array, depth: number, at: number): Promise<void> => {
      const decoded = (() => {
        try {
          return decodeExtentNode(node, 0, node.length);
        } catch (err) {
          throw new VhdError("FORMAT_INVALID", `${where} node at offset ${at}: ${(err as Error).message}`, { offset: at, cause: err });
        }
      })();
      if (decoded.header.depth !== depth) {
        throw new VhdError("FORMAT_INVALID", `${where} node at offset ${at}: depth ${decoded.header.depth}, expected ${depth}`, { offset: at });
      }
      if (decoded.leaf) {
        for (const e of decoded.extents) {
          // ee_len above 32768 marks an unwritten (preallocated) extent: it reads as zeros.
          const len = e.len > 32768 ? e.len - 32768 : e.len;
          if (e.physical + len > blocks || e.physical === 0) {
            throw new VhdError("FORMAT_INVALID", `${where}: extent ${e.logical}+${len} -> block ${e.physical} is outside the filesystem`, { offset: at });
          }
          const last = out[out.length - 1];
          if (last && e.logical < last.logical + last.len) {
            throw new VhdError("FORMAT_INVALID", `${where}: extents overlap or are out of order at logical block ${e.logical}`, { offset: at });
          }
          if (e.len <= 32768) out.push({ logical: e.logical, len, physical: e.physical });
        }
        return;
      }
      for (const idx of decoded.indexes) {
        if (idx.child === 0 || idx.child >= blocks) {
          throw new VhdError("FORMAT_INVALID", `${where}: index points at block ${idx.child}, outside the filesystem`, { offset: at });
        }
        if (seen.has(idx.child)) throw new VhdError("FORMAT_INVALID", `${where}: block ${idx.child} appears twice (a loop)`, { offset: at });
        seen.add(idx.child);
        const child = new Uint8Array(this.blockSize);
        await this.source.read(child, idx.child * this.blockSize);
        await walk(child, depth - 1, idx.child * this.blockSize);
      }
    };
    const rootDepth = new DataView(inode.block.buffer, inode.block.byteOffset).getUint16(6, true);
    if (rootDepth > MAX_EXTENT_DEPTH) throw new VhdError("FORMAT_INVALID", `${where}: depth ${rootDepth} exceeds ${MAX_EXTENT_DEPTH}`);
    await walk(inode.block, rootDepth, -1);
    return out;
  }

  /** Walks ext2/3 block maps: 12 direct blocks, then single, double and triple indirect blocks. */
  private async blockMap(ino: number, inode: Inode, push: (logical: number, physical: number, count: number) => void): Promise<void> {
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
    let logical = 12;
    const walk = async (block: number, level: number): Promise<void> => {
      if (block === 0) {
        logical += perBlock ** level;
        return;
      }
      check(block, "indirect");
      const bytes = new Uint8Array(this.blockSize);
      await this.source.read(bytes, block * this.blockSize);
      const bv = new DataView(bytes.buffer);
      for (let i = 0; i < perBlock && logical < limit; i++) {
        const b = bv.getUint32(i * 4, true);
        if (level === 1) {
          if (b !== 0) {
            check(b, "data");
            push(logical, b, 1);
          }
          logical++;
        } else {
          await walk(b, level - 1);
        }
      }
    };
    for (let level = 1; level <= 3 && logical < limit; level++) await walk(v.getUint32((11 + level) * 4, true), level);
  }

  /**
   * Reads `buffer.length` bytes of disk at `diskOffset` (bounds-checked against the filesystem).
   * File data goes straight to the disk; `metadata` reads go through the cache.
   */
  async readDisk(buffer: Uint8Array, diskOffset: number, metadata = false): Promise<void> {
    if (diskOffset + buffer.length > this.superblock.blocksCount * this.blockSize) {
      throw new VhdError("FORMAT_INVALID", `ext4: read of ${buffer.length} bytes at ${diskOffset} runs past the filesystem`, { offset: diskOffset });
    }
    await (metadata ? this.source : this.disk).read(buffer, diskOffset);
  }

  /** The inline data of an inode: i_block then the `system.data` xattr. */
  async inlineData(ino: number, inode: Inode): Promise<Uint8Array> {
    const extra = (await this.xattrs(ino, inode, true)).find((x) => x.name === "system.data")?.value ?? new Uint8Array(0);
    const out = new Uint8Array(Math.min(inode.size, I_BLOCK_SIZE + extra.length));
    out.set(inode.block.subarray(0, Math.min(out.length, I_BLOCK_SIZE)));
    if (out.length > I_BLOCK_SIZE) out.set(extra.subarray(0, out.length - I_BLOCK_SIZE), I_BLOCK_SIZE);
    return out;
  }

  /** All of a small file's (or directory's) content in memory; for directories and symlinks. */
  async readAll(ino: number, inode: Inode, max = 256 << 20): Promise<Uint8Array> {
    if (inode.size > max) throw new VhdError("FORMAT_INVALID", `ext4 inode ${ino}: ${inode.size} bytes is more than ${max} for a directory or link`);
    if (inode.flags & InodeFlag.INLINE_DATA) return this.inlineData(ino, inode);
    const out = new Uint8Array(inode.size);
    for (const r of await this.dataRuns(ino, inode)) await this.readDisk(out.subarray(r.offset, r.offset + r.length), r.diskOffset);
    return out;
  }

  /** A symlink's target (fast symlinks live in i_block). */
  async readLink(ino: number, inode: Inode): Promise<string> {
    const fast = !(inode.flags & (InodeFlag.EXTENTS | InodeFlag.INLINE_DATA)) && inode.size < I_BLOCK_SIZE && (inode.blocks === 0 || inode.fileAcl !== 0);
    const bytes = fast ? inode.block.subarray(0, inode.size) : await this.readAll(ino, inode, 4096);
    return Buffer.from(bytes).toString("latin1");
  }

  /** A directory's entries except `.` and `..`, in on-disk order. */
  async readDir(ino: number, inode: Inode): Promise<DirEntry[]> {
    const out: DirEntry[] = [];
    const add = (list: Dirent[]) => {
      for (const d of list) {
        const name = Buffer.from(d.name).toString("latin1");
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
      const data = await this.inlineData(ino, inode);
      add(decodeDirBlock(data.subarray(4, Math.min(data.length, I_BLOCK_SIZE))));
      if (data.length > I_BLOCK_SIZE) add(decodeDirBlock(data.subarray(I_BLOCK_SIZE)));
      return out;
    }
    const runs = await this.dataRuns(ino, inode);
    for (const r of runs) {
      for (let at = 0; at < r.length; at += this.blockSize) {
        const block = new Uint8Array(this.blockSize);
        await this.readDisk(block, r.diskOffset + at, true);
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
    const out = [...decodeInodeXattrs(inode.xattrArea)];
    if (inode.fileAcl !== 0) {
      if (inode.fileAcl >= this.superblock.blocksCount) {
        throw new VhdError("FORMAT_INVALID", `ext4 inode ${ino}: xattr block ${inode.fileAcl} is outside the filesystem`);
      }
      const block = new Uint8Array(this.blockSize);
      await this.source.read(block, inode.fileAcl * this.blockSize);
      try {
        out.push(...decodeXattrBlock(block).attrs);
      } catch (err) {
        throw new VhdError("FORMAT_INVALID", `ext4 inode ${ino}: ${(err as Error).message}`, { offset: inode.fileAcl * this.blockSize, cause: err });
      }
    }
    return withSystemData ? out : out.filter((x) => x.name !== "system.data");
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
