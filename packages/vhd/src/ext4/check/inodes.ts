// Inode pass: streams every group's inode table (a chunk at a time), checks each inode in use,
// walks its block map (extent tree, indirect blocks or inline data) claiming every block in the
// whole-filesystem bitmap, checks xattrs, and records directories for the directory pass.
import { GroupFlag } from "../../format/group-desc.js";
import { extentBlockChecksum, extentTailOffset, inodeChecksum, inodeChecksumSeed, inodeStoredChecksum, xattrBlockChecksum } from "../csum.js";
import { u16, u32, type CheckContext, type Run } from "./context.js";
import { FindingCode as C } from "./findings.js";
import type { GroupInfo } from "./groups.js";

const EXTENT_MAGIC = 0xf30a;
/** EXT4_MAX_EXTENT_DEPTH in the kernel. */
const MAX_EXTENT_DEPTH = 5;
const XATTR_MAGIC = 0xea020000;
/** i_flags bits the checker interprets. */
const FL = { INDEX: 0x1000, HUGE_FILE: 0x40000, EXTENTS: 0x80000, EA_INODE: 0x200000, INLINE_DATA: 0x10000000 } as const;
const RESIZE_INO = 7;
/** Bytes of inode table read at once: bounded memory whatever the group size. */
const CHUNK_BYTES = 1 << 20;

/** Directory-entry file type code of an i_mode, 0 when the mode has no valid type. */
export function modeToFileType(mode: number): number {
  switch (mode & 0xf000) {
    case 0x8000: return 1; // regular
    case 0x4000: return 2; // directory
    case 0x2000: return 3; // character device
    case 0x6000: return 4; // block device
    case 0x1000: return 5; // fifo
    case 0xc000: return 6; // socket
    case 0xa000: return 7; // symlink
    default: return 0;
  }
}

/** One xattr entry as found on disk (only what the checks need). */
interface RawXattr {
  index: number;
  name: Uint8Array;
  value: Uint8Array;
}

/**
 * Walks an xattr entry list in `region` from `entriesAt`; values are at `valueBase + e_value_offs`.
 * Returns the entries, or a reason string when the list is malformed. Bounded by the region size.
 */
export function parseXattrEntries(region: Uint8Array, entriesAt: number, valueBase: number): RawXattr[] | string {
  const out: RawXattr[] = [];
  let at = entriesAt;
  for (let guard = 0; guard <= region.length / 4; guard++) {
    if (at + 4 > region.length) return `entries run past the end at ${at}`;
    if (u32(region, at) === 0) return out;
    if (at + 16 > region.length) return `entry at ${at} truncated`;
    const nameLen = region[at]!;
    const offs = u16(region, at + 2);
    const inum = u32(region, at + 4);
    const size = u32(region, at + 8);
    const nameEnd = at + 16 + nameLen;
    if (nameLen === 0) return `entry at ${at} has an empty name`;
    if (nameEnd > region.length) return `entry at ${at}: name runs past the end`;
    if (inum !== 0) return `entry at ${at}: value in inode ${inum} (ea_inode) without the feature`;
    const vs = valueBase + offs;
    if (size > 0 && (vs + size > region.length || vs < entriesAt)) return `entry at ${at}: value [${offs}, +${size}) outside the region`;
    out.push({ index: region[at + 1]!, name: region.subarray(at + 16, nameEnd), value: size > 0 ? region.subarray(vs, vs + size) : new Uint8Array(0) });
    at += (16 + nameLen + 3) & ~3;
  }
  return "too many entries";
}

interface MapState {
  /** Blocks mapped: data plus tree/indirect blocks. */
  blocks: number;
  /** Highest initialized logical block, -1 when none. */
  lastInit: number;
  /** Highest logical block mapped + 1. */
  end: number;
  runs: Run[] | undefined;
}

