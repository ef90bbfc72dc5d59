// verifyConversion: the whole acceptance pipeline for one tar, cheapest check first
// (STYLE 11): convert -> VHD footer + qemu-img -> e2fsck -fn on the exact ext4 bytes ->
// mount read-only (or debugfs) and compare with GNU tar's extraction -> convert again and cmp.
import { createReadStream } from "node:fs";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { convertTar, type ConvertOptions, type ConvertSummary } from "../../src/index.js";
import { e2fsckClean } from "./e2fsck.js";
import { expectedTree } from "./expected.js";
import { canLoopMount, withLoopMount } from "./loop.js";
import { assertTreesEqual, compareTrees, manifestOf, type ExpectedEntry, type Manifest } from "./manifest.js";
import { manifestViaDebugfs } from "./debugfs.js";
import { filesDiffer, vhdChecks, VHD_FOOTER_SIZE, type VhdCheckResult } from "./vhd.js";

/** Anything that turns a tar file into an image file; the real one is `realConverter`. */
export type Converter = (tarPath: string, outPath: string, options: ConvertOptions) => Promise<ConvertSummary | void>;

/** The converter under test: `convertTar` fed by a Node read stream of the tar. */
export const realConverter: Converter = (tarPath, outPath, options) => convertTar(createReadStream(tarPath, { highWaterMark: 1 << 20 }), outPath, options);

export interface VerifyContext {
  imagePath: string;
  /** The mounted image (absent when `mount: false`). */
  mountPoint?: string;
  expected: Manifest<ExpectedEntry>;
  actual: Manifest;
}

export interface VerifyOptions {
  /** A fresh directory for this test; verifyConversion creates subfolders in it. */
  workDir: string;
  convert?: ConvertOptions;
  /** If not provided, `realConverter`. */
  converter?: Converter;
  /** Convert a second time and require byte-identical output. If not provided, true. */
  determinism?: boolean;
  /** Compare through a loop mount (true) or through debugfs (false). If not provided, a mount when `canLoopMount()`. */
  mount?: boolean;
  /** Also build the debugfs manifest and require it to equal the mounted one (exercises the fallback). */
  crossCheckDebugfs?: boolean;
  /** Fixture-specific assertions, run while the image is mounted. */
  extraChecks?: (ctx: VerifyContext) => Promise<void>;
  /** Replace the GNU tar oracle (only for a synthetic tar GNU tar cannot read). */
  expected?: Manifest<ExpectedEntry>;
}

export interface VerifyResult {
  imagePath: string;
  summary: ConvertSummary | void;
  vhd?: VhdCheckResult;
  expected: Manifest<ExpectedEntry>;
  actual: Manifest;
}

/** Files in `dir` (names only): after a conversion the output folder must hold the output and nothing else. */
export async function listDir(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

/** Runs every acceptance check on the conversion of `tarPath`; throws a descriptive Error on the first failed stage. */
export async function verifyConversion(tarPath: string, opts: VerifyOptions): Promise<VerifyResult> {
  const convert = opts.converter ?? realConverter;
  const options = opts.convert ?? {};
  const vhd = options.vhd ?? true;
  const outDir = join(opts.workDir, "out");
  await mkdir(outDir, { recursive: true });
  const imagePath = join(outDir, vhd ? "layer.vhd" : "layer.ext4");

  const summary = await convert(tarPath, imagePath, options);
  const left = await listDir(outDir);
  if (left.join() !== (vhd ? "layer.vhd" : "layer.ext4")) throw new Error(`output folder holds ${JSON.stringify(left)} after a successful conversion (temp files left?)`);
  const fileSize = (await stat(imagePath)).size;
  const ext4Bytes = vhd ? fileSize - VHD_FOOTER_SIZE : fileSize;
  if (summary) {
    if (summary.imageBytes !== fileSize) throw new Error(`summary.imageBytes ${summary.imageBytes} != file size ${fileSize}`);
    if (summary.ext4Bytes !== ext4Bytes) throw new Error(`summary.ext4Bytes ${summary.ext4Bytes} != ${ext4Bytes}`);
  }

  let vhdResult: VhdCheckResult | undefined;
  let rawPath = imagePath;
  if (vhd) {
    vhdResult = await vhdChecks(imagePath, opts.workDir, { keepRaw: true });
    rawPath = vhdResult.rawPath;
  } else if (ext4Bytes % 4096 !== 0) {
    throw new Error(`raw ext4 image size ${ext4Bytes} is not a multiple of 4096`);
  }
  await e2fsckClean(rawPath);

  const expected = opts.expected ?? (await expectedTree(tarPath, { keepWhiteouts: options.keepWhiteouts ?? false, workDir: join(opts.workDir, "expected") }));
  await rm(join(opts.workDir, "expected"), { recursive: true, force: true });

  let actual: Manifest;
  if (opts.mount ?? canLoopMount()) {
    actual = await withLoopMount(imagePath, { sizelimit: ext4Bytes }, async (mountPoint) => {
      const m = await manifestOf(mountPoint);
      assertTreesEqual(expected, m, `${tarPath} (mounted)`);
      await opts.extraChecks?.({ imagePath, mountPoint, expected, actual: m });
      return m;
    });
  } else {
    actual = await manifestViaDebugfs(rawPath, await mkdirp(join(opts.workDir, "debugfs")));
    assertTreesEqual(expected, actual, `${tarPath} (debugfs)`);
    await opts.extraChecks?.({ imagePath, expected, actual });
  }
  if (opts.crossCheckDebugfs) {
    const viaDebugfs = await manifestViaDebugfs(rawPath, await mkdirp(join(opts.workDir, "debugfs")));
    const d = compareTrees(actual as Manifest<ExpectedEntry>, viaDebugfs, { ignoreExtra: () => false });
    if (!d.ok) throw new Error(`debugfs manifest differs from the mounted one:\n  ${d.lines.slice(0, 40).join("\n  ")}`);
    await rm(join(opts.workDir, "debugfs"), { recursive: true, force: true });
  }
  if (rawPath !== imagePath) await rm(rawPath, { force: true });

  if (opts.determinism ?? true) {
    const again = join(opts.workDir, "again");
    await mkdir(again, { recursive: true });
    const second = join(again, vhd ? "layer.vhd" : "layer.ext4");
    await convert(tarPath, second, options);
    const diff = await filesDiffer(imagePath, second);
    if (diff) throw new Error(`two conversions of ${tarPath} differ: ${diff}`);
    await rm(again, { recursive: true, force: true });
  }
  return { imagePath, summary, vhd: vhdResult, expected, actual };
}

async function mkdirp(p: string): Promise<string> {
  await mkdir(p, { recursive: true });
  return p;
}
