// Acceptance (issue 5) with the real tools as the oracle: every VHDX we write — blank sandboxes
// and `convertTar(..., { format: "vhdx" })` layers — passes `qemu-img check -f vhdx`, has the
// right virtual size in `qemu-img info`, and its filesystem, taken out by `qemu-img convert -O
// raw`, passes `e2fsck -fn`. VHDX layers round-trip every fixture tar through export, and
// inspect reports their VHDX fields.
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { convertTar, createSandbox, exportImage, inspectImage, isVhdError } from "../src/index.js";
import { fixtures } from "./fixtures/index.js";
import { dir as tdir, file, symlink, tarOf } from "./fixtures/tar-builder.js";
import { assertTreesEqual, expectedTree, GNU_TAR_EXTRACT, manifestOf, runOk, withTempDir } from "./harness/index.js";
import { e2fsckClean } from "./harness/e2fsck.js";

const MiB = 2 ** 20;

/** `qemu-img check` clean and `qemu-img info` virtual size; returns the info. */
async function qemuChecks(path: string, virtualSize: number): Promise<{ "virtual-size": number; format: string; "cluster-size"?: number }> {
  await runOk("qemu-img", ["check", "-f", "vhdx", path]);
  const info = JSON.parse((await runOk("qemu-img", ["info", "-f", "vhdx", "--output=json", path])).stdout);
  expect(info).toMatchObject({ format: "vhdx", "virtual-size": virtualSize });
  return info;
}

/** `qemu-img convert -f vhdx -O raw`, then `e2fsck -fn` on the raw disk. */
async function e2fsckThroughQemu(path: string, raw: string): Promise<string> {
  await runOk("qemu-img", ["convert", "-f", "vhdx", "-O", "raw", path, raw]);
  return e2fsckClean(raw);
}

describe("blank sandboxes through qemu-img and e2fsck", () => {
  const cases: [string, { size?: number; blockSize?: number; directories?: string[] }, number][] = [
    ["default (20 GiB, 1 MiB blocks)", {}, 20 * 2 ** 30],
    ["1 MiB, the smallest", { size: MiB }, MiB],
    ["a sector multiple that is not a block multiple", { size: 100 * MiB + 512 }, 100 * MiB + 512],
    ["32 MiB blocks, no root directories (scratch)", { size: 3 * 2 ** 30, blockSize: 32 * MiB, directories: [] }, 3 * 2 ** 30],
  ];
  for (const [name, options, size] of cases) {
    it(name, () =>
      withTempDir("sbx-qemu", async (dir) => {
        const path = join(dir, "sandbox.vhdx");
        const s = await createSandbox(path, options);
        expect(s.virtualSize).toBe(size);
        const info = await qemuChecks(path, size);
        expect(info["cluster-size"]).toBe(options.blockSize ?? MiB);
        const out = await e2fsckThroughQemu(path, join(dir, "sandbox.raw"));
        // Root, lost+found and the overlay's upper/ and work/ (unless told otherwise); nothing else.
        expect(out).toMatch(new RegExp(`: ${11 + (options.directories ?? ["upper", "work"]).length}/\\d+ files`));
      }));
  }

  it("inspect shows a sandbox's VHDX fields and an empty filesystem", () =>
    withTempDir("sbx-inspect", async (dir) => {
      const path = join(dir, "sandbox.vhdx");
      await createSandbox(path, { size: 2 * 2 ** 30 });
      const i = await inspectImage(path);
      expect(i.container).toMatchObject({ format: "vhdx", diskSize: 2 * 2 ** 30, notes: [] });
      expect(i.container.vhdx).toMatchObject({ creator: "lcow", blockSize: MiB, logicalSectorSize: 512, physicalSectorSize: 4096, totalBlocks: 2048, replayedLogEntries: 0 });
      expect(i.container.vhdx!.allocatedBlocks).toBeGreaterThan(0);
      expect(i.container.vhdx!.diskId).toMatch(/^[0-9a-f-]{36}$/);
      expect(i.entries).toEqual({ directory: 3 });
    }));
});

