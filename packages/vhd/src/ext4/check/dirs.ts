// Directory pass: every entry of every directory (linear blocks, htree nodes, inline data),
// then the directory graph (reachable from the root, no cycles, one parent each, '..' right),
// link counts, and the orphan file.
import { dirBlockChecksum, dirBlockStoredChecksum, DX_TAIL_SIZE, dxNodeChecksum, dxTailOffset, hasDirTail } from "../csum.js";
import { u16, u32, type CheckContext, type DirRecord, type Run } from "./context.js";
import { FindingCode as C } from "./findings.js";

/** EXT4_LINK_MAX: past this many subdirectories dir_nlink stores a link count of 1. */
const LINK_MAX = 65000;
/** Directory blocks read at once. */
const READ_BATCH = 16;
const ORPHAN_TAIL_SIZE = 8;

interface Graph {
  /** Dense index of each directory inode. */
  index: Map<number, number>;
  from: number[];
  to: number[];
  /** '..' of each directory (by dense index), 0 when missing. */
  dotdot: Uint32Array;
}

/** The directory pass; the inode pass must have run. */
export async function checkDirectories(ctx: CheckContext): Promise<void> {
  const { geo } = ctx;
  const graph: Graph = { index: new Map(), from: [], to: [], dotdot: new Uint32Array(ctx.dirs.length) };
  ctx.dirs.forEach((d, i) => graph.index.set(d.ino, i));
  for (const dir of ctx.dirs) {
    if (dir.inline) checkInlineDir(ctx, dir, graph);
    else await checkBlockDir(ctx, dir, graph);
  }
  checkGraph(ctx, graph);
  checkLinkCounts(ctx);
  if (geo.lastOrphan !== 0) ctx.findings.add(C.ORPHAN_LIST, "superblock", `s_last_orphan is ${geo.lastOrphan}: inodes are waiting on the orphan list`, 1024 + 0xe8);
  await checkOrphanFile(ctx);
}

/** Decodes rec_len, which for 64 KiB blocks stores 65536 as 0 or 65535 (ext4_rec_len_from_disk). */
function recLenOf(raw: number, blockSize: number): number {
  if (blockSize >= 65536 && (raw === 0 || raw === 65535)) return 65536;
  return raw;
}

/** One entry seen in a directory. `position` 0/1 is where '.'/'..' must be (block 0 only). */
function onEntry(ctx: CheckContext, dir: DirRecord, graph: Graph, target: number, name: Uint8Array, fileType: number, where: string, offset: number, position: number): void {
  const { geo, findings: f } = ctx;
  const isDot = name.length === 1 && name[0] === 0x2e;
  const isDotDot = name.length === 2 && name[0] === 0x2e && name[1] === 0x2e;
  const di = graph.index.get(dir.ino)!;
  if (position === 0) {
    if (!isDot || target !== dir.ino) f.add(C.DIRENT_DOT, where, `first entry is ${JSON.stringify(latin1(name))} -> ${target}, not '.' -> ${dir.ino}`, offset);
    ctx.refs[dir.ino]!++; // e2fsck counts '.' for the directory itself, whatever is written
    return;
  }
  if (position === 1) {
    if (!isDotDot) {
      f.add(C.DIRENT_DOT, where, `second entry is ${JSON.stringify(latin1(name))}, not '..'`, offset);
      return;
    }
    graph.dotdot[di] = target;
    if (target >= 1 && target <= geo.inodesCount && ctx.kind[target] === 2) ctx.refs[target]!++;
    else f.add(C.DIRENT_DOT, where, `'..' -> ${target}, not a directory in use`, offset);
    return;
  }
  if (isDot || isDotDot) {
    f.add(C.DIRENT_BAD_NAME, where, `'${latin1(name)}' entry out of place`, offset);
    return;
  }
  if (name.length === 0 || name.includes(0x2f) || name.includes(0)) {
    f.add(C.DIRENT_BAD_NAME, where, `entry name ${JSON.stringify(latin1(name))} is empty or contains '/' or NUL`, offset);
  }
  const label = JSON.stringify(latin1(name));
  if (target > geo.inodesCount) {
    f.add(C.DIRENT_BAD_INODE, where, `entry ${label} -> inode ${target}, beyond s_inodes_count ${geo.inodesCount}`, offset);
    return;
  }
  if (target === 2) {
    f.add(C.DIRECTORY_CYCLE, where, `entry ${label} is a link to the root directory`, offset);
    return;
  }
  if (target < geo.firstIno) {
    f.add(C.DIRENT_BAD_INODE, where, `entry ${label} -> reserved inode ${target}`, offset);
    return;
  }
  const kind = ctx.kind[target]!;
  if (!ctx.inodeIsUsed(target) || kind === 0 || ctx.links[target] === 0) {
    f.add(C.DIRENT_BAD_INODE, where, `entry ${label} -> inode ${target}, which is not in use (deleted or never allocated)`, offset);
    return;
  }
  const wantType = geo.has.filetype ? kind : 0;
  if (fileType !== wantType) f.add(C.DIRENT_FILE_TYPE, where, `entry ${label} has file_type ${fileType}, inode ${target} is type ${wantType}`, offset + 7);
  ctx.refs[target]!++;
  if (kind === 2 && graph.index.has(target)) {
    graph.from.push(di);
    graph.to.push(graph.index.get(target)!);
  }
}

