// Acceptance (issue 3): for every fixture tar, the image convertTar writes passes e2fsck -fn,
// qemu-img reads the VHD with the right size and gives back the ext4 bytes, the loop-mounted
// tree equals GNU tar's extraction (names, types, modes, owners, mtimes to the ns, sizes,
// sha256, symlink targets, device numbers, xattrs, hard-link identity), and a second conversion
// is byte-identical. See harness/verify.ts for the stages and harness.selftest.test.ts for the
// proof that each stage can fail.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { convertTar } from "../src/index.js";
import { filesDiffer, verifyConversion, withTempDir } from "./harness/index.js";
import { fixtures } from "./fixtures/index.js";

/** Fixtures whose images are also read through debugfs and compared with the mount (the no-mount path). */
const CROSS_CHECK_DEBUGFS = new Set(["gnu-tar-pax-nanoseconds", "xattrs-schily-gnu-tar", "devices-and-fifos", "hardlinks-to-files-symlinks-devices", "pax-mtime-pre-1970-nanoseconds-post-2038", "symlink-target-lengths", "oci-whiteouts-to-overlay"]);

describe("convertTar acceptance: every fixture", () => {
  for (const f of fixtures) {
    it(`${f.name} (${f.tool})`, () =>
      withTempDir(f.name, async (dir) => {
        const tar = await f.build(dir);
        const r = await verifyConversion(tar, { workDir: dir, convert: f.convert, extraChecks: f.extraChecks, crossCheckDebugfs: CROSS_CHECK_DEBUGFS.has(f.name) });
        f.quirk?.(r.expected);
      }));
  }
});

describe("convertTar acceptance: without a mount (debugfs)", () => {
  for (const name of ["gnu-tar-pax-nanoseconds", "xattrs-schily-gnu-tar"]) {
    it(name, () =>
      withTempDir(`debugfs-${name}`, async (dir) => {
        const f = fixtures.find((x) => x.name === name)!;
        await verifyConversion(await f.build(dir), { workDir: dir, convert: f.convert, mount: false, determinism: false });
      }));
  }
});

describe("convertTar: input chunking does not change the output (STYLE 13)", () => {
  async function* chunks(b: Uint8Array, size: number): AsyncIterable<Uint8Array> {
    for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
  }
  it("one buffer, 321-byte chunks and 7-byte chunks give the same bytes", () =>
    withTempDir("chunking", async (dir) => {
      const f = fixtures.find((x) => x.name === "xattrs-schily-gnu-tar")!;
      const tar = await readFile(await f.build(dir));
      const outs = [];
      for (const size of [tar.length, 321, 7]) {
        const out = join(dir, `out-${size}.vhd`);
        await convertTar(chunks(tar, size), out);
        outs.push(out);
      }
      expect(await filesDiffer(outs[0]!, outs[1]!)).toBeNull();
      expect(await filesDiffer(outs[0]!, outs[2]!)).toBeNull();
    }));
});