function pushRun(st: MapState, logical: number, physical: number, len: number): void {
  if (!st.runs) return;
  const last = st.runs[st.runs.length - 1];
  if (last && last.logical + last.len === logical && last.physical + last.len === physical) last.len += len;
  else st.runs.push({ logical, physical, len });
}

/** The inode pass. Returns the number of directories counted in each group. */
export async function scanInodes(ctx: CheckContext, groups: GroupInfo[]): Promise<Uint32Array> {
  const { geo } = ctx;
  const dirsPerGroup = new Uint32Array(geo.groups);
  const xattrBlocks = new Map<number, { refcount: number; refs: number; offset: number }>();
  const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / geo.inodeSize));
  for (let g = 0; g < geo.groups; g++) {
    const d = groups[g]!;
    if (ctx.badGroups.has(g)) continue;
    if (geo.groupCsum && d.flags & GroupFlag.INODE_UNINIT) continue;
    // With group checksums the inodes past ipg - itable_unused were never written: skip them,
    // as e2fsck does (bitmap bits set there show up as a mismatch).
    const limit = geo.groupCsum ? geo.inodesPerGroup - Math.min(d.itableUnused, geo.inodesPerGroup) : geo.inodesPerGroup;
    const inodeBitmap = ctx.inRange(d.inodeBitmap) ? await ctx.readBlocks(d.inodeBitmap) : new Uint8Array(geo.blockSize);
    const tableAt = d.inodeTable * geo.blockSize;
    for (let i0 = 0; i0 < limit; i0 += perChunk) {
      const n = Math.min(perChunk, limit - i0);
      const chunk = new Uint8Array(n * geo.inodeSize);
      await ctx.source.read(chunk, tableAt + i0 * geo.inodeSize);
      ctx.stats.blocksRead += Math.ceil(chunk.length / geo.blockSize);
      for (let i = 0; i < n; i++) {
        const idx = i0 + i;
        const ino = g * geo.inodesPerGroup + idx + 1;
        const raw = chunk.subarray(i * geo.inodeSize, (i + 1) * geo.inodeSize);
        const onBitmap = ((inodeBitmap[idx >>> 3] ?? 0) & (1 << (idx & 7))) !== 0;
        const isDir = await checkInode(ctx, ino, raw, tableAt + idx * geo.inodeSize, onBitmap, xattrBlocks);
        if (isDir) dirsPerGroup[g]!++;
      }
    }
  }
  for (const [block, x] of xattrBlocks) {
    if (x.refcount !== x.refs) {
      ctx.findings.add(C.XATTR_REFCOUNT, `xattr block ${block}`, `h_refcount ${x.refcount}, but ${x.refs} inode(s) reference it`, x.offset + 4);
    }
  }
  return dirsPerGroup;
}