function latin1(b: Uint8Array): string {
  return Buffer.from(b).toString("latin1");
}

/**
 * Parses entries in `bytes[start, end)`; they must tile the range exactly. `firstPosition` is
 * the position the first entry has (0 in block 0 of a directory, else 2 = ordinary).
 */
function parseEntries(ctx: CheckContext, dir: DirRecord, graph: Graph, bytes: Uint8Array, start: number, end: number, where: string, diskOffset: number, firstPosition: number, maxEntries = Infinity): number {
  const bs = ctx.geo.blockSize;
  let at = start;
  let k = 0;
  while (at < end && k < maxEntries) {
    if (at + 8 > end) {
      ctx.findings.add(C.DIRENT_BAD_LENGTH, where, `entry at byte ${at} leaves ${end - at} bytes, too few for a header`, diskOffset + at);
      return at;
    }
    const target = u32(bytes, at);
    const recLen = recLenOf(u16(bytes, at + 4), bs);
    const nameLen = bytes[at + 6]!;
    if (recLen < 8 || recLen % 4 !== 0 || at + recLen > end || 8 + nameLen > recLen) {
      ctx.findings.add(C.DIRENT_BAD_LENGTH, where, `entry at byte ${at}: rec_len ${recLen}, name_len ${nameLen} do not fit (${end - at} bytes left)`, diskOffset + at + 4);
      return at;
    }
    const position = firstPosition + k < 2 ? firstPosition + k : 2;
    if (target !== 0 || position < 2) onEntry(ctx, dir, graph, target, bytes.subarray(at + 8, at + 8 + nameLen), bytes[at + 7]!, where, diskOffset + at, position);
    at += recLen;
    k++;
  }
  return at;
}

function checkInlineDir(ctx: CheckContext, dir: DirRecord, graph: Graph): void {
  const bytes = dir.inline!;
  const where = `directory inode ${dir.ino} (inline)`;
  const parent = u32(bytes, 0);
  // Inline directories store no '.' and '..' entries: '.' is implicit and i_block starts with
  // the parent's inode number.
  ctx.refs[dir.ino]!++;
  graph.dotdot[graph.index.get(dir.ino)!] = parent;
  if (parent >= 1 && parent <= ctx.geo.inodesCount && ctx.kind[parent] === 2) ctx.refs[parent]!++;
  else ctx.findings.add(C.DIRENT_DOT, where, `parent inode ${parent} is not a directory in use`, dir.offset + 0x28);
  parseEntries(ctx, dir, graph, bytes, 4, Math.min(60, bytes.length), where, dir.offset + 0x28, 2);
  if (bytes.length > 60) parseEntries(ctx, dir, graph, bytes, 60, bytes.length, `${where} system.data`, dir.offset, 2);
}

