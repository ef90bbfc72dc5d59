// The exporter reads a disk two ways (see `ext4ToTar`): entry by entry with synchronous reads
// when the block source has `readSync` (raw images and fixed VHDs), and a window ahead with
// promises otherwise (VHDX, or any other source). Both must give the same tar byte for byte,
// and the reader's synchronous methods the same answers as its asynchronous ones. Also: what
// exportImage writes to when the output path is not a regular file.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { convertTar, Ext4Reader, exportImage, ext4ToTar, FileBlockSource, isVhdError, type BlockSource, type ExportOptions } from "../src/index.js";
import { FileMode } from "../src/format/inode.js";
import { run, runOk, withTempDir } from "./harness/index.js";
import { fixtures, makeTree, pattern, type TreeOp } from "./fixtures/index.js";

/** The same disk without `readSync`: what the exporter sees of a VHDX. */
function asyncOnly(source: BlockSource): BlockSource {
  return { size: source.size, read: (b, p) => source.read(b, p), close: () => source.close() };
}

async function tarOf(source: BlockSource, options: ExportOptions): Promise<{ sha: string; bytes: number; entries: Record<string, number> }> {
  const summary = { entries: {}, bytesOut: 0 };
  const h = createHash("sha256");
  for await (const chunk of ext4ToTar(source, options, summary)) h.update(chunk);
  return { sha: h.digest("hex"), bytes: summary.bytesOut, entries: summary.entries };
}

const OPTIONS: ExportOptions[] = [{}, { rootEntry: false, keepWhiteouts: true }, { keepLostFound: true, recycle: true }];

/** Exports `image` through both paths under each option set and expects the same tar. */
async function bothPathsAgree(image: string): Promise<void> {
  const disk = await FileBlockSource.open(image);
  try {
    expect((await Ext4Reader.open(disk)).canReadSync).toBe(true);
    expect((await Ext4Reader.open(asyncOnly(disk))).canReadSync).toBe(false);
    for (const options of OPTIONS) {
      const sync = await tarOf(disk, options);
      expect(sync.bytes).toBeGreaterThan(1024);
      expect(await tarOf(asyncOnly(disk), options), JSON.stringify(options)).toEqual(sync);
    }
  } finally {
    await disk.close();
  }
}

/** Walks the whole tree asking each question both ways. */
async function readerAgrees(image: string): Promise<number> {
  const disk = await FileBlockSource.open(image);
  try {
    const reader = await Ext4Reader.open(disk);
    let seen = 0;
    const dirs = [reader.root];
    while (dirs.length > 0) {
      const ino = dirs.pop()!;
      const inode = await reader.readInode(ino);
      expect(reader.readInodeSync(ino)).toEqual(inode);
      const entries = await reader.readDir(ino, inode);
      expect(reader.readDirSync(ino, inode)).toEqual(entries);
      for (const e of entries) {
        const entry = await reader.entry(e.ino);
        expect(reader.entrySync(e.ino), e.name).toEqual(entry);
        expect(entry.xattrs).toEqual(await reader.xattrs(e.ino, entry.inode));
        if (entry.type === FileMode.S_IFREG && entry.runs) {
          expect(reader.dataRunsSync(e.ino, entry.inode)).toEqual(await reader.dataRuns(e.ino, entry.inode));
          expect(entry.runs).toEqual(await reader.dataRuns(e.ino, entry.inode));
        }
        if (entry.type === FileMode.S_IFLNK) expect(entry.link).toBe(await reader.readLink(e.ino, entry.inode));
        if (entry.inline) expect(entry.inline).toEqual(await reader.inlineData(e.ino, entry.inode));
        if (entry.type === FileMode.S_IFDIR) dirs.push(e.ino);
        seen++;
      }
    }
    return seen;
  } finally {
    await disk.close();
  }
}

// Fixtures with something for each branch of an entry: xattrs (in-inode and in a block),
// holes, inline data, hard links, devices, whiteouts and opaque directories, long names.
const PICKED = ["gnu-tar-pax-nanoseconds", "option-inline-data", "pax-long-names-and-link-names", "pax-sparse-1.0", "xattrs-schily-gnu-tar", "hardlinks-to-files-symlinks-devices", "devices-and-fifos", "oci-whiteouts-to-overlay", "symlink-target-lengths"];

