// Acceptance (issue 4): images made by e2fsprogs' `mkfs.ext4 -d` from the same trees export to
// the same trees: the default ext4 (metadata_csum, 64bit, htree for big directories), with
// inline_data, with block maps instead of extents (^extent), and ext2.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { exportImage } from "../src/index.js";
import { assertTreesEqual, GNU_TAR_EXTRACT, manifestOf, run, runOk, withTempDir, type ExpectedEntry, type Manifest } from "./harness/index.js";
import { fixtures, makeTree, type TreeOp } from "./fixtures/index.js";

const VARIANTS: Record<string, string[]> = {
  "ext4 defaults": [],
  "ext4 inline_data": ["-O", "inline_data"],
  "ext4 ^extent": ["-O", "^extent,^64bit"],
  "ext2": ["-t", "ext2"],
  // populate_fs writes linear directories; e2fsck -D rebuilds them as hashed (htree) ones.
  "ext4 htree directories (e2fsck -D)": ["htree"],
};

// The file ends in data: e2fsprogs 1.47's populate_fs with inline_data loses a trailing hole
// (the image's i_size stops at the last data block), which is mkfs's doing, not the reader's.

/** A tree with whole-second times (mkfs -d keeps only seconds), xattrs, links, a big directory and a sparse file. */
function tree(): TreeOp[] {
  const ops: TreeOp[] = [];
  for (let i = 0; i < 600; i++) ops.push({ op: "file", path: `big/entry-${String(i).padStart(4, "0")}`, data: `n${i}`, mtimeNs: `${1_600_000_000 + i}000000000` });
  ops.push({ op: "file", path: "tiny", data: "hi", mode: 0o600, uid: 7, gid: 8, mtimeNs: "1600000000000000000" });
  ops.push({ op: "file", path: "medium", data: "x".repeat(70_000), xattrs: { "user.k": "v" }, mtimeNs: "1500000000000000000" });
  ops.push({ op: "sparse", path: "holes", size: 50 << 20, extents: [[0, "start"], [30 << 20, "middle"], [(50 << 20) - 3, "end"]], mtimeNs: "1500000000000000000" });
  ops.push({ op: "symlink", path: "fast", target: "tiny" });
  ops.push({ op: "symlink", path: "slow", target: "d/".repeat(60) + "end" });
  ops.push({ op: "link", path: "tiny-again", to: "tiny" });
  ops.push({ op: "dir", path: "big", mode: 0o755, mtimeNs: "1400000000000000000" });
  return ops;
}

/** mkfs -d copies whole seconds only (symlinks made here carry the current time with nanoseconds). */
function wholeSeconds(m: Manifest<ExpectedEntry>): Manifest<ExpectedEntry> {
  for (const e of m.entries) if (e.mtimeNs !== undefined) e.mtimeNs = ((BigInt(e.mtimeNs) / 1_000_000_000n) * 1_000_000_000n).toString();
  return m;
}

describe("export of images mkfs.ext4 -d wrote", () => {
  for (const [label, flags] of Object.entries(VARIANTS)) {
    it(label, () =>
      withTempDir(`mkfs-${label.replace(/\W+/g, "-")}`, async (dir) => {
        const src = join(dir, "src");
        await mkdir(src);
        await makeTree(src, tree());
        const image = join(dir, "fs.img");
        const htree = flags[0] === "htree";
        await runOk("mkfs.ext4", ["-q", "-F", "-b", "4096", "-I", "256", ...(htree ? [] : flags), "-E", "root_owner=0:0", "-d", src, image, "64M"]);
        if (htree) {
          const r = await run("e2fsck", ["-fyD", image]);
          expect(r.code, r.stderr).toBeLessThanOrEqual(1); // 1: "file system was modified"
          const stat = await runOk("debugfs", ["-R", "stat big", image]);
          expect(stat.stdout).toMatch(/Flags: 0x81000/); // EXT4_INDEX_FL | EXT4_EXTENTS_FL
        }
        const out = join(dir, "out.tar");
        await exportImage(image, out, { rootEntry: false });
        const got = join(dir, "got");
        await mkdir(got);
        await runOk("tar", [...GNU_TAR_EXTRACT, "-xf", out, "-C", got]);
        const expected = wholeSeconds((await manifestOf(src)) as Manifest<ExpectedEntry>);
        for (const e of expected.entries) if (e.path === "" || e.path === ".") e.unspecified = ["mode", "uid", "gid", "mtimeNs", "xattrs"];
        assertTreesEqual(expected, await manifestOf(got), `${label}: exported tree`);
      }));
  }

  it("a fixture tree with devices and fifos (ext4 defaults)", () =>
    withTempDir("mkfs-devices", async (dir) => {
      const f = fixtures.find((x) => x.name === "devices-and-fifos")!;
      const tar = await f.build(dir);
      const src = join(dir, "src");
      await mkdir(src);
      await runOk("tar", [...GNU_TAR_EXTRACT, "-xf", tar, "-C", src]);
      const image = join(dir, "fs.img");
      await runOk("mkfs.ext4", ["-q", "-F", "-E", "root_owner=0:0", "-d", src, image, "32M"]);
      const out = join(dir, "out.tar");
      const summary = await exportImage(image, out, { rootEntry: false });
      expect((summary.entries.char ?? 0) + (summary.entries.block ?? 0)).toBeGreaterThan(0);
      const got = join(dir, "got");
      await mkdir(got);
      await runOk("tar", [...GNU_TAR_EXTRACT, "-xf", out, "-C", got]);
      const expected = (await manifestOf(src)) as Manifest<ExpectedEntry>;
      for (const e of expected.entries) if (e.path === "" || e.path === ".") e.unspecified = ["mode", "uid", "gid", "mtimeNs", "xattrs"];
      assertTreesEqual(expected, await manifestOf(got), "devices: exported tree");
    }));
});
