// Seeded mutations of valid VHDX files (ours, and qemu's with a stale log entry) for a few
// seconds: opening and reading must end in success or a VhdError, never another exception or
// a hang. Checksums are fixed up most of the time so mutations reach the structures behind them.
import { execFileSync } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { crc32cWithZeroField } from "../src/format/vhdx-common.js";
import { decodeVhdxHeader, encodeVhdxHeader, VHDX_HEADER_OFFSETS, VHDX_HEADER_SIZE } from "../src/format/vhdx-header.js";
import { VHDX_REGION_TABLE_OFFSETS, VHDX_REGION_TABLE_SIZE } from "../src/format/vhdx-region-table.js";
import { decodeGuid } from "../src/format/vhdx-guid.js";
import { isVhdError } from "../src/errors.js";
import { createVhdx, openVhdxSource } from "../src/vhdx/index.js";
import { makeTempDir } from "./harness/tmp.js";
import { prng, randomBytesSeeded } from "./vhdx-helpers.js";

const MiB = 1024 * 1024;
const SECONDS = Number(process.env.VHDX_FUZZ_SECONDS ?? 4);
let dir: string;
const bases: { name: string; bytes: Buffer; meta: number; bat: number }[] = [];

beforeAll(async () => {
  dir = await makeTempDir("vhdx-fuzz");
  const ours = join(dir, "ours.vhdx");
  const sink = await createVhdx(ours, { virtualSize: 4 * MiB, seed: "fuzz" });
  await sink.write(randomBytesSeeded(MiB, 1), 0);
  await sink.write(randomBytesSeeded(4096, 2), 3 * MiB);
  await sink.close();
  bases.push({ name: "ours", bytes: await readFile(ours), meta: 2 * MiB, bat: 3 * MiB });
  const raw = join(dir, "in.raw");
  await writeFile(raw, randomBytesSeeded(2 * MiB, 3));
  const q = join(dir, "qemu.vhdx");
  execFileSync("qemu-img", ["convert", "-f", "raw", "-O", "vhdx", "-o", "block_size=1M", raw, q]);
  bases.push({ name: "qemu", bytes: await readFile(q), meta: 3 * MiB, bat: 2 * MiB });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function fixChecksums(b: Buffer): void {
  for (const at of VHDX_HEADER_OFFSETS) b.writeUInt32LE(crc32cWithZeroField(b.subarray(at, at + VHDX_HEADER_SIZE), 4), at + 4);
  for (const at of VHDX_REGION_TABLE_OFFSETS) b.writeUInt32LE(crc32cWithZeroField(b.subarray(at, at + VHDX_REGION_TABLE_SIZE), 4), at + 4);
}

function mutate(base: (typeof bases)[number], rand: () => number): Buffer {
  let b = Buffer.from(base.bytes);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const areas = [
    [VHDX_HEADER_OFFSETS[0], 80],
    [VHDX_HEADER_OFFSETS[1], 80],
    [VHDX_REGION_TABLE_OFFSETS[0], 80],
    [VHDX_REGION_TABLE_OFFSETS[1], 80],
    [base.meta, 200],
    [base.meta + 0x10000, 48],
    [base.bat, 64],
    [MiB, 8192], // the log
  ] as const;
  const interesting = [0, 1, 0xffffffff, 0x80000000, 4096, MiB, 2 * MiB, 0x100000 * 255, b.length, 6];
  // Make qemu's stale log entry live now and then, so mutations reach the replay code.
  if (base.name === "qemu" && rand() < 0.3) {
    const logGuid = decodeGuid(b, MiB + 32);
    for (const at of VHDX_HEADER_OFFSETS) b.set(encodeVhdxHeader({ ...decodeVhdxHeader(b.subarray(at, at + VHDX_HEADER_SIZE)), logGuid }), at);
  }
  const count = 1 + Math.floor(rand() * 6);
  for (let i = 0; i < count; i++) {
    const [start, len] = pick(areas);
    const at = start + Math.floor(rand() * len);
    const kind = rand();
    if (kind < 0.4) b[at] = (b[at] ?? 0) ^ (1 << Math.floor(rand() * 8));
    else if (kind < 0.7) b[at] = Math.floor(rand() * 256);
    else if (at + 4 <= b.length) b.writeUInt32LE(pick(interesting) >>> 0, at - (at % 4));
  }
  if (rand() < 0.85) fixChecksums(b);
  if (rand() < 0.1) b = b.subarray(0, Math.floor(rand() * b.length));
  return b;
}

/** Opens and reads `file`; true when it opened. Anything but a VhdError propagates. */
async function exercise(file: string): Promise<boolean> {
  let opened;
  try {
    opened = await openVhdxSource(file);
  } catch (err) {
    if (isVhdError(err)) return false;
    throw err;
  }
  const { source } = opened;
  try {
    const buf = new Uint8Array(MiB + 4096);
    const size = source.size;
    for (const at of [0, Math.max(0, size - buf.length), Math.floor(size / 3), Math.floor(size / 2) + 17]) {
      await source.read(buf, at);
    }
  } catch (err) {
    if (!isVhdError(err)) throw err;
  } finally {
    await source.close();
  }
  return true;
}

describe("VHDX fuzz", () => {
  it(`mutated files yield only VhdErrors for ${SECONDS} s`, async () => {
    const rand = prng(Number(process.env.VHDX_FUZZ_SEED ?? 0x5eed));
    const file = join(dir, "mutant.vhdx");
    const deadline = Date.now() + SECONDS * 1000;
    let iterations = 0;
    let opened = 0;
    while (Date.now() < deadline) {
      const base = bases[iterations % bases.length]!;
      const seedState = iterations;
      await writeFile(file, mutate(base, rand));
      let timer: NodeJS.Timeout | undefined;
      const hang = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`iteration ${seedState} (${base.name}) hung`)), 5000);
      });
      try {
        if (await Promise.race([exercise(file), hang])) opened++;
      } catch (err) {
        // Keep the failing input for the report.
        await writeFile(join(dir, `..`, `lcow-vhdx-fuzz-failure-${seedState}.vhdx`), await readFile(file));
        throw new Error(`fuzz iteration ${seedState} (${base.name}): ${(err as Error).stack}`);
      } finally {
        clearTimeout(timer);
      }
      iterations++;
    }
    expect(iterations).toBeGreaterThan(50);
    // Not every mutant may fail: some mutations hit reserved or unused bytes.
    expect(opened).toBeLessThan(iterations);
    expect(opened).toBeGreaterThan(0);
  });
});