/** Physical block of logical block `l` of a directory, or -1 in a hole. */
function physOf(runs: Run[], l: number): number {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const r = runs[mid]!;
    if (l < r.logical) hi = mid - 1;
    else if (l >= r.logical + r.len) lo = mid + 1;
    else return r.physical + (l - r.logical);
  }
  return -1;
}

/**
 * Reads and checks the htree index of a directory whose block 0 is a dx root. Returns the
 * logical blocks that are index nodes (block 0 included), so the leaf scan skips them; or
 * undefined when the root is not a valid dx root (then every block is parsed as linear).
 */
async function walkHtree(ctx: CheckContext, dir: DirRecord, root: Uint8Array, nblocks: number): Promise<Set<number> | undefined> {
  const { geo, findings: f } = ctx;
  const bs = geo.blockSize;
  const where = `directory inode ${dir.ino} htree`;
  const rootAt = physOf(dir.runs, 0) * bs;
  const dotLen = recLenOf(u16(root, 4), bs);
  const dotdotLen = recLenOf(u16(root, 12 + 4), bs);
  const infoLen = root[24 + 5]!;
  const levels = root[24 + 6]!;
  if (dotLen !== 12 || dotdotLen !== bs - 12 || infoLen !== 8) {
    f.add(C.DIR_HTREE, where, `block 0 is not a dx root ('.' rec_len ${dotLen}, '..' rec_len ${dotdotLen}, info_length ${infoLen})`, rootAt);
    return undefined;
  }
  const maxLevels = geo.has.largeDir ? 3 : 2;
  if (levels >= maxLevels) {
    f.add(C.DIR_HTREE, where, `indirect_levels ${levels} (at most ${maxLevels - 1})`, rootAt + 30);
    return undefined;
  }
  const nodes = new Set<number>([0]);
  const csum = geo.metadataCsum ? DX_TAIL_SIZE : 0;
  // Checks one node's dx_countlimit, checksum and entries; returns its child blocks.
  const node = (bytes: Uint8Array, countOffset: number, logical: number, diskAt: number): number[] => {
    const limit = u16(bytes, countOffset);
    const count = u16(bytes, countOffset + 2);
    const wantLimit = Math.floor((bs - countOffset - csum) / 8);
    if (limit !== wantLimit || count === 0 || count > limit) {
      f.add(C.DIR_HTREE, where, `node at logical block ${logical}: count ${count}, limit ${limit} (want limit ${wantLimit})`, diskAt + countOffset);
      return [];
    }
    if (geo.metadataCsum) {
      const tail = dxTailOffset(countOffset, limit);
      const want = dxNodeChecksum(dir.seed, bytes, countOffset, count, limit);
      if (u32(bytes, tail + 4) !== want) f.add(C.DIR_HTREE, where, `node at logical block ${logical}: checksum 0x${u32(bytes, tail + 4).toString(16)} does not match 0x${want.toString(16)}`, diskAt + tail + 4);
    }
    const children: number[] = [];
    let prevHash = 0;
    for (let i = 0; i < count; i++) {
      const e = countOffset + i * 8; // entry 0's hash field is the count/limit pair
      const hash = i === 0 ? 0 : u32(bytes, e);
      const child = u32(bytes, e + 4) & 0x0fffffff;
      if (i > 0 && hash < prevHash) f.add(C.DIR_HTREE, where, `node at logical block ${logical}: hashes out of order at entry ${i}`, diskAt + e);
      prevHash = hash;
      if (child === 0 || child >= nblocks) {
        f.add(C.DIR_HTREE, where, `node at logical block ${logical}: entry ${i} points at logical block ${child} of ${nblocks}`, diskAt + e + 4);
        continue;
      }
      children.push(child);
    }
    return children;
  };
  let frontier = node(root, 32, 0, rootAt);
  for (let level = 0; level < levels; level++) {
    const next: number[] = [];
    for (const l of frontier) {
      if (nodes.has(l)) {
        f.add(C.DIR_HTREE, where, `logical block ${l} is referenced twice in the index`);
        continue;
      }
      nodes.add(l);
      const p = physOf(dir.runs, l);
      if (p < 0) continue;
      const bytes = await ctx.readBlocks(p);
      if (u32(bytes, 0) !== 0 || recLenOf(u16(bytes, 4), bs) !== bs) {
        f.add(C.DIR_HTREE, where, `interior node at logical block ${l} does not start with an empty entry spanning the block`, p * bs);
        continue;
      }
      next.push(...node(bytes, 8, l, p * bs));
    }
    frontier = next;
  }
  return nodes;
}

