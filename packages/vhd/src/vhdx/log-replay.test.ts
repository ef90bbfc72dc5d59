import { describe, expect, it } from "vitest";
import { encodeVhdxLogEntry, type VhdxLogWrite } from "../format/vhdx-log.js";
import { findActiveSequence } from "./log-replay.js";

const GUID = "0badc0de-0000-4000-8000-000000000001";
const OTHER = "0badc0de-0000-4000-8000-000000000002";
const sector = (fill: number) => new Uint8Array(4096).fill(fill);

function entry(seq: bigint, tail: number, writes: VhdxLogWrite[], logGuid = GUID): Uint8Array {
  return encodeVhdxLogEntry({ tail, sequenceNumber: seq, logGuid, flushedFileOffset: 0, lastFileOffset: 1 << 20 }, writes);
}

/** A log of `sectors` 4 KiB sectors with `entries` placed at their offsets; placing past the end wraps around. */
function logOf(sectors: number, entries: [number, Uint8Array][]): Uint8Array {
  const log = new Uint8Array(sectors * 4096);
  for (const [at, e] of entries) {
    for (let i = 0; i < e.length; i++) log[(at + i) % log.length] = e[i]!;
  }
  return log;
}

const seqs = (log: Uint8Array, guid = GUID) => findActiveSequence(log, guid)?.entries.map((e) => e.header.sequenceNumber);

describe("VHDX active log sequence", () => {
  it("finds nothing in an empty log or one written under another LogGuid", () => {
    expect(findActiveSequence(new Uint8Array(16 * 4096), GUID)).toBeUndefined();
    expect(seqs(logOf(16, [[0, entry(1n, 0, [{ fileOffset: 0, zeroLength: 4096 }], OTHER)]]))).toBeUndefined();
  });

  it("replays from the head's tail to the head, not the flushed entries before the tail", () => {
    // Entries 5, 6, 7 back to back; 7's tail names 6, so 5 is already applied.
    const e5 = entry(5n, 0, [{ fileOffset: 4096, data: sector(5) }]);
    const e6 = entry(6n, 0, [{ fileOffset: 4096, data: sector(6) }]);
    const e7 = entry(7n, e5.length, [{ fileOffset: 8192, zeroLength: 4096 }]);
    const log = logOf(32, [[0, e5], [e5.length, e6], [e5.length + e6.length, e7]]);
    const active = findActiveSequence(log, GUID)!;
    expect(active.entries.map((e) => e.header.sequenceNumber)).toEqual([6n, 7n]);
    expect(active.offsets).toEqual([e5.length, e5.length + e6.length]);
    expect(active.head.sequenceNumber).toBe(7n);
  });

  it("follows a sequence that wraps around the end of the ring", () => {
    // A 13-sector ring: a fills sectors 10-11, b (3 sectors) fills 12, 0 and 1.
    const a = entry(10n, 10 * 4096, [{ fileOffset: 4096, data: sector(1) }]);
    const b = entry(11n, 10 * 4096, [{ fileOffset: 4096, data: sector(2) }, { fileOffset: 8192, data: sector(3) }]);
    const log = logOf(13, [[10 * 4096, a], [12 * 4096, b]]);
    expect(seqs(log)).toEqual([10n, 11n]);
    const wrapped = findActiveSequence(log, GUID)!.entries[1]!.writes;
    expect(wrapped.map((w) => ("data" in w ? w.data[0] : -1))).toEqual([2, 3]);
  });

  it("prefers the newest valid sequence and ignores a torn head or a tail outside the sequence", () => {
    const old = entry(3n, 0, [{ fileOffset: 0, zeroLength: 4096 }]);
    const newer = entry(20n, 8 * 4096, [{ fileOffset: 0, zeroLength: 4096 }]);
    const torn = entry(21n, 8 * 4096, [{ fileOffset: 0, data: sector(9) }]);
    torn[5000]! ^= 1;
    // 30's tail points at a sector that is not part of its sequence: not a complete sequence.
    const dangling = entry(30n, 2 * 4096, [{ fileOffset: 0, zeroLength: 4096 }]);
    const log = logOf(32, [[0, old], [8 * 4096, newer], [8 * 4096 + newer.length, torn], [24 * 4096, dangling]]);
    expect(seqs(log)).toEqual([20n]);
  });

  it("breaks a sequence where the sequence numbers stop being consecutive", () => {
    const a = entry(1n, 0, [{ fileOffset: 0, zeroLength: 4096 }]);
    const c = entry(3n, 0, [{ fileOffset: 0, zeroLength: 4096 }]);
    // 3 follows 1 directly but is not 2: 3's tail (0) is outside its own sequence, so only [1] stands.
    expect(seqs(logOf(8, [[0, a], [a.length, c]]))).toEqual([1n]);
  });

  it("rejects a log whose length is not a multiple of 4 KiB", () => {
    expect(() => findActiveSequence(new Uint8Array(5000), GUID)).toThrow(expect.objectContaining({ code: "FORMAT_INVALID" }));
  });
});