/** Checks one inode; returns true when it is a directory in use. */
async function checkInode(
  ctx: CheckContext,
  ino: number,
  raw: Uint8Array,
  offset: number,
  onBitmap: boolean,
  xattrBlocks: Map<number, { refcount: number; refs: number; offset: number }>,
): Promise<boolean> {
  const { geo, findings: f } = ctx;
  const S = `inode ${ino}`;
  const mode = u16(raw, 0x00);
  const links = u16(raw, 0x1a);
  const dtime = u32(raw, 0x14);
  const flags = u32(raw, 0x20);
  const reserved = ino < geo.firstIno;
  const hidden = geo.hiddenInodes.has(ino);
  const iblock = raw.subarray(0x28, 0x28 + 60);

  if (ino === 2 && (links === 0 || (mode & 0xf000) !== 0x4000)) {
    f.add(C.SPECIAL_INODE, S, `the root inode is not a directory in use (mode 0${mode.toString(8)}, links ${links})`, offset);
    ctx.inodeSetUsed(ino);
    return false;
  }
  if (reserved) {
    ctx.inodeSetUsed(ino);
    // Unused reserved inodes are all zero; only walk those that hold something.
    if (ino !== 2 && ino !== geo.journalInum && !hidden && ino !== RESIZE_INO && mode === 0 && iblock.every((b) => b === 0)) return false;
  } else if (links === 0) {
    if (!hidden || mode === 0) {
      // An allocated inode with no links and no dtime is an unlinked-but-open file the kernel
      // would have put on the orphan list: the filesystem is not orphan-free.
      if (onBitmap && mode !== 0 && dtime === 0) f.add(C.ORPHAN_LIST, S, "allocated with no links and no dtime: an orphaned inode", offset + 0x1a);
      return false;
    }
  }
  if (!reserved || ino === 2) {
    ctx.inodeSetUsed(ino);
    ctx.links[ino] = links;
  }
  if (hidden) ctx.inodeSetUsed(ino);

  let seed = 0;
  if (geo.metadataCsum) {
    seed = inodeChecksumSeed(geo.csumSeed, ino, u32(raw, 0x64));
    if (mode !== 0 || !reserved) {
      const want = inodeChecksum(seed, raw, geo.inodeSize);
      const stored = inodeStoredChecksum(raw, geo.inodeSize);
      if (want !== stored) f.add(C.INODE_CHECKSUM, S, `checksum 0x${stored.toString(16)} does not match 0x${want.toString(16)}`, offset + 0x7c);
    }
  }
  let extra = 0;
  if (geo.inodeSize > 128) {
    extra = u16(raw, 0x80);
    if (extra % 4 !== 0 || 128 + extra > geo.inodeSize) {
      f.add(C.INODE_INVALID, S, `i_extra_isize ${extra} does not fit a ${geo.inodeSize}-byte inode`, offset + 0x80);
      extra = -1;
    }
  }
  if (!reserved && dtime !== 0) f.add(C.INODE_INVALID, S, `in use (links ${links}) but has dtime ${dtime}`, offset + 0x14);

  const type = modeToFileType(mode);
  if (type === 0 && !(reserved && ino !== 2)) {
    f.add(C.INODE_INVALID, S, `i_mode 0${mode.toString(8)} has no valid file type`, offset);
    return false;
  }
  if (!reserved || ino === 2) ctx.kind[ino] = type;
  if (!reserved && !hidden) {
    if (type === 1) ctx.stats.regularFiles++;
    else if (type === 2) ctx.stats.directories++;
    else if (type === 7) ctx.stats.symlinks++;
    else ctx.stats.specialFiles++;
  } else if (ino === 2) ctx.stats.directories++;

  const isExtents = (flags & FL.EXTENTS) !== 0;
  const isInline = (flags & FL.INLINE_DATA) !== 0;
  if (isExtents && !geo.has.extents) f.add(C.INODE_INVALID, S, "EXTENTS_FL set on a filesystem without the extent feature", offset + 0x20);
  if (isInline && !geo.has.inlineData) f.add(C.INLINE_DATA_INVALID, S, "INLINE_DATA_FL set on a filesystem without the inline_data feature", offset + 0x20);
  if (isInline && isExtents) f.add(C.INODE_INVALID, S, "both INLINE_DATA_FL and EXTENTS_FL set", offset + 0x20);
  if (flags & FL.INDEX && type === 2 && !geo.has.dirIndex) f.add(C.INODE_INVALID, S, "INDEX_FL set on a filesystem without dir_index", offset + 0x20);

  // In-inode xattrs (and system.data for inline data).
  let systemData: Uint8Array | undefined;
  if (extra >= 0 && geo.inodeSize > 128 + extra + 4) {
    const area = raw.subarray(128 + extra, geo.inodeSize);
    if (u32(area, 0) === XATTR_MAGIC) {
      const list = parseXattrEntries(area, 4, 4);
      if (typeof list === "string") f.add(C.XATTR_INVALID, S, `in-inode xattrs: ${list}`, offset + 128 + extra);
      else systemData = list.find((x) => x.index === 7 && x.name.length === 4 && Buffer.from(x.name).toString("latin1") === "data")?.value;
    }
  }

  const size = u32(raw, 0x04) + u32(raw, 0x6c) * 2 ** 32;
  const st: MapState = { blocks: 0, lastInit: -1, end: 0, runs: type === 2 || ino === geo.orphanFileInum ? [] : undefined };
  let inlineBytes: Uint8Array | undefined;
  let mapped = true;
  if (ino === RESIZE_INO && geo.has.resizeInode) {
    // The resize inode's double-indirect block lists the reserved GDT blocks, which are already
    // claimed as group metadata; only the double-indirect block itself is its own.
    const dind = u32(iblock, 13 * 4);
    if (dind !== 0) {
      if (!ctx.inRange(dind)) f.add(C.SPECIAL_INODE, S, `resize inode's double-indirect block ${dind} out of range`, offset + 0x28 + 52);
      else if (ctx.claim(dind, 1) > 0) f.add(C.BLOCK_MAP_INVALID, S, `resize inode's double-indirect block ${dind} is already in use`, dind * geo.blockSize);
    }
    return false;
  } else if (type === 3 || type === 4 || type === 5 || type === 6) {
    mapped = false; // i_block holds a device number, or nothing
  } else if (isInline) {
    mapped = false;
    if (systemData === undefined) f.add(C.INLINE_DATA_INVALID, S, "INLINE_DATA_FL set but no system.data xattr", offset + 0x20);
    const cap = 60 + (systemData?.length ?? 0);
    if (type === 2) {
      // e2fsck requires an inline directory's size to be exactly its inline bytes; a regular
      // file may claim more (the rest reads as zeros), which e2fsck and the kernel accept.
      if (size !== cap) f.add(C.INLINE_DATA_INVALID, S, `inline directory i_size ${size}, but it holds ${cap} bytes`, offset + 0x04);
      inlineBytes = new Uint8Array(cap);
      inlineBytes.set(iblock, 0);
      if (systemData) inlineBytes.set(systemData, 60);
    }
  } else if (type === 7 && size < 60 && !isExtents) {
    mapped = false; // fast symlink: the target is in i_block
    if (size === 0) f.add(C.INODE_INVALID, S, "symlink with an empty target", offset + 0x04);
  } else if (isExtents) {
    await walkExtents(ctx, ino, iblock, seed, st, offset);
  } else {
    await walkIndirect(ctx, ino, iblock, st, offset);
  }

  // Xattr block.
  const fileAcl = u32(raw, 0x68) + u16(raw, 0x76) * 2 ** 32;
  let xattrBlockCounted = 0;
  if (fileAcl !== 0) {
    if (!geo.has.extAttr) f.add(C.XATTR_BLOCK_INVALID, S, "i_file_acl set on a filesystem without ext_attr", offset + 0x68);
    if (!ctx.inRange(fileAcl)) {
      f.add(C.XATTR_BLOCK_INVALID, S, `i_file_acl ${fileAcl} is outside the filesystem`, offset + 0x68);
    } else {
      xattrBlockCounted = 1;
      const known = xattrBlocks.get(fileAcl);
      if (known) known.refs++;
      else {
        const at = fileAcl * geo.blockSize;
        const block = await ctx.readBlocks(fileAcl);
        const entry = { refcount: u32(block, 4), refs: 1, offset: at };
        xattrBlocks.set(fileAcl, entry);
        const XS = `xattr block ${fileAcl}`;
        if (ctx.claim(fileAcl, 1) > 0) f.add(C.XATTR_BLOCK_INVALID, XS, `block ${fileAcl} (xattrs of inode ${ino}) is also used by metadata or another inode`, at);
        if (u32(block, 0) !== XATTR_MAGIC) {
          f.add(C.XATTR_BLOCK_INVALID, XS, `bad magic 0x${u32(block, 0).toString(16)} (inode ${ino})`, at);
          entry.refcount = entry.refs = -1; // no refcount to compare
        } else {
          if (u32(block, 8) !== 1) f.add(C.XATTR_BLOCK_INVALID, XS, `h_blocks ${u32(block, 8)} (want 1)`, at + 8);
          if (geo.metadataCsum) {
            const want = xattrBlockChecksum(geo.csumSeed, fileAcl, block);
            if (want !== u32(block, 0x10)) f.add(C.XATTR_CHECKSUM, XS, `h_checksum 0x${u32(block, 0x10).toString(16)} does not match 0x${want.toString(16)}`, at + 0x10);
          }
          const list = parseXattrEntries(block, 32, 0);
          if (typeof list === "string") f.add(C.XATTR_BLOCK_INVALID, XS, list, at);
        }
      }
    }
  }

  // i_blocks: 512-byte units, or filesystem blocks for HUGE_FILE_FL inodes with huge_file.
  const totalBlocks = st.blocks + xattrBlockCounted;
  const hugeUnits = geo.has.hugeFile && (flags & FL.HUGE_FILE) !== 0;
  const stored = u32(raw, 0x1c) + (geo.has.hugeFile ? u16(raw, 0x74) * 2 ** 32 : 0);
  const want = hugeUnits ? totalBlocks : totalBlocks * (geo.blockSize / 512);
  if (stored !== want) f.add(C.INODE_BLOCKS, S, `i_blocks ${stored}, but the inode maps ${totalBlocks} blocks (${want})`, offset + 0x1c);

  if (mapped) {
    if (type === 2) {
      if (size % geo.blockSize !== 0 || size / geo.blockSize !== st.end) {
        f.add(C.INODE_SIZE, S, `directory i_size ${size} but ${st.end} blocks mapped`, offset + 0x04);
      } else if (st.runs && st.runs.reduce((n, r) => n + r.len, 0) !== st.end) {
        f.add(C.INODE_SIZE, S, "directory has holes", offset + 0x04);
      }
    } else if (st.lastInit >= 0 && size < st.lastInit * geo.blockSize) {
      // The same tolerance as e2fsck: the last initialized block may be only partly covered.
      f.add(C.INODE_SIZE, S, `i_size ${size} ends before mapped block ${st.lastInit}`, offset + 0x04);
    }
    if (type === 7 && (size >= geo.blockSize || st.blocks < 1)) {
      f.add(C.INODE_INVALID, S, `slow symlink of ${size} bytes mapping ${st.blocks} blocks`, offset + 0x04);
    }
  }

  if (ino === geo.orphanFileInum && st.runs) ctx.orphanRuns = st.runs;
  if (type === 2 && !hidden) {
    ctx.dirs.push({ ino, size, flags, seed, runs: st.runs ?? [], ...(inlineBytes ? { inline: inlineBytes } : {}), offset });
    return true;
  }
  return false;
}