async function checkBlockDir(ctx: CheckContext, dir: DirRecord, graph: Graph): Promise<void> {
  const { geo, findings: f } = ctx;
  const bs = geo.blockSize;
  const nblocks = dir.runs.reduce((m, r) => Math.max(m, r.logical + r.len), 0);
  if (nblocks === 0) {
    f.add(C.DIRENT_DOT, `directory inode ${dir.ino}`, "directory has no blocks, so no '.' and '..'", dir.offset);
    return;
  }
  let dxNodes: Set<number> | undefined;
  if (dir.flags & 0x1000 && geo.has.dirIndex) {
    const p0 = physOf(dir.runs, 0);
    if (p0 >= 0) dxNodes = await walkHtree(ctx, dir, await ctx.readBlocks(p0), nblocks);
  }
  let sawBlock0 = false;
  for (const run of dir.runs) {
    for (let k = 0; k < run.len; k += READ_BATCH) {
      const n = Math.min(READ_BATCH, run.len - k);
      const chunk = await ctx.readBlocks(run.physical + k, n);
      for (let j = 0; j < n; j++) {
        const logical = run.logical + k + j;
        const physical = run.physical + k + j;
        const block = chunk.subarray(j * bs, (j + 1) * bs);
        const where = `directory inode ${dir.ino} block ${logical}`;
        const diskAt = physical * bs;
        if (logical === 0) sawBlock0 = true;
        if (dxNodes?.has(logical)) {
          if (logical === 0) parseEntries(ctx, dir, graph, block, 0, bs, where, diskAt, 0, 2); // '.' and '..' only
          continue;
        }
        let end = bs;
        if (geo.metadataCsum) {
          if (!hasDirTail(block)) {
            f.add(C.DIR_CHECKSUM, where, "no ext4_dir_entry_tail (metadata_csum needs one in every leaf block)", diskAt + bs - 12);
          } else {
            end = bs - 12;
            const want = dirBlockChecksum(dir.seed, block);
            const stored = dirBlockStoredChecksum(block);
            if (want !== stored) f.add(C.DIR_CHECKSUM, where, `checksum 0x${stored.toString(16)} does not match 0x${want.toString(16)}`, diskAt + bs - 4);
          }
        }
        parseEntries(ctx, dir, graph, block, 0, end, where, diskAt, logical === 0 ? 0 : 2);
      }
    }
  }
  if (!sawBlock0) f.add(C.DIRENT_DOT, `directory inode ${dir.ino}`, "block 0 is a hole: no '.' and '..'", dir.offset);
}

