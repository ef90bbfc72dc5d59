// The oracle: what the image must hold is what GNU tar extracts (as root) from the same tar,
// with the OCI whiteout mapping applied on top and the implicit-parent rule made explicit.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runOk } from "./exec.js";
import { manifestOf, type ExpectedEntry, type Manifest } from "./manifest.js";

const TAR_NAMES_PY = fileURLToPath(new URL("./tar-names.py", import.meta.url));

/**
 * The GNU tar command line the oracle extracts with. `--delay-directory-restore` makes directory
 * metadata come from the directory's own header even when its children are not contiguous in
 * the archive (which is what an image writer that lays metadata out at the end does).
 */
export const GNU_TAR_EXTRACT = [
  "--xattrs", "--xattrs-include=*", "--same-owner", "--numeric-owner", "-p", "--delay-directory-restore",
] as const;

/** Normalises a tar member name the way the converter must: no leading "/" or "./", no "." segments, no trailing "/". */
export function normaliseName(name: string): string {
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  return parts.length ? parts.join("/") : ".";
}

export async function tarMemberNames(tarPath: string): Promise<string[]> {
  const r = await runOk("python3", [TAR_NAMES_PY, tarPath]);
  return JSON.parse(r.stdout) as string[];
}

export interface ExpectedTreeOptions {
  /** As ConvertOptions.keepWhiteouts: keep `.wh.*` as plain files. */
  keepWhiteouts?: boolean;
  /** Directory to extract into (must not exist or be empty); the caller removes it. */
  workDir: string;
}

const OPAQUE = ".wh..wh..opq";
const WH = ".wh.";
const hex = (s: string) => Buffer.from(s, "latin1").toString("hex");

/**
 * Extracts `tarPath` with GNU tar as root and returns the expected manifest:
 * - directories not named by any tar entry (implicit parents, and the root when the tar has no
 *   "./") are expected as mode 0755, uid 0, gid 0, mtime unspecified;
 * - unless keepWhiteouts: `d/.wh..wh..opq` is removed and `d` gains `trusted.overlay.opaque=y`;
 *   `d/.wh.x` becomes `d/x`, a char device 0/0 (an overlay whiteout) whose mode bits, owner and
 *   mtime the contract leaves unspecified.
 */
export async function expectedTree(tarPath: string, opts: ExpectedTreeOptions): Promise<Manifest<ExpectedEntry>> {
  const root = join(opts.workDir, "extract");
  await mkdir(root, { recursive: true });
  await runOk("tar", [...GNU_TAR_EXTRACT, "-xf", tarPath, "-C", root]);
  const names = new Set((await tarMemberNames(tarPath)).map(normaliseName));
  const m = (await manifestOf(root)) as Manifest<ExpectedEntry>;
  return applyLayerSemantics(m, names, opts.keepWhiteouts ?? false);
}

/** The pure part of `expectedTree`, exported for the harness self-test. */
export function applyLayerSemantics(m: Manifest<ExpectedEntry>, tarNames: ReadonlySet<string>, keepWhiteouts: boolean): Manifest<ExpectedEntry> {
  const byPath = new Map(m.entries.map((e) => [e.path, e]));
  for (const e of m.entries) {
    if (e.type === "dir" && !tarNames.has(e.path)) {
      Object.assign(e, { mode: 0o755, uid: 0, gid: 0, unspecified: ["mtimeNs"], note: "implicit directory: not in the tar" });
    }
  }
  if (!keepWhiteouts) {
    for (const e of [...m.entries]) {
      const slash = e.path.lastIndexOf("/");
      const dir = slash < 0 ? "." : e.path.slice(0, slash);
      const base = e.path.slice(slash + 1);
      if (!base.startsWith(WH)) continue;
      byPath.delete(e.path);
      if (base === OPAQUE) {
        const parent = byPath.get(dir);
        if (!parent) throw new Error(`expectedTree: ${e.path} has no parent directory`);
        parent.xattrs = Object.fromEntries(Object.entries({ ...parent.xattrs, "trusted.overlay.opaque": hex("y") }).sort(([a], [b]) => (a < b ? -1 : 1)));
      } else {
        const path = dir === "." ? base.slice(WH.length) : `${dir}/${base.slice(WH.length)}`;
        byPath.set(path, {
          path, type: "char", mode: 0, uid: 0, gid: 0, mtimeNs: "0", nlink: 1, ino: -1, blocks: 0,
          rdevMajor: 0, rdevMinor: 0, xattrs: {},
          unspecified: ["mode", "uid", "gid", "mtimeNs"],
          note: `overlay whiteout from ${e.path}`,
        });
      }
    }
    // A whiteout file that was hard-linked leaves its partners' link counts meaningless; layers never do that.
  }
  return { entries: [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)) };
}
