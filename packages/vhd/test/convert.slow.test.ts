// SLOW (~2-3 minutes on 2 cores): a file over 8 GiB streamed through convertTar, and a
// directory with 100k entries. They run in `pnpm test` like the rest; the file name marks them.
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { convertTar } from "../src/index.js";
import { e2fsckClean, manifestOf, qemuVirtualSize, readFooter, specGeometry, verifyConversion, withLoopDevice, withLoopMount, withTempDir, VHD_FOOTER_SIZE } from "./harness/index.js";
import { slowFixtures } from "./fixtures/index.js";
import { bigFileTar } from "./fixtures/big-stream.js";

describe("convertTar acceptance (slow)", () => {
  for (const f of slowFixtures) {
    it(`${f.name} (${f.tool})`, () =>
      withTempDir(f.name, async (dir) => {
        const r = await verifyConversion(await f.build(dir), { workDir: dir, convert: f.convert, extraChecks: f.extraChecks });
        f.quirk?.(r.expected);
        expect(r.actual.entries.length).toBeGreaterThan(100_000);
      }), 600_000);
  }

  // 8 GiB + 12345 bytes: over the 8 GiB - 1 an octal ustar size holds, not a multiple of the block size.
  const SIZE = 8 * 1024 ** 3 + 12_345;
  for (const encoding of ["pax", "base256"] as const) {
    it(`a file over 8 GiB (${encoding === "pax" ? "PAX size record" : "GNU base-256 size"}), streamed, never stored`, () =>
      withTempDir("big-8g", async (dir) => {
        const big = bigFileTar("big/over-8gib.bin", SIZE, encoding);
        const image = join(dir, "layer.vhd");
        // The second conversion and the qemu-img raw copy are skipped here: 2 x 8 GiB of extra I/O.
        // Determinism and the raw-copy identity are covered by every other fixture.
        const summary = await convertTar(big.stream, image);
        const sha = await big.contentSha256;
        const fileSize = (await stat(image)).size;
        const ext4Bytes = fileSize - VHD_FOOTER_SIZE;
        expect(summary.ext4Bytes).toBe(ext4Bytes);
        expect(summary.bytesIn).toBe(big.bytesOut());
        const footer = await readFooter(image);
        expect(footer.currentSize).toBe(BigInt(ext4Bytes));
        const g = specGeometry(BigInt(ext4Bytes));
        expect([footer.cylinders, footer.heads, footer.sectorsPerTrack]).toEqual([g.cylinders, g.heads, g.sectorsPerTrack]);
        expect((await qemuVirtualSize(image)).virtualSize).toBe(ext4Bytes);
        await withLoopDevice(image, { sizelimit: ext4Bytes }, (dev) => e2fsckClean(dev));
        await withLoopMount(image, { sizelimit: ext4Bytes }, async (mp) => {
          const m = await manifestOf(mp);
          const e = (p: string) => m.entries.find((x) => x.path === p);
          expect(e("big/over-8gib.bin")).toMatchObject({ type: "file", size: SIZE, sha256: sha, mtimeNs: "1600000000000000000", mode: 0o644 });
          expect(e("small-before")?.size).toBe(7);
          expect(e("small-after")?.size).toBe(6);
          expect(e("big")).toMatchObject({ type: "dir", mode: 0o755, uid: 0, gid: 0 });
        });
      }), 900_000);
  }
});