/** Depth-first walk from the root over directory entries: cycles, hard links, unreachable dirs, '..'. */
function checkGraph(ctx: CheckContext, graph: Graph): void {
  const f = ctx.findings;
  const n = ctx.dirs.length;
  // Adjacency in compressed rows, edges in the order they were seen.
  const start = new Uint32Array(n + 1);
  for (const u of graph.from) start[u + 1]!++;
  for (let i = 0; i < n; i++) start[i + 1]! += start[i]!;
  const adj = new Uint32Array(graph.to.length);
  const fill = start.slice(0, n);
  for (let e = 0; e < graph.from.length; e++) adj[fill[graph.from[e]!]!++] = graph.to[e]!;
  const indegree = new Uint32Array(n);
  for (const v of graph.to) indegree[v]!++;

  const state = new Uint8Array(n); // 0 unseen, 1 on the current path, 2 done
  const parent = new Int32Array(n).fill(-1);
  const dfs = (root: number) => {
    const stack: number[] = [root];
    const pos: number[] = [start[root]!];
    state[root] = 1;
    while (stack.length > 0) {
      const u = stack[stack.length - 1]!;
      const p = pos[pos.length - 1]!;
      if (p >= start[u + 1]!) {
        state[u] = 2;
        stack.pop();
        pos.pop();
        continue;
      }
      pos[pos.length - 1] = p + 1;
      const v = adj[p]!;
      const U = ctx.dirs[u]!.ino;
      const V = ctx.dirs[v]!.ino;
      if (state[v] === 1) f.add(C.DIRECTORY_CYCLE, `directory inode ${U}`, `an entry links directory ${V}, its own ancestor`);
      else if (state[v] === 2) f.add(C.DIRECTORY_HARDLINK, `directory inode ${U}`, `an entry links directory ${V}, which is already linked elsewhere`);
      else {
        parent[v] = u;
        state[v] = 1;
        stack.push(v);
        pos.push(start[v]!);
      }
    }
  };
  const rootIdx = graph.index.get(2);
  if (rootIdx === undefined) return; // reported by the inode pass
  dfs(rootIdx);
  const reachable = state.slice();
  for (let i = 0; i < n; i++) {
    if (reachable[i] === 0 && state[i] === 0) {
      f.add(C.DIRECTORY_UNREACHABLE, `directory inode ${ctx.dirs[i]!.ino}`, "not reachable from the root directory");
      dfs(i);
    }
  }
  for (let i = 0; i < n; i++) {
    if (reachable[i] === 0 || indegree[i]! > 1) continue;
    const want = i === rootIdx ? 2 : ctx.dirs[parent[i]!]?.ino;
    const dd = graph.dotdot[i]!;
    if (want !== undefined && dd !== 0 && dd !== want) {
      f.add(C.DIRENT_DOT, `directory inode ${ctx.dirs[i]!.ino}`, `'..' -> ${dd}, but the directory is linked from ${want}`);
    }
  }
}

function checkLinkCounts(ctx: CheckContext): void {
  const { geo, findings: f } = ctx;
  for (let ino = 2; ino <= geo.inodesCount; ino++) {
    if (ino > 2 && ino < geo.firstIno) continue;
    const kind = ctx.kind[ino]!;
    if (kind === 0 || geo.hiddenInodes.has(ino)) continue;
    const links = ctx.links[ino]!;
    const refs = ctx.refs[ino]!;
    if (refs === 0) {
      f.add(C.INODE_UNATTACHED, `inode ${ino}`, `in use (links ${links}) but no directory entry references it`);
      continue;
    }
    if (kind === 2 && geo.has.dirNlink && links === 1 && refs > LINK_MAX) continue;
    if (links !== refs) f.add(C.LINK_COUNT, `inode ${ino}`, `i_links_count ${links}, but ${refs} directory entries reference it`);
  }
}

/** The orphan file (orphan_file feature): every slot must be zero for an orphan-free filesystem. */
async function checkOrphanFile(ctx: CheckContext): Promise<void> {
  const bs = ctx.geo.blockSize;
  for (const run of ctx.orphanRuns) {
    for (let k = 0; k < run.len; k++) {
      const block = await ctx.readBlocks(run.physical + k);
      for (let at = 0; at + 4 <= bs - ORPHAN_TAIL_SIZE; at += 4) {
        const ino = u32(block, at);
        if (ino !== 0) {
          ctx.findings.add(C.ORPHAN_LIST, `orphan file block ${run.logical + k}`, `slot ${at / 4} holds orphan inode ${ino}`, (run.physical + k) * bs + at);
          return;
        }
      }
    }
  }
}