describe("convert --format vhdx", () => {
  const tar = tarOf([tdir("etc"), file("etc/hostname", "lcow\n", { mtime: 1_700_000_000 }), file("big.bin", new Uint8Array(3 * MiB + 17).fill(7)), symlink("etc/hostname", "link"), file("etc/.wh.gone", "")]);

  it("writes a VHDX whose virtual size is the ext4 size, that qemu-img and e2fsck accept", () =>
    withTempDir("cvt-vhdx", async (dir) => {
      const input = join(dir, "layer.tar");
      await writeFile(input, tar);
      const out = join(dir, "layer.vhdx");
      const s = await convertTar(input, out, { format: "vhdx" });
      expect(s.format).toBe("vhdx");
      expect(s.ext4Bytes % 4096).toBe(0);
      await qemuChecks(out, s.ext4Bytes);
      await e2fsckThroughQemu(out, join(dir, "layer.raw"));
      // The same filesystem bytes as the raw conversion.
      await convertTar(input, join(dir, "layer.img"), { format: "raw" });
      expect(Buffer.compare(await readFile(join(dir, "layer.raw")), await readFile(join(dir, "layer.img")))).toBe(0);
      // Deterministic: the GUIDs derive from the filesystem UUID, so the file is byte-identical.
      await convertTar(input, join(dir, "again.vhdx"), { format: "vhdx" });
      expect(Buffer.compare(await readFile(out), await readFile(join(dir, "again.vhdx")))).toBe(0);
      // `vhd: false` still means raw; `format` wins over it.
      expect((await convertTar(input, join(dir, "r.img"), { vhd: false })).format).toBe("raw");
      expect((await convertTar(input, join(dir, "x.vhdx"), { vhd: false, format: "vhdx" })).format).toBe("vhdx");
      const i = await inspectImage(out);
      expect(i.container).toMatchObject({ format: "vhdx", diskSize: s.ext4Bytes, vhdx: { blockSize: MiB, totalBlocks: Math.ceil(s.ext4Bytes / MiB) } });
      expect(i.entries).toMatchObject({ file: 2, symlink: 1, whiteout: 1 });
    }));

  it("honours maxDiskSize (not a sector multiple) and refuses an unknown format", () =>
    withTempDir("cvt-vhdx-max", async (dir) => {
      const out = join(dir, "layer.vhdx");
      const s = await convertTar((async function* () { yield tar; })(), out, { format: "vhdx", maxDiskSize: 64 * MiB + 100 });
      await qemuChecks(out, s.ext4Bytes);
      const full = await convertTar((async function* () { yield tar; })(), join(dir, "full.vhdx"), { format: "vhdx", maxDiskSize: 2 * MiB }).catch((e: unknown) => e);
      expect(isVhdError(full) && full.code).toBe("EXT4_DISK_FULL");
      const bad = await convertTar((async function* () { yield tar; })(), join(dir, "bad.vhdx"), { format: "qcow2" as "vhdx" }).catch((e: unknown) => e);
      expect(isVhdError(bad) && bad.code).toBe("INVALID_ARGUMENT");
      // Failures leave nothing behind.
      expect(await readdir(dir)).toEqual(["layer.vhdx"]);
    }));

  it("a truncated tar leaves no VHDX and no temporary file", () =>
    withTempDir("cvt-vhdx-trunc", async (dir) => {
      const err = await convertTar((async function* () { yield tar.subarray(0, 3 * 512 + 100); })(), join(dir, "t.vhdx"), { format: "vhdx" }).catch((e: unknown) => e);
      expect(isVhdError(err) && err.code).toBe("TAR_TRUNCATED");
      expect(await readdir(dir)).toEqual([]);
    }));
});

// Issue 4's round trip, through a VHDX container: convert every fixture tar with
// `format: "vhdx"`, check the file with qemu-img, export it, and compare GNU tar's extraction.
describe("export round trip through VHDX layers", () => {
  for (const f of fixtures) {
    it(f.name, () =>
      withTempDir(`vhdx-rt-${f.name}`, async (dir) => {
        const original = await f.build(dir);
        const image = join(dir, "layer.vhdx");
        const s = await convertTar(original, image, { ...(f.convert ?? {}), format: "vhdx" });
        await runOk("qemu-img", ["check", "-f", "vhdx", image]);
        expect(JSON.parse((await runOk("qemu-img", ["info", "--output=json", image])).stdout)["virtual-size"]).toBe(s.ext4Bytes);
        const exported = join(dir, "exported.tar");
        const rawOverlayXattrs = f.name.startsWith("xattrs-");
        await exportImage(image, exported, { keepWhiteouts: (f.convert?.keepWhiteouts ?? false) || rawOverlayXattrs });
        const expected = await expectedTree(original, { keepWhiteouts: true, workDir: join(dir, "want") });
        if (!f.convert?.keepWhiteouts) {
          for (const e of expected.entries) {
            if (/(^|\/)\.wh\./.test(e.path)) {
              e.unspecified = ["mode", "uid", "gid", "mtimeNs"];
              e.note = "whiteout attributes are not stored";
            }
          }
        }
        const got = join(dir, "got");
        await mkdir(got);
        await runOk("tar", [...GNU_TAR_EXTRACT, "-xf", exported, "-C", got]);
        assertTreesEqual(expected, await manifestOf(got), `${f.name}: extraction of the tar exported from the VHDX`);
      }));
  }
});
