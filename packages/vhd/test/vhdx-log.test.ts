// Log replay on open: a VHDX whose log holds updates not yet applied (as after a power failure
// between the log flush and the metadata write). We craft the log per MS-VHDX 2.3 and check
// that our reader's in-memory replay gives the same disk as qemu's on-disk replay.
import { copyFile, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeVhdxBatEntry, VhdxPayloadState } from "../src/format/vhdx-bat.js";
import { decodeVhdxHeader, encodeVhdxHeader, VHDX_HEADER_OFFSETS, VHDX_HEADER_SIZE } from "../src/format/vhdx-header.js";
import { encodeVhdxLogEntry } from "../src/format/vhdx-log.js";
import { openVhdxSource } from "../src/vhdx/index.js";
import { runOk } from "./harness/exec.js";
import { makeTempDir } from "./harness/tmp.js";
import { firstDiff, randomBytesSeeded, readAll } from "./vhdx-helpers.js";
import { createVhdx } from "../src/vhdx/index.js";

const MiB = 1024 * 1024;
const LOG_GUID = "5eed1065-0000-4000-8000-00000000abcd";
let dir: string;
beforeAll(async () => {
  dir = await makeTempDir("vhdx-log");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * Our 16 MiB VHDX (log at 1 MiB, BAT at 3 MiB, block 0 at 4 MiB), then by hand: two payload
 * blocks appended at 5 and 6 MiB, and a log whose replay (1) rewrites the BAT's first sector so
 * block 0 becomes ZERO, block 3 lives at 5 MiB and block 5 at 6 MiB, (2) zeroes the first
 * 4 KiB of block 3's data, and (3) declares the file 8 MiB long (LastFileOffset). A stale entry
 * under another LogGuid and a torn newer entry must be ignored.
 */
async function craft(file: string, opts: { flushedFileOffset?: number; logGuid?: string } = {}): Promise<Uint8Array> {
  const size = 16 * MiB;
  const sink = await createVhdx(file, { virtualSize: size, seed: "log" });
  await sink.write(randomBytesSeeded(MiB, 1), 0);
  await sink.close();
  const bytes = new Uint8Array(7 * MiB);
  bytes.set(await readFile(file), 0);
  const b = randomBytesSeeded(MiB, 3);
  const c = randomBytesSeeded(MiB, 5);
  bytes.set(b, 5 * MiB);
  bytes.set(c, 6 * MiB);
  const batSector = bytes.slice(3 * MiB, 3 * MiB + 4096);
  encodeVhdxBatEntry({ state: VhdxPayloadState.ZERO, fileOffsetMB: 0 }, batSector, 0 * 8);
  encodeVhdxBatEntry({ state: VhdxPayloadState.FULLY_PRESENT, fileOffsetMB: 5 }, batSector, 3 * 8);
  const common = { flushedFileOffset: opts.flushedFileOffset ?? 4 * MiB, lastFileOffset: 8 * MiB };
  const e1 = encodeVhdxLogEntry({ ...common, tail: 0, sequenceNumber: 41n, logGuid: LOG_GUID }, [{ fileOffset: 3 * MiB, data: batSector.slice() }]);
  encodeVhdxBatEntry({ state: VhdxPayloadState.FULLY_PRESENT, fileOffsetMB: 6 }, batSector, 5 * 8);
  const e2 = encodeVhdxLogEntry({ ...common, tail: 0, sequenceNumber: 42n, logGuid: LOG_GUID }, [{ fileOffset: 3 * MiB, data: batSector.slice() }, { fileOffset: 5 * MiB, zeroLength: 4096 }]);
  const stale = encodeVhdxLogEntry({ ...common, tail: 0, sequenceNumber: 99n, logGuid: "5eed1065-0000-4000-8000-0000000000ff" }, [{ fileOffset: 3 * MiB, zeroLength: 4096 }]);
  const torn = encodeVhdxLogEntry({ ...common, tail: 0, sequenceNumber: 43n, logGuid: LOG_GUID }, [{ fileOffset: 3 * MiB, zeroLength: 4096 }]);
  torn[100]! ^= 1;
  const log = 1 * MiB;
  bytes.set(e1, log);
  bytes.set(e2, log + e1.length);
  bytes.set(torn, log + e1.length + e2.length);
  bytes.set(stale, log + 64 * 4096);
  // Header 2 is current (sequence 2); a newer one carrying the LogGuid replaces it.
  const at = VHDX_HEADER_OFFSETS[1];
  const h = decodeVhdxHeader(bytes.subarray(at, at + VHDX_HEADER_SIZE));
  bytes.set(encodeVhdxHeader({ ...h, sequenceNumber: h.sequenceNumber + 1n, logGuid: opts.logGuid ?? LOG_GUID }), at);
  await writeFile(file, bytes);
  const model = new Uint8Array(size);
  model.set(b, 3 * MiB);
  model.fill(0, 3 * MiB, 3 * MiB + 4096);
  model.set(c, 5 * MiB);
  return model;
}

describe("VHDX log replay", () => {
  it("replays the active sequence in memory, leaving the file as it was", async () => {
    const file = join(dir, "dirty.vhdx");
    const model = await craft(file);
    const before = await readFile(file);
    const { source, notes } = await openVhdxSource(file);
    expect(notes).toEqual(["replayed 2 VHDX log entries in memory (the file was not modified)"]);
    expect(source.info.replayedLogEntries).toBe(2);
    expect(firstDiff(await readAll(source), model)).toBe(-1);
    await source.close();
    expect(Buffer.compare(await readFile(file), before)).toBe(0);
  });

  it("agrees with qemu's own replay (qemu-img check -r all replays on disk)", async () => {
    const file = join(dir, "dirty-q.vhdx");
    const model = await craft(file);
    const copy = join(dir, "replayed-by-qemu.vhdx");
    await copyFile(file, copy);
    await runOk("qemu-img", ["check", "-r", "all", "-f", "vhdx", copy]);
    const raw = join(dir, "replayed.raw");
    await runOk("qemu-img", ["convert", "-f", "vhdx", "-O", "raw", copy, raw]);
    expect(firstDiff(new Uint8Array(await readFile(raw)), model)).toBe(-1);
    // After qemu's replay the log is clean and our reader needs no replay to see the same disk.
    const { source, notes } = await openVhdxSource(copy);
    expect(notes).toEqual([]);
    expect(firstDiff(await readAll(source), model)).toBe(-1);
    await source.close();
  });

  it("refuses a file shorter than the log's FlushedFileOffset (truncated)", async () => {
    const file = join(dir, "truncated-log.vhdx");
    await craft(file, { flushedFileOffset: 32 * MiB });
    await expect(openVhdxSource(file)).rejects.toMatchObject({ code: "FORMAT_INVALID", message: expect.stringMatching(/truncated/) });
  });

  it("refuses a LogGuid that no log entry carries (log present but no valid sequence)", async () => {
    const file = join(dir, "no-sequence.vhdx");
    await craft(file, { logGuid: "5eed1065-0000-4000-8000-000000000777" });
    await expect(openVhdxSource(file)).rejects.toMatchObject({ code: "FORMAT_INVALID", message: expect.stringMatching(/log at file offset 1048576: LogGuid .* no valid sequence/) });
  });

  it("still reads when the file is shorter than LastFileOffset (the missing tail reads as zeros)", async () => {
    const file = join(dir, "short.vhdx");
    const model = await craft(file);
    await truncate(file, 6 * MiB + 4096); // block 5 (at 6 MiB) is cut short after its first 4 KiB
    model.fill(0, 5 * MiB + 4096, 6 * MiB);
    const { source } = await openVhdxSource(file);
    expect(firstDiff(await readAll(source), model)).toBe(-1);
    await source.close();
  });
});
