// Bad input for the reader (issue 4): truncated images, a bad VHD footer, a bad superblock,
// extents out of range or looping, bad directory entries, a directory cycle, and random
// mutations. Each must end in a VhdError naming the structure, never a crash or a hang.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { convertTar, exportImage, isVhdError } from "../src/index.js";
import { runOk, withTempDir } from "./harness/index.js";
import { makeTree } from "./fixtures/index.js";

async function sampleImage(dir: string, vhd = false): Promise<string> {
  const src = join(dir, "src");
  await mkdir(src, { recursive: true });
  await makeTree(src, [
    { op: "file", path: "a/b/c.txt", data: "hello world" },
    { op: "file", path: "a/big.bin", data: "z".repeat(300_000) },
    { op: "symlink", path: "a/link", target: "b/c.txt" },
    { op: "dir", path: "d" },
  ]);
  await runOk("tar", ["--format=pax", "-C", src, "-cf", join(dir, "in.tar"), "."]);
  const image = join(dir, vhd ? "in.vhd" : "in.img");
  await convertTar(join(dir, "in.tar"), image, { vhd });
  return image;
}

async function exportFails(image: string, code: string, pattern: RegExp) {
  const err = await exportImage(image, join(image + ".tar")).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isVhdError(err), String(err)).toBe(true);
  expect(err).toMatchObject({ code });
  expect((err as Error).message).toMatch(pattern);
}

/** Patches `bytes` at `offset` in a copy of the image. */
async function patched(image: string, offset: number, bytes: number[] | Uint8Array): Promise<string> {
  const data = await readFile(image);
  data.set(bytes, offset);
  const out = `${image}.${offset}.bad`;
  await writeFile(out, data);
  return out;
}

describe("export refuses damaged images with a typed error", () => {
  it("a truncated image", () =>
    withTempDir("bad-trunc", async (dir) => {
      const image = await sampleImage(dir);
      const data = await readFile(image);
      await writeFile(join(dir, "short.img"), data.subarray(0, 1500));
      await exportFails(join(dir, "short.img"), "FORMAT_INVALID", /superblock|too small|do not fit/);
      await writeFile(join(dir, "half.img"), data.subarray(0, Math.floor(data.length / 2)));
      await exportFails(join(dir, "half.img"), "FORMAT_INVALID", /do not fit/);
    }));

  it("a VHD footer with a bad checksum", () =>
    withTempDir("bad-footer", async (dir) => {
      const image = await sampleImage(dir, true);
      const size = (await readFile(image)).length;
      await exportFails(await patched(image, size - 512 + 70, [0xff, 0xff]), "FORMAT_INVALID", /VHD footer: checksum/);
    }));

  it("a superblock with a bad magic or impossible geometry", () =>
    withTempDir("bad-sb", async (dir) => {
      const image = await sampleImage(dir);
      await exportFails(await patched(image, 1024 + 0x38, [0, 0]), "FORMAT_INVALID", /bad magic/);
      await exportFails(await patched(image, 1024 + 0x18, [30, 0, 0, 0]), "FORMAT_INVALID", /block size/);
      await exportFails(await patched(image, 1024 + 0x20, [0, 0, 0, 0]), "FORMAT_INVALID", /blocks per group/);
      await exportFails(await patched(image, 1024 + 0x60, [0x04, 0x00, 0x01, 0x00]), "FORMAT_INVALID", /journal needs recovery/);
    }));

  it("an extent pointing outside the filesystem, and an extent tree of impossible depth", () =>
    withTempDir("bad-extent", async (dir) => {
      const image = await sampleImage(dir);
      const stat = (await runOk("debugfs", ["-R", "stat a/big.bin", image])).stdout;
      expect(stat).toMatch(/EXTENTS/);
      const out = await patched(image, 0, []);
      await runOk("debugfs", ["-w", "-R", "sif a/big.bin block[5] 0x7fffffff", out]);
      await exportFails(out, "FORMAT_INVALID", /extent .* outside the filesystem/);
      // The root's header word 1 (eh_max, eh_depth) rewritten to max 1, depth 4: its entry is
      // then read as an index pointing at a data block, which is no extent node.
      const deep = await patched(image, 0, []);
      await runOk("debugfs", ["-w", "-R", "sif a/big.bin block[1] 0x00040001", deep]);
      await exportFails(deep, "FORMAT_INVALID", /extent tree/);
    }));

  it("a directory entry with a bad rec_len", () =>
    withTempDir("bad-dirent", async (dir) => {
      const image = await sampleImage(dir);
      const out = await patched(image, 0, []);
      const blocks = (await runOk("debugfs", ["-R", "blocks a", out])).stdout.trim().split(/\s+/).map(Number);
      // The first entry ('.') of directory "a": rec_len at byte 4 set to 7 (not a multiple of 4).
      await exportFails(await patched(out, blocks[0]! * 4096 + 4, [7, 0]), "FORMAT_INVALID", /bad rec_len/);
    }));

  it("a cycle in the directory graph", () =>
    withTempDir("bad-cycle", async (dir) => {
      const image = await sampleImage(dir);
      const out = await patched(image, 0, []);
      // Link directory "a" into its own subdirectory: walking it would never end.
      await runOk("debugfs", ["-w", "-R", "link a a/b/loop", out]);
      await exportFails(out, "FORMAT_INVALID", /cycle/);
    }));
});

