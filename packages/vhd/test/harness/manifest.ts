// The tree manifest both sides of every comparison are reduced to, and the comparator.
// `manifestOf` reads a mounted or extracted tree through manifest.py (os.lstat, xattrs without
// following symlinks, sha256 with holes skipped); debugfs.ts produces the same shape from an
// image that cannot be mounted.
import { fileURLToPath } from "node:url";
import { runOk } from "./exec.js";

export type EntryType = "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket" | "unknown";

export interface ManifestEntry {
  /** "." for the root, otherwise a relative path with "/" separators. */
  path: string;
  type: EntryType;
  /** Permission bits including setuid, setgid and sticky (st_mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** st_mtime_ns as a decimal string (may be negative: before 1970). */
  mtimeNs: string;
  nlink: number;
  /** Inode number; only meaningful inside one manifest, never compared. */
  ino: number;
  /** st_blocks (512-byte units); informational (sparse checks), never compared. */
  blocks: number;
  size?: number;
  sha256?: string;
  target?: string;
  rdevMajor?: number;
  rdevMinor?: number;
  /** xattr name -> value as hex. */
  xattrs: Record<string, string>;
  /** The smallest path that shares this inode, when more than one path does (hard links). */
  linkGroup?: string;
}

/** An expected entry may leave fields unspecified by the contract (they are then not compared). */
export interface ExpectedEntry extends ManifestEntry {
  unspecified?: readonly ComparedField[];
  /** Why those fields are unspecified, shown in diffs. */
  note?: string;
}

export interface Manifest<E extends ManifestEntry = ManifestEntry> {
  entries: E[];
}

export const COMPARED_FIELDS = [
  "type", "mode", "uid", "gid", "mtimeNs", "size", "sha256", "target", "rdevMajor", "rdevMinor", "xattrs", "nlink", "linkGroup",
] as const;
export type ComparedField = (typeof COMPARED_FIELDS)[number];

const MANIFEST_PY = fileURLToPath(new URL("./manifest.py", import.meta.url));

/** Manifest of the tree rooted at `dir` (a mount point or an extraction directory). */
export async function manifestOf(dir: string): Promise<Manifest> {
  const r = await runOk("python3", [MANIFEST_PY, dir]);
  return JSON.parse(r.stdout) as Manifest;
}

export function byPath<E extends ManifestEntry>(m: Manifest<E>): Map<string, E> {
  return new Map(m.entries.map((e) => [e.path, e]));
}

const fmt = (field: ComparedField, v: unknown): string => {
  if (v === undefined) return "(none)";
  if (field === "mode" && typeof v === "number") return `0o${v.toString(8)}`;
  if (field === "xattrs") return JSON.stringify(v);
  return JSON.stringify(v);
};

function equalField(field: ComparedField, a: unknown, b: unknown): boolean {
  if (field === "xattrs") {
    const x = a as Record<string, string>;
    const y = b as Record<string, string>;
    const kx = Object.keys(x).sort();
    const ky = Object.keys(y).sort();
    return kx.length === ky.length && kx.every((k, i) => k === ky[i] && x[k] === y[k]);
  }
  return a === b;
}

export interface TreeDiff {
  /** One line per difference, ready to print. */
  lines: string[];
  ok: boolean;
}

export interface CompareOptions {
  /** Paths present only in `actual` that are not an error (by default: "lost+found" unless expected has it). */
  ignoreExtra?: (path: string) => boolean;
}

/**
 * Compares an expected manifest with the image's. Every field in COMPARED_FIELDS is compared
 * unless the expected entry lists it in `unspecified`; `nlink` only for non-directories (a
 * directory's link count is a function of its subdirectories, compared through them), and
 * size/sha256/target/rdev only where the type has them. Returns every difference, never only
 * the first, so a failure message shows the whole picture.
 */
export function compareTrees(expected: Manifest<ExpectedEntry>, actual: Manifest, opts: CompareOptions = {}): TreeDiff {
  const exp = byPath(expected);
  const act = byPath(actual);
  const ignoreExtra = opts.ignoreExtra ?? ((p: string) => p === "lost+found" || p.startsWith("lost+found/"));
  const lines: string[] = [];
  for (const [path, e] of exp) {
    const a = act.get(path);
    if (!a) {
      lines.push(`- ${path}: missing from image (expected ${e.type})`);
      continue;
    }
    const skip = new Set<ComparedField>(e.unspecified ?? []);
    if (e.type === "dir") skip.add("nlink");
    const diffs: string[] = [];
    for (const f of COMPARED_FIELDS) {
      if (skip.has(f)) continue;
      if (!equalField(f, e[f], a[f])) diffs.push(`${f} ${fmt(f, a[f])}, want ${fmt(f, e[f])}`);
    }
    if (diffs.length) lines.push(`~ ${path} (${e.type}): ${diffs.join("; ")}${e.note ? ` [${e.note}]` : ""}`);
  }
  for (const path of act.keys()) {
    if (!exp.has(path) && !(ignoreExtra(path) && !exp.has("lost+found"))) lines.push(`+ ${path}: in image but not expected (${act.get(path)!.type})`);
  }
  lines.sort((x, y) => x.slice(2).localeCompare(y.slice(2)));
  return { lines, ok: lines.length === 0 };
}

/** Throws an Error with a readable diff (first `limit` lines) unless the trees match. */
export function assertTreesEqual(expected: Manifest<ExpectedEntry>, actual: Manifest, context: string, limit = 60): void {
  const d = compareTrees(expected, actual);
  if (d.ok) return;
  const shown = d.lines.slice(0, limit);
  const more = d.lines.length > limit ? `\n  ... and ${d.lines.length - limit} more` : "";
  throw new Error(`${context}: image tree differs from the GNU tar extraction (${d.lines.length} differences)\n  ${shown.join("\n  ")}${more}`);
}