describe("export: the synchronous and the asynchronous read paths give the same tar", () => {
  for (const f of fixtures.filter((x) => PICKED.includes(x.name))) {
    it(f.name, () =>
      withTempDir(`paths-${f.name}`, async (dir) => {
        const image = join(dir, "layer.img");
        await convertTar(await f.build(dir), image, { ...f.convert, format: "raw" });
        await bothPathsAgree(image);
        expect(await readerAgrees(image)).toBeGreaterThan(0);
      }));
  }

  // What our writer never makes: block maps, extent trees deeper than i_block, xattr blocks,
  // slow symlinks, inline data written by the kernel's rules, hashed directories.
  const tree: TreeOp[] = [
    ...Array.from({ length: 300 }, (_, i) => ({ op: "file", path: `big/entry-${i}`, data: `n${i}`, mtimeNs: `${1_600_000_000 + i}000000000` })),
    { op: "file", path: "medium", data: "x".repeat(70_000), xattrs: { "user.k": "v", "user.big": pattern(3000, 3) }, mtimeNs: "1500000000000000000" },
    { op: "sparse", path: "holes", size: 80 << 20, extents: Array.from({ length: 9 }, (_, i) => [i * (8 << 20), `region ${i}`]), mtimeNs: "1500000000000000000" },
    { op: "file", path: "large", data: pattern(600_000, 4), mtimeNs: "1500000000000000000" },
    { op: "symlink", path: "slow", target: "d/".repeat(60) + "end" },
    { op: "symlink", path: "fast", target: "medium" },
  ];
  const VARIANTS: Record<string, string[]> = { "ext4 (htree after e2fsck -D)": [], "ext4 inline_data": ["-O", "inline_data"], "ext4 ^extent": ["-O", "^extent,^64bit"], ext2: ["-t", "ext2"] };
  for (const [label, flags] of Object.entries(VARIANTS)) {
    it(`mkfs.ext4 -d: ${label}`, () =>
      withTempDir(`paths-mkfs-${label.replace(/\W+/g, "-")}`, async (dir) => {
        const src = join(dir, "src");
        await mkdir(src);
        await makeTree(src, tree);
        const image = join(dir, "fs.img");
        await runOk("mkfs.ext4", ["-q", "-F", "-b", "4096", "-I", "256", ...flags, "-E", "root_owner=0:0", "-d", src, image, "128M"]);
        if (flags.length === 0) expect((await run("e2fsck", ["-fyD", image])).code).toBeLessThanOrEqual(1);
        await bothPathsAgree(image);
        expect(await readerAgrees(image)).toBeGreaterThan(300);
      }));
  }
});

describe("export: failures while a large file streams out", () => {
  it("a read error in a large file ends the stream with that error, after the reads in flight", () =>
    withTempDir("paths-read-error", async (dir) => {
      const src = join(dir, "src");
      await mkdir(src);
      await makeTree(src, [{ op: "file", path: "a/big", data: pattern(12 << 20, 7) }, { op: "file", path: "b/small", data: "s" }]);
      await runOk("tar", ["--format=pax", "-C", src, "-cf", join(dir, "in.tar"), "."]);
      const image = join(dir, "in.img");
      await convertTar(join(dir, "in.tar"), image, { format: "raw" });
      const disk = await FileBlockSource.open(image);
      let inFlight = 0;
      let reads = 0;
      // Fails the third large read; the others complete late, so some are in flight then.
      const failing: BlockSource = {
        size: disk.size,
        readSync: (b, p) => disk.readSync(b, p),
        read: async (b, p) => {
          if (b.length < 1 << 20) return disk.read(b, p);
          inFlight++;
          try {
            await new Promise((r) => setTimeout(r, 5));
            if (++reads === 3) throw new Error("EIO: injected");
            return await disk.read(b, p);
          } finally {
            inFlight--;
          }
        },
        close: () => disk.close(),
      };
      const err = await (async () => {
        for await (const chunk of ext4ToTar(failing)) void chunk;
      })().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(String(err)).toMatch(/EIO: injected/);
      expect(inFlight).toBe(0);
      await disk.close();
    }));
});

describe("exportImage to a path that is not a regular file", () => {
  it("writes into a FIFO as it is (renaming a temporary file over it would replace it)", () =>
    withTempDir("paths-fifo", async (dir) => {
      const src = join(dir, "src");
      await mkdir(src);
      await makeTree(src, [{ op: "file", path: "f", data: pattern(100_000, 1) }]);
      await runOk("tar", ["--format=pax", "-C", src, "-cf", join(dir, "in.tar"), "."]);
      const image = join(dir, "in.img");
      await convertTar(join(dir, "in.tar"), image, { format: "raw" });
      await exportImage(image, join(dir, "file.tar"));
      const fifo = join(dir, "pipe");
      await runOk("mkfifo", [fifo]);
      // The reader end: a child, so that opening the FIFO for writing does not block this thread.
      const reader = spawn("cat", [fifo], { stdio: ["ignore", "pipe", "inherit"] });
      const got: Buffer[] = [];
      reader.stdout.on("data", (b: Buffer) => got.push(b));
      const done = new Promise((resolve) => reader.on("close", resolve));
      await exportImage(image, fifo);
      // Had the FIFO been replaced, `cat` would wait for a writer forever: give up on it then.
      const timer = setTimeout(() => reader.kill(), 10_000);
      await done;
      clearTimeout(timer);
      expect((await stat(fifo)).isFIFO()).toBe(true);
      expect(Buffer.concat(got).equals(await readFile(join(dir, "file.tar")))).toBe(true);
    }));

  it("reports a typed error for a missing image without touching the output", () =>
    withTempDir("paths-missing", async (dir) => {
      const err = await exportImage(join(dir, "nope.img"), join(dir, "out.tar")).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isVhdError(err)).toBe(true);
      await expect(stat(join(dir, "out.tar"))).rejects.toThrow();
    }));
});