describe("metadata_csum is verified", () => {
  it("an inode whose checksum does not match (mkfs.ext4 defaults)", () =>
    withTempDir("bad-csum", async (dir) => {
      const src = join(dir, "src");
      await mkdir(src);
      await makeTree(src, [{ op: "file", path: "f", data: "x" }]);
      const image = join(dir, "fs.img");
      await runOk("mkfs.ext4", ["-q", "-F", "-d", src, image, "8M"]);
      await exportImage(image, join(dir, "ok.tar")); // clean: checksums verify
      // Change the mode of "f" behind the filesystem's back: its inode checksum no longer matches.
      const ino = Number((await runOk("debugfs", ["-R", "stat f", image])).stdout.match(/Inode: (\d+)/)![1]);
      const itable = Number((await runOk("dumpe2fs", [image])).stdout.match(/Inode table at (\d+)/)![1]);
      const sb = await readFile(image);
      const blockSize = 1024 << sb.readUInt32LE(1024 + 0x18);
      const inodeSize = sb.readUInt16LE(1024 + 0x58);
      await exportFails(await patched(image, itable * blockSize + (ino - 1) * inodeSize, [0xa4, 0x81 ^ 0x01]), "FORMAT_INVALID", /inode \d+: checksum does not match/);
    }));
});

describe("export fuzz: mutated images give typed errors only", () => {
  const seconds = Number(process.env.LCOW_FUZZ_SECONDS ?? 4);
  it(`random byte mutations for ${seconds}s`, () =>
    withTempDir("fuzz-export", async (dir) => {
      const image = await sampleImage(dir);
      const original = await readFile(image);
      let seed = 12345;
      const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
      const deadline = Date.now() + seconds * 1000;
      let cases = 0;
      while (Date.now() < deadline) {
        const data = Buffer.from(original);
        // Mutate metadata-heavy regions: the first blocks and the tail where our writer puts
        // directories, bitmaps and inode tables.
        for (let i = 0; i < 1 + Math.floor(rand() * 8); i++) {
          const region = rand() < 0.5 ? Math.floor(rand() * 8192) : data.length - 1 - Math.floor(rand() * Math.min(data.length, 200_000));
          data[region] = Math.floor(rand() * 256);
        }
        const path = join(dir, "m.img");
        await writeFile(path, data);
        const result = await Promise.race([
          exportImage(path, join(dir, "m.tar")).then(
            () => "ok",
            (e: unknown) => (isVhdError(e) ? "typed" : e),
          ),
          new Promise((r) => setTimeout(() => r("timeout"), 5000)),
        ]);
        if (result !== "ok" && result !== "typed") throw new Error(`case ${cases}: ${result instanceof Error ? result.stack : String(result)}`);
        cases++;
      }
      expect(cases).toBeGreaterThan(5);
    }));
});