/** Walks an extent tree from the root in i_block, claiming every block it maps. */
async function walkExtents(ctx: CheckContext, ino: number, iblock: Uint8Array, seed: number, st: MapState, inodeOffset: number): Promise<void> {
  const { findings: f } = ctx;
  const S = `inode ${ino} extent tree`;
  const magic = u16(iblock, 0);
  const entries = u16(iblock, 2);
  const max = u16(iblock, 4);
  const depth = u16(iblock, 6);
  if (magic !== EXTENT_MAGIC) return f.add(C.EXTENT_HEADER, S, `root: bad magic 0x${magic.toString(16)}`, inodeOffset + 0x28);
  if (max > 4 || entries > max) return f.add(C.EXTENT_HEADER, S, `root: ${entries} entries, eh_max ${max} (at most 4)`, inodeOffset + 0x28);
  if (depth > MAX_EXTENT_DEPTH) return f.add(C.EXTENT_HEADER, S, `root: depth ${depth} above ${MAX_EXTENT_DEPTH}`, inodeOffset + 0x2e);
  await walkNode(ctx, S, iblock, depth, [], seed, st, { value: 0 }, inodeOffset + 0x28);
}

async function walkNode(
  ctx: CheckContext,
  S: string,
  node: Uint8Array,
  depth: number,
  path: number[],
  seed: number,
  st: MapState,
  next: { value: number },
  nodeOffset: number,
): Promise<void> {
  const { geo, findings: f } = ctx;
  const entries = u16(node, 2);
  let prevIndex = -1;
  for (let i = 0, at = 12; i < entries; i++, at += 12) {
    const logical = u32(node, at);
    if (depth === 0) {
      const rawLen = u16(node, at + 4);
      const uninit = rawLen > 32768;
      const len = uninit ? rawLen - 32768 : rawLen;
      const physical = u16(node, at + 6) * 2 ** 32 + u32(node, at + 8);
      if (len === 0) {
        f.add(C.EXTENT_OUT_OF_RANGE, S, `extent at logical ${logical} has length 0`, nodeOffset + at);
        continue;
      }
      if (logical < next.value) f.add(C.EXTENT_OVERLAP, S, `extent at logical ${logical} overlaps or precedes the previous one (ending at ${next.value})`, nodeOffset + at);
      if (logical + len > 2 ** 32) f.add(C.EXTENT_OUT_OF_RANGE, S, `extent at logical ${logical}+${len} passes the 2^32 block limit`, nodeOffset + at);
      if (!ctx.inRange(physical, len)) {
        f.add(C.EXTENT_OUT_OF_RANGE, S, `extent at logical ${logical} maps blocks ${physical}-${physical + len - 1}, outside ${geo.firstDataBlock}-${geo.blocksCount - 1}`, nodeOffset + at);
        continue;
      }
      const dup = ctx.claim(physical, len);
      st.blocks += len;
      next.value = Math.max(next.value, logical + len);
      st.end = Math.max(st.end, logical + len);
      if (!uninit) st.lastInit = Math.max(st.lastInit, logical + len - 1);
      if (dup > 0) {
        // Kept out of the directory runs: many inodes sharing one long extent would otherwise
        // make the directory pass read the same blocks again and again.
        f.add(C.EXTENT_OVERLAP, S, `extent at logical ${logical} maps blocks ${physical}-${physical + len - 1}, ${dup} of them already used by metadata or another extent`, nodeOffset + at);
        continue;
      }
      pushRun(st, logical, physical, len);
      continue;
    }
    const child = u32(node, at + 4) + u16(node, at + 8) * 2 ** 32;
    if (logical < prevIndex) f.add(C.EXTENT_OVERLAP, S, `index entries out of order at logical ${logical}`, nodeOffset + at);
    prevIndex = logical;
    if (!ctx.inRange(child)) {
      f.add(C.EXTENT_OUT_OF_RANGE, S, `index at logical ${logical} points at block ${child}, outside the filesystem`, nodeOffset + at);
      continue;
    }
    if (path.includes(child)) {
      f.add(C.EXTENT_LOOP, S, `index at logical ${logical} points back at block ${child}, a node on its own path`, nodeOffset + at);
      continue;
    }
    if (ctx.claim(child, 1) > 0) {
      // Not descending again keeps the walk linear in the blocks of the filesystem.
      f.add(C.EXTENT_OVERLAP, S, `tree block ${child} is already used by metadata or another extent`, child * geo.blockSize);
      continue;
    }
    st.blocks += 1;
    const block = await ctx.readBlocks(child);
    const childAt = child * geo.blockSize;
    const cMagic = u16(block, 0);
    const cEntries = u16(block, 2);
    const cMax = u16(block, 4);
    const cDepth = u16(block, 6);
    if (cMagic !== EXTENT_MAGIC) {
      f.add(C.EXTENT_HEADER, S, `node in block ${child}: bad magic 0x${cMagic.toString(16)}`, childAt);
      continue;
    }
    if (cDepth >= depth) {
      f.add(C.EXTENT_LOOP, S, `node in block ${child} has depth ${cDepth}, not below its parent's ${depth}: the tree does not end`, childAt + 6);
      continue;
    }
    if (cDepth !== depth - 1) {
      f.add(C.EXTENT_HEADER, S, `node in block ${child} has depth ${cDepth}, want ${depth - 1}`, childAt + 6);
      continue;
    }
    const cap = Math.floor((geo.blockSize - 12) / 12);
    if (cMax > cap || cEntries > cMax || cMax === 0) {
      f.add(C.EXTENT_HEADER, S, `node in block ${child}: ${cEntries} entries, eh_max ${cMax} (block holds ${cap})`, childAt + 2);
      continue;
    }
    if (geo.metadataCsum) {
      const tail = extentTailOffset(cMax);
      if (tail + 4 > geo.blockSize) f.add(C.EXTENT_HEADER, S, `node in block ${child}: no room for the checksum tail`, childAt);
      else {
        const want = extentBlockChecksum(seed, block, cMax);
        if (want !== u32(block, tail)) f.add(C.EXTENT_CHECKSUM, S, `node in block ${child}: checksum 0x${u32(block, tail).toString(16)} does not match 0x${want.toString(16)}`, childAt + tail);
      }
    }
    if (cEntries > 0 && u32(block, 12) < logical) f.add(C.EXTENT_OVERLAP, S, `node in block ${child} starts at logical ${u32(block, 12)}, before its index (${logical})`, childAt + 12);
    await walkNode(ctx, S, block, cDepth, [...path, child], seed, st, next, childAt);
  }
}

