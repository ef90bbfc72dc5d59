// `checkExt4`/`checkImage` find nothing on images that e2fsck -fn passes: what our converter
// writes and what mkfs.ext4 1.47 writes with the feature sets the reader must handle.
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkImage } from "../src/ext4/check.js";
import { convertTar } from "../src/index.js";
import { runOk } from "./harness/exec.js";
import { makeTempDir } from "./harness/tmp.js";
import { debugfsW, e2fsckCode, makeTree, mkfs } from "./check/helpers.js";
import { rm } from "node:fs/promises";

let dir: string;
let tree: string;

beforeAll(async () => {
  dir = await makeTempDir("check-clean");
  tree = join(dir, "tree");
  await makeTree(tree);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const mkfsVariants: [string, number, string[]][] = [
  ["defaults (metadata_csum, 64bit, journal, 4 KiB blocks)", 64, ["-b", "4096"]],
  ["defaults at 1 KiB blocks (small fs type), several groups", 32, []],
  ["inline_data", 64, ["-b", "4096", "-O", "inline_data"]],
  ["no extents (indirect block maps)", 32, ["-O", "^extent,^64bit"]],
  ["ext2", 32, ["-t", "ext2"]],
  ["gdt_csum instead of metadata_csum", 32, ["-O", "^metadata_csum,uninit_bg"]],
  ["no checksums at all", 32, ["-O", "^metadata_csum,^uninit_bg"]],
  ["orphan_file and metadata_csum_seed", 64, ["-b", "4096", "-O", "orphan_file,metadata_csum_seed"]],
  ["meta_bg, no resize inode", 64, ["-O", "meta_bg,^resize_inode"]],
  ["128-byte inodes, ext3", 32, ["-t", "ext3", "-I", "128"]],
];

describe("checkImage on mkfs.ext4 -d images", () => {
  for (const [name, mib, opts] of mkfsVariants) {
    it(name, async () => {
      const img = join(dir, `${name.replace(/\W+/g, "_")}.img`);
      await mkfs(img, mib, opts, tree);
      expect(await e2fsckCode(img)).toBe(0);
      const report = await checkImage(img);
      expect(report.findings).toEqual([]);
      expect(report.ok).toBe(true);
      expect(report.format).toBe("raw");
      expect(report.stats.regularFiles).toBeGreaterThan(200);
      expect(report.stats.directories).toBeGreaterThanOrEqual(6);
    });
  }

  it("htree directories (e2fsck -fyD) at 4 KiB and 1 KiB blocks", async () => {
    for (const opts of [["-b", "4096"], ["-b", "1024"]]) {
      const img = join(dir, `htree${opts[1]}.img`);
      await mkfs(img, 64, opts, tree);
      await runOk("e2fsck", ["-fyD", img]).catch(() => {}); // exit 1: "file system was modified"
      expect(await e2fsckCode(img)).toBe(0);
      expect(await debugfsW(img, "htree /e")).toMatch(/Root node dump/);
      const report = await checkImage(img);
      expect(report.findings).toEqual([]);
    }
  });
});

describe("checkImage on converter images", () => {
  const tars: [string, string[], { inlineData?: boolean }][] = [
    ["GNU format", ["--format=gnu"], {}],
    ["PAX with xattrs", ["--format=posix", "--xattrs", "--xattrs-include=*"], {}],
    ["PAX with xattrs, inline data", ["--format=posix", "--xattrs", "--xattrs-include=*"], { inlineData: true }],
  ];
  for (const [name, tarOpts, options] of tars) {
    it(name, async () => {
      const tar = join(dir, `${name.replace(/\W+/g, "_")}.tar`);
      await runOk("tar", ["-C", tree, ...tarOpts, "-cf", tar, "."]);
      const vhd = join(dir, `${name.replace(/\W+/g, "_")}.vhd`);
      await convertTar(tar, vhd, options);
      expect(await e2fsckCode(vhd)).toBe(0);
      const report = await checkImage(vhd);
      expect(report.format).toBe("vhd");
      expect(report.findings).toEqual([]);
      expect(report.stats.regularFiles).toBeGreaterThan(200);
      // The same bytes without the footer are a raw image and check the same.
      const raw = join(dir, "copy.img");
      await copyFile(vhd, raw);
      await runOk("truncate", ["-s", `-512`, raw]);
      expect((await checkImage(raw)).findings).toEqual([]);
    });
  }
});
