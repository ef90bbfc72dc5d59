// Fuzz: seeded byte mutations of small valid images. checkExt4 must always resolve with a
// report (never throw, never hang, report bounded). Runs ~3 s by default; set
// LCOW_FUZZ_SECONDS=300 for a long run and LCOW_FUZZ_SEED to replay one (the failure message
// prints both the seed and the case number).
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkExt4 } from "../src/ext4/check.js";
import { convertTar } from "../src/index.js";
import { runOk } from "./harness/exec.js";
import { makeTempDir } from "./harness/tmp.js";
import { loadImage, memorySource, mkfs } from "./check/helpers.js";
import { mkdir } from "node:fs/promises";

const SECONDS = Number(process.env.LCOW_FUZZ_SECONDS ?? 3);
const SEED = Number(process.env.LCOW_FUZZ_SEED ?? 20261126); // fixed by default so a CI failure replays; set LCOW_FUZZ_SEED to explore
/** A case that takes longer than this is a hang (the images are a few MiB). */
const CASE_MS = 5000;

/** mulberry32: a small seeded PRNG, so any failing case can be replayed from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING = [0, 1, 2, 7, 11, 0x7f, 0x80, 0xff, 0xffff, 0x8000, 0xf30a, 0xef53, 0x7fffffff, 0xffffffff, 0xea020000];

/** Offsets of the non-zero 64-byte chunks of an image: metadata (and some file data) lives there. */
function liveChunks(image: Uint8Array): number[] {
  const out: number[] = [];
  for (let at = 0; at < image.length; at += 64) {
    for (let k = 0; k < 64; k++) {
      if (image[at + k] !== 0) {
        out.push(at);
        break;
      }
    }
  }
  return out;
}

/**
 * Mutates a copy: a few random bytes, or a 16/32-bit field set to an interesting value. Most
 * mutations land in non-zero chunks, so they hit structures rather than free space.
 */
function mutate(image: Uint8Array, live: number[], r: () => number): Uint8Array {
  const out = new Uint8Array(image);
  const n = 1 + Math.floor(r() * 8);
  for (let i = 0; i < n; i++) {
    let at = r() < 0.8 ? live[Math.floor(r() * live.length)]! + Math.floor(r() * 64) : Math.floor(r() * image.length);
    if (r() < 0.5) {
      out[at] = r() < 0.5 ? Math.floor(r() * 256) : out[at]! ^ (1 << Math.floor(r() * 8));
    } else {
      at &= ~3;
      const v = INTERESTING[Math.floor(r() * INTERESTING.length)]!;
      const width = r() < 0.5 ? 2 : 4;
      for (let k = 0; k < width && at + k < out.length; k++) out[at + k] = (v >>> (8 * k)) & 0xff;
    }
  }
  return out;
}

let dir: string;
const seeds: [string, Uint8Array, number[]][] = [];

beforeAll(async () => {
  dir = await makeTempDir("check-fuzz");
  const tree = join(dir, "tree");
  await mkdir(join(tree, "d/sub"), { recursive: true });
  await writeFile(join(tree, "d/f"), "hello\n");
  await writeFile(join(tree, "d/sub/g"), Buffer.alloc(20_000, 0x41));
  for (let i = 0; i < 40; i++) await writeFile(join(tree, `d/n${i}`), `${i}`);
  await runOk("setfattr", ["-n", "user.k", "-v", "z".repeat(300), join(tree, "d/f")]);
  const variants: [string, number, string[]][] = [
    ["metadata_csum-1k", 2, ["-b", "1024"]],
    ["inline-4k", 4, ["-b", "4096", "-O", "inline_data,^metadata_csum"]],
    ["ext2", 2, ["-t", "ext2"]],
  ];
  for (const [name, mib, opts] of variants) {
    const img = join(dir, `${name}.img`);
    await mkfs(img, mib, opts, tree);
    const image = await loadImage(img);
    seeds.push([name, image, liveChunks(image)]);
  }
  const tar = join(dir, "t.tar");
  await runOk("tar", ["-C", tree, "--format=posix", "-cf", tar, "."]);
  await convertTar(tar, join(dir, "conv.img"), { vhd: false });
  const conv = await loadImage(join(dir, "conv.img"));
  seeds.push(["converter", conv, liveChunks(conv)]);
  // The unmutated seeds are clean, so every finding below comes from a mutation.
  for (const [name, image] of seeds) expect((await checkExt4(memorySource(image))).findings, name).toEqual([]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("check fuzz", () => {
  it(`mutated images give a bounded report, never an exception or a hang (seed ${SEED}, ${SECONDS}s)`, { timeout: (SECONDS + 60) * 1000 }, async () => {
    const r = rng(SEED);
    const end = Date.now() + SECONDS * 1000;
    let cases = 0;
    let withFindings = 0;
    while (Date.now() < end || cases < seeds.length) {
      const [name, image, live] = seeds[cases % seeds.length]!;
      const mutated = mutate(image, live, r);
      const started = Date.now();
      const label = `seed ${SEED} case ${cases} (${name})`;
      let report;
      try {
        report = await checkExt4(memorySource(mutated, started + CASE_MS), { maxFindings: 200 });
      } catch (err) {
        throw new Error(`${label}: checkExt4 threw ${(err as Error)?.stack ?? String(err)}`);
      }
      expect(Date.now() - started, `${label}: took too long`).toBeLessThan(CASE_MS);
      expect(report.findings.length, label).toBeLessThanOrEqual(201);
      expect(report.ok, label).toBe(report.findings.every((f) => f.severity !== "error"));
      if (report.findings.length > 0) withFindings++;
      cases++;
      // A memory source resolves in microtasks only: let vitest's worker RPC run between cases.
      await new Promise((resolve) => setImmediate(resolve));
    }
    // Most mutations land in metadata and are noticed; a fuzzer that finds nothing tests nothing.
    expect(withFindings).toBeGreaterThan(cases / 5);
  });
});