/** Walks the ext2/ext3 block map: 12 direct pointers, then single, double and triple indirect. */
async function walkIndirect(ctx: CheckContext, ino: number, iblock: Uint8Array, st: MapState, inodeOffset: number): Promise<void> {
  const { geo, findings: f } = ctx;
  const S = `inode ${ino} block map`;
  const perBlock = geo.blockSize / 4;
  const claimBlock = (p: number, logical: number, where: number): boolean => {
    if (!ctx.inRange(p)) {
      f.add(C.BLOCK_MAP_INVALID, S, `logical block ${logical} points at block ${p}, outside the filesystem`, where);
      return false;
    }
    if (ctx.claim(p, 1) > 0) {
      f.add(C.BLOCK_MAP_INVALID, S, `logical block ${logical} points at block ${p}, already used by metadata or another inode`, where);
      return false;
    }
    st.blocks++;
    return true;
  };
  const data = (p: number, logical: number, where: number) => {
    if (!claimBlock(p, logical, where)) return;
    st.end = Math.max(st.end, logical + 1);
    st.lastInit = Math.max(st.lastInit, logical);
    pushRun(st, logical, p, 1);
  };
  const walk = async (p: number, level: number, base: number, where: number): Promise<void> => {
    // An indirect block is claimed before it is read: a pointer back to it is a double claim,
    // so the walk reads each block at most once.
    if (!claimBlock(p, base, where)) return;
    const block = await ctx.readBlocks(p);
    const span = perBlock ** (level - 1);
    for (let j = 0; j < perBlock; j++) {
      const q = u32(block, j * 4);
      if (q === 0) continue;
      if (level === 1) data(q, base + j, p * geo.blockSize + j * 4);
      else await walk(q, level - 1, base + j * span, p * geo.blockSize + j * 4);
    }
  };
  for (let i = 0; i < 12; i++) {
    const p = u32(iblock, i * 4);
    if (p !== 0) data(p, i, inodeOffset + 0x28 + i * 4);
  }
  const bases = [12, 12 + perBlock, 12 + perBlock + perBlock * perBlock];
  for (let level = 1; level <= 3; level++) {
    const p = u32(iblock, (11 + level) * 4);
    if (p !== 0) await walk(p, level, bases[level - 1]!, inodeOffset + 0x28 + (11 + level) * 4);
  }
}
