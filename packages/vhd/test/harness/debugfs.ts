// Manifest of an ext4 image read through debugfs, for where a loop mount is impossible (no root,
// no loop devices). Same shape as manifestOf(mountPoint), so the same comparator applies.
// Metadata comes from `stat <ino>` (mtime with its extra word: nanoseconds and epoch bits),
// xattr values from `ea_get -f`, contents and symlink targets from `rdump`.
import { lstat, mkdir, readFile, readlink, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { join } from "node:path";
import { runOk } from "./exec.js";
import type { EntryType, Manifest, ManifestEntry } from "./manifest.js";

/** Runs debugfs (read-only) with a command file; returns its output split per command. */
async function debugfsBatch(image: string, cmds: string[], workDir: string): Promise<string[]> {
  if (cmds.length === 0) return [];
  const file = join(workDir, `debugfs-cmds-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  await writeFile(file, cmds.join("\n") + "\n");
  const r = await runOk("debugfs", ["-f", file, image]);
  // debugfs echoes each command as "debugfs: <cmd>" on stdout before its output.
  const parts = r.stdout.split(/^debugfs: /m).slice(1);
  if (parts.length !== cmds.length) throw new Error(`debugfs: expected ${cmds.length} command outputs, got ${parts.length}\n${r.stderr}`);
  return parts.map((p) => p.slice(p.indexOf("\n") + 1));
}

const TYPES: Record<number, EntryType> = { 0o100000: "file", 0o040000: "dir", 0o120000: "symlink", 0o020000: "char", 0o060000: "block", 0o010000: "fifo", 0o140000: "socket" };

/** Decodes an ext4 timestamp: signed 32-bit seconds, plus extra = nanoseconds << 2 | epoch bits. */
export function decodeExt4Time(base: number, extra: number | undefined): bigint {
  let sec = BigInt(base | 0);
  let ns = 0n;
  if (extra !== undefined) {
    sec += BigInt(extra & 3) << 32n;
    ns = BigInt(extra >>> 2);
  }
  return sec * 1_000_000_000n + ns;
}

interface StatInfo { mode: number; uid: number; gid: number; size: number; nlink: number; blocks: number; mtimeNs: string; rdev?: [number, number]; xattrNames: string[] }

function parseStat(out: string, ino: number): StatInfo {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    if (!m) throw new Error(`debugfs stat <${ino}>: no match for ${re}\n${out}`);
    return Number(m[1]);
  };
  const modeMatch = /Mode:\s+([0-7]+)/.exec(out);
  if (!modeMatch) throw new Error(`debugfs stat <${ino}>: no mode\n${out}`);
  const t = /\bmtime: 0x([0-9a-f]+)(?::([0-9a-f]+))?/.exec(out);
  if (!t) throw new Error(`debugfs stat <${ino}>: no mtime\n${out}`);
  const info: StatInfo = {
    mode: parseInt(modeMatch[1]!, 8),
    uid: num(/User:\s+(\d+)/),
    gid: num(/Group:\s+(\d+)/),
    size: num(/\bSize: (\d+)/),
    nlink: num(/Links: (\d+)/),
    blocks: num(/Blockcount: (\d+)/),
    mtimeNs: decodeExt4Time(parseInt(t[1]!, 16), t[2] === undefined ? undefined : parseInt(t[2], 16)).toString(),
    xattrNames: [],
  };
  const dev = /Device major\/minor number: (\d+):(\d+)/.exec(out);
  if (dev) info.rdev = [Number(dev[1]), Number(dev[2])];
  const xa = out.split(/^Extended attributes:\n/m)[1];
  if (xa) {
    for (const line of xa.split("\n")) {
      const m = /^ {2}(\S+) \(\d+\)/.exec(line);
      if (!m) break;
      info.xattrNames.push(m[1]!);
    }
  }
  return info;
}

async function sha256(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
  return h.digest("hex");
}

/**
 * Manifest of the ext4 filesystem in `image` (raw ext4; trailing bytes such as a VHD footer are
 * ignored by debugfs), without mounting. `workDir` receives an rdump of the tree.
 */
export async function manifestViaDebugfs(image: string, workDir: string): Promise<Manifest> {
  // fmt: the S_IFMT bits from `ls -p` (debugfs `stat` prints only the permission bits).
  const listed: Array<{ path: string; ino: number; fmt: number }> = [{ path: ".", ino: 2, fmt: 0o040000 }];
  let level: Array<{ path: string; ino: number; fmt: number }> = [{ path: ".", ino: 2, fmt: 0o040000 }];
  while (level.length) {
    const outs = await debugfsBatch(image, level.map((d) => `ls -p <${d.ino}>`), workDir);
    const next: typeof level = [];
    outs.forEach((out, i) => {
      const parent = level[i]!;
      for (const line of out.split("\n")) {
        const m = /^\/(\d+)\/([0-7]+)\/\d+\/\d+\/(.*)\/\d*\/$/.exec(line);
        if (!m || m[3] === "." || m[3] === ".." || m[1] === "0") continue;
        const path = parent.path === "." ? m[3]! : `${parent.path}/${m[3]}`;
        const e = { path, ino: Number(m[1]), fmt: parseInt(m[2]!, 8) & 0o170000 };
        listed.push(e);
        if (e.fmt === 0o040000) next.push(e);
      }
    });
    level = next;
  }
  const inos = [...new Set(listed.map((e) => e.ino))];
  const stats = new Map<number, StatInfo>();
  (await debugfsBatch(image, inos.map((i) => `stat <${i}>`), workDir)).forEach((out, i) => stats.set(inos[i]!, parseStat(out, inos[i]!)));

  const xattrDir = join(workDir, "debugfs-xattrs");
  await mkdir(xattrDir, { recursive: true });
  const xcmds: string[] = [];
  const xfiles: Array<{ ino: number; name: string; file: string }> = [];
  for (const ino of inos) {
    for (const name of stats.get(ino)!.xattrNames) {
      const file = join(xattrDir, `${ino}-${xfiles.length}`);
      xfiles.push({ ino, name, file });
      xcmds.push(`ea_get -f ${file} <${ino}> ${name}`);
    }
  }
  await debugfsBatch(image, xcmds, workDir);
  const xattrs = new Map<number, Record<string, string>>();
  for (const x of xfiles) {
    const rec = xattrs.get(x.ino) ?? {};
    rec[x.name] = (await readFile(x.file)).toString("hex");
    xattrs.set(x.ino, rec);
  }

  const dump = join(workDir, "debugfs-rdump");
  await mkdir(dump, { recursive: true });
  await runOk("debugfs", ["-R", `rdump / ${dump}`, image]);

  const count = new Map<number, string[]>();
  for (const e of listed) count.set(e.ino, [...(count.get(e.ino) ?? []), e.path]);
  const entries: ManifestEntry[] = [];
  for (const { path, ino, fmt } of listed) {
    const s = stats.get(ino)!;
    const type = TYPES[fmt] ?? "unknown";
    const e: ManifestEntry = {
      path, type, mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, mtimeNs: s.mtimeNs, nlink: s.nlink, ino, blocks: s.blocks,
      xattrs: Object.fromEntries(Object.entries(xattrs.get(ino) ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))),
    };
    const local = join(dump, path);
    if (type === "file") {
      e.size = s.size;
      e.sha256 = await sha256(local);
      if ((await lstat(local)).size !== s.size) throw new Error(`debugfs rdump of ${path}: size differs from stat`);
    } else if (type === "symlink") {
      e.size = s.size;
      e.target = await readlink(local);
    } else if ((type === "char" || type === "block") && s.rdev) {
      e.rdevMajor = s.rdev[0];
      e.rdevMinor = s.rdev[1];
    }
    const group = type === "dir" ? undefined : count.get(ino);
    if (group && group.length > 1) e.linkGroup = group.reduce((a, b) => (a < b ? a : b));
    entries.push(e);
  }
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { entries };
}
