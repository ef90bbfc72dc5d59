// Self-test of the acceptance harness (STYLE 11: every assertion must be able to fail).
// It runs the pipeline against a stand-in converter (GNU tar + mkfs.ext4 -d) and shows that the
// pipeline passes on a correct image and fails, naming the field, on a deliberately corrupted one.
// The stand-in is not an oracle for the real converter; it only proves the comparator works.
import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  applyLayerSemantics, compareTrees, convertWithMkfs, e2fsckClean, encodeFooter, loopDevicesFor, manifestOf, manifestViaDebugfs,
  qemuVirtualSize, run, runOk, specGeometry, verifyConversion, vhdChecks, withLoopMount, withTempDir,
  type Converter, type ExpectedEntry, type Manifest, type ManifestEntry,
} from "./harness/index.js";
import { fixtures, sparseChecks } from "./fixtures/index.js";

const standIn = (workDir: string, after?: (img: string) => Promise<void>): Converter => async (tar, out, o) => {
  await convertWithMkfs(tar, out, workDir, { vhd: o.vhd ?? true });
  await after?.(out);
};
/** Modifies an image in place with `debugfs -w` (the VHD footer after the ext4 is left alone). */
const debugfsWrite = (...cmds: string[]) => async (img: string) => {
  for (const c of cmds) await runOk("debugfs", ["-w", "-R", c, img]);
};
const fixture = (name: string) => {
  const f = fixtures.find((x) => x.name === name);
  if (!f) throw new Error(`no fixture ${name}`);
  return f;
};

describe("harness self-test: stand-in converter (mkfs.ext4 -d)", () => {
  for (const name of ["gnu-tar-ustar", "gnu-tar-gnu"]) {
    it(`passes every check on a correct image (${name})`, () =>
      withTempDir("selftest", async (dir) => {
        const tar = await fixture(name).build(dir);
        const r = await verifyConversion(tar, { workDir: dir, converter: standIn(dir), crossCheckDebugfs: true });
        expect(r.actual.entries.length).toBeGreaterThan(20);
      }));
  }

  const corruptions: Array<[string, (img: string) => Promise<void>, RegExp]> = [
    ["a mode", debugfsWrite("sif /etc/passwd mode 0100600"), /etc\/passwd \(file\): mode 0o600, want 0o644/],
    ["a setuid bit", debugfsWrite("sif /usr/bin/su mode 0100755"), /usr\/bin\/su \(file\): mode 0o755, want 0o4755/],
    ["an owner", debugfsWrite("sif /etc/shadow gid 43"), /etc\/shadow \(file\): gid 43, want 42/],
    ["an mtime", debugfsWrite("sif /empty mtime 200001010000"), /empty \(file\): mtimeNs/],
    ["an xattr", debugfsWrite("ea_set /etc/passwd user.extra value"), /etc\/passwd \(file\): xattrs \{"user.extra":"76616c7565"\}, want \{\}/],
    ["a symlink target", debugfsWrite("rm /lib", "symlink /lib usr/lib64"), /lib \(symlink\): .*target "usr\/lib64", want "usr\/lib"/],
    ["a missing entry", debugfsWrite("rm /empty"), /- empty: missing from image/],
    ["an extra entry", debugfsWrite("mkdir /surprise"), /\+ surprise: in image but not expected/],
    ["a hard link split", debugfsWrite("rm /usr/bin/tool-hardlink", "sif /usr/bin/tool links_count 1"), /- usr\/bin\/tool-hardlink: missing/],
    ["a byte of content", async (img) => {
      const bmap = await runOk("debugfs", ["-R", "bmap /etc/passwd 0", img]);
      const fh = await open(img, "r+");
      await fh.write(Buffer.from("R"), 0, 1, Number(bmap.stdout.trim()) * 4096 + 1);
      await fh.close();
    }, /etc\/passwd \(file\): sha256/],
  ];
  for (const [what, corrupt, message] of corruptions) {
    it(`fails when ${what} is corrupted`, () =>
      withTempDir("selftest-corrupt", async (dir) => {
        const tar = await fixture("gnu-tar-ustar").build(dir);
        await expect(verifyConversion(tar, { workDir: dir, converter: standIn(dir, corrupt), determinism: false })).rejects.toThrow(message);
      }));
  }

  it("fails the debugfs comparison too (no mount)", () =>
    withTempDir("selftest-debugfs", async (dir) => {
      const tar = await fixture("gnu-tar-ustar").build(dir);
      await verifyConversion(tar, { workDir: join(dir, "ok"), converter: standIn(dir), mount: false, determinism: false });
      await expect(verifyConversion(tar, { workDir: join(dir, "bad"), converter: standIn(dir, debugfsWrite("sif /etc/passwd uid 5")), mount: false, determinism: false }))
        .rejects.toThrow(/\(debugfs\)[\s\S]*etc\/passwd \(file\): uid 5, want 0/);
    }));

  it("fails e2fsck on an inconsistent filesystem", () =>
    withTempDir("selftest-fsck", async (dir) => {
      const tar = await fixture("gnu-tar-ustar").build(dir);
      await expect(verifyConversion(tar, { workDir: dir, converter: standIn(dir, debugfsWrite("sif /etc/passwd links_count 3")), determinism: false }))
        .rejects.toThrow(/e2fsck is not clean[\s\S]*exited with 4/);
    }));

  it("fails the determinism check when two conversions differ", () =>
    withTempDir("selftest-determinism", async (dir) => {
      const tar = await fixture("gnu-tar-ustar").build(dir);
      let n = 0;
      const flaky: Converter = standIn(dir, async (img) => {
        if (n++ === 1) await debugfsWrite("ssv mtime 20200101")(img);
      });
      await expect(verifyConversion(tar, { workDir: dir, converter: flaky })).rejects.toThrow(/two conversions .* differ: .* differ: byte/);
    }));

  it("fails when a converter leaves a temp file next to the output", () =>
    withTempDir("selftest-leftover", async (dir) => {
      const tar = await fixture("gnu-tar-ustar").build(dir);
      const leaky = standIn(dir, async (img) => writeFile(`${img}.tmp-1234`, "x"));
      await expect(verifyConversion(tar, { workDir: dir, converter: leaky })).rejects.toThrow(/output folder holds .*tmp-1234/);
    }));
});

describe("harness self-test: VHD footer and qemu-img", () => {
  it("spec CHS geometry: known values", () => {
    // 8 MiB = 16384 sectors: 17 sectors/track, 963 cylinder*heads -> 4 heads, 240 cylinders;
    // the spec caps at 65535 cylinders x 16 heads x 255 sectors.
    expect(specGeometry(8n << 20n)).toEqual({ cylinders: 240, heads: 4, sectorsPerTrack: 17 });
    expect(specGeometry(1n << 40n)).toEqual({ cylinders: 65535, heads: 16, sectorsPerTrack: 255 });
  });

  /**
   * Finding for the footer's creator application (qemu-img 7.2, block/vpc.c): qemu takes the
   * disk size from the footer's current_size only for creators it knows to do so ("win ",
   * "qem2", "d2v ", "tap\0", "CTXS") or when CHS is the maximum 65535/16/255; for any other
   * creator ("lcow", "vpc ", "qemu") it uses cylinders x heads x sectors x 512, which is smaller
   * than the ext4 image unless the size happens to be CHS-aligned, so `qemu-img convert` would
   * silently truncate the filesystem. Our footer must therefore say "win " (what Hyper-V writes).
   */
  it("qemu-img info honours current_size only for known creators", () =>
    withTempDir("qemu-creator", async (dir) => {
      const size = 5003 * 4096; // not CHS-aligned
      const table: Record<string, number> = {};
      for (const app of ["lcow", "win ", "qem2", "vpc ", "qemu", "d2v "]) {
        const p = join(dir, "probe.vhd");
        await writeFile(p, Buffer.alloc(size));
        await writeFile(p, encodeFooter(BigInt(size), { creatorApplication: app }), { flag: "a" });
        table[app] = (await qemuVirtualSize(p)).virtualSize;
      }
      const g = specGeometry(BigInt(size));
      const chs = g.cylinders * g.heads * g.sectorsPerTrack * 512;
      expect(table).toEqual({ lcow: chs, "win ": size, qem2: size, "vpc ": chs, qemu: chs, "d2v ": size });
      expect(chs).toBeLessThan(size);
    }));

  it("vhdChecks fails on a bad checksum, a wrong size, and a creator qemu sizes by CHS", () =>
    withTempDir("vhd-checks", async (dir) => {
      const size = 2049 * 4096;
      const make = async (name: string, footer: Uint8Array) => {
        const p = join(dir, name);
        await writeFile(p, Buffer.alloc(size, 7));
        await writeFile(p, footer, { flag: "a" });
        return p;
      };
      await vhdChecks(await make("good.vhd", encodeFooter(BigInt(size), { creatorApplication: "win " })), dir);
      const bad = encodeFooter(BigInt(size), { creatorApplication: "win " });
      bad[100] = 1;
      await expect(vhdChecks(await make("sum.vhd", bad), dir)).rejects.toThrow(/footer checksum[\s\S]*qemu-img info -f vpc failed: .*Incorrect header checksum/);
      await expect(vhdChecks(await make("size.vhd", encodeFooter(BigInt(size - 4096), { creatorApplication: "win " })), dir)).rejects.toThrow(/footer current size/);
      await expect(vhdChecks(await make("chs.vhd", encodeFooter(BigInt(size), { creatorApplication: "lcow" })), dir)).rejects.toThrow(/virtual-size \(creator "lcow"\): got \d+, want 8392704[\s\S]*raw output size/);
    }));
});

describe("harness self-test: comparator on tampered manifests", () => {
  const base: ManifestEntry[] = [
    { path: ".", type: "dir", mode: 0o755, uid: 0, gid: 0, mtimeNs: "1", nlink: 3, ino: 2, blocks: 8, xattrs: {} },
    { path: "f", type: "file", mode: 0o644, uid: 1, gid: 2, mtimeNs: "-1500000000", nlink: 2, ino: 12, blocks: 8, size: 3, sha256: "ab", xattrs: { "user.a": "00" }, linkGroup: "f" },
    { path: "g", type: "file", mode: 0o644, uid: 1, gid: 2, mtimeNs: "-1500000000", nlink: 2, ino: 12, blocks: 8, size: 3, sha256: "ab", xattrs: { "user.a": "00" }, linkGroup: "f" },
    { path: "s", type: "symlink", mode: 0o777, uid: 0, gid: 0, mtimeNs: "5", nlink: 1, ino: 13, blocks: 0, size: 1, target: "f", xattrs: {} },
    { path: "c", type: "char", mode: 0o600, uid: 0, gid: 0, mtimeNs: "5", nlink: 1, ino: 14, blocks: 0, rdevMajor: 1, rdevMinor: 3, xattrs: {} },
  ];
  const clone = (): Manifest => ({ entries: structuredClone(base) });
  const cases: Array<[string, (m: Manifest) => void, RegExp]> = [
    ["type", (m) => { m.entries[4]!.type = "block"; }, /c \(char\): type "block", want "char"/],
    ["mode", (m) => { m.entries[1]!.mode = 0o4644; }, /f \(file\): mode 0o4644, want 0o644/],
    ["uid", (m) => { m.entries[1]!.uid = 0; }, /uid 0, want 1/],
    ["gid", (m) => { m.entries[1]!.gid = 0; }, /gid 0, want 2/],
    ["mtime by one nanosecond", (m) => { m.entries[1]!.mtimeNs = "-1499999999"; }, /mtimeNs "-1499999999", want "-1500000000"/],
    ["size", (m) => { m.entries[1]!.size = 4; }, /size 4, want 3/],
    ["sha256", (m) => { m.entries[1]!.sha256 = "cd"; }, /sha256 "cd", want "ab"/],
    ["symlink target", (m) => { m.entries[3]!.target = "g"; }, /target "g", want "f"/],
    ["device minor", (m) => { m.entries[4]!.rdevMinor = 4; }, /rdevMinor 4, want 3/],
    ["xattr value", (m) => { m.entries[1]!.xattrs = { "user.a": "01" }; }, /xattrs \{"user.a":"01"\}, want \{"user.a":"00"\}/],
    ["xattr missing", (m) => { m.entries[1]!.xattrs = {}; }, /xattrs \{\}, want/],
    ["hard-link identity", (m) => { m.entries[2]!.linkGroup = undefined; m.entries[1]!.linkGroup = undefined; m.entries[1]!.nlink = 1; }, /f \(file\): nlink 1, want 2; linkGroup \(none\), want "f"/],
    ["missing entry", (m) => { m.entries.splice(3, 1); }, /- s: missing from image/],
    ["extra entry", (m) => { m.entries.push({ ...base[3]!, path: "t" }); }, /\+ t: in image/],
  ];
  it("passes on identical manifests and ignores lost+found", () => {
    const a = clone();
    a.entries.push({ ...base[0]!, path: "lost+found", mode: 0o700 });
    expect(compareTrees(clone(), a).lines).toEqual([]);
  });
  for (const [what, tamper, message] of cases) {
    it(`catches a different ${what}`, () => {
      const actual = clone();
      tamper(actual);
      const d = compareTrees(clone(), actual);
      expect(d.ok).toBe(false);
      expect(d.lines.join("\n")).toMatch(message);
    });
  }
  it("applies the whiteout mapping and the implicit-directory rule", () => {
    const m: Manifest<ExpectedEntry> = { entries: [
      { ...base[0]! },
      { path: "d", type: "dir", mode: 0o700, uid: 5, gid: 5, mtimeNs: "9", nlink: 2, ino: 20, blocks: 8, xattrs: {} },
      { path: "d/.wh..wh..opq", type: "file", mode: 0o644, uid: 0, gid: 0, mtimeNs: "1", nlink: 1, ino: 21, blocks: 0, size: 0, sha256: "e3", xattrs: {} },
      { path: "d/.wh.x", type: "file", mode: 0o644, uid: 0, gid: 0, mtimeNs: "1", nlink: 1, ino: 22, blocks: 0, size: 0, sha256: "e3", xattrs: {} },
    ] };
    const out = applyLayerSemantics(m, new Set([".", "d/.wh..wh..opq", "d/.wh.x"]), false);
    expect(out.entries.map((e) => [e.path, e.type, e.mode, e.uid, e.xattrs])).toEqual([
      [".", "dir", 0o755, 0, {}],
      ["d", "dir", 0o755, 0, { "trusted.overlay.opaque": "79" }],
      ["d/x", "char", 0, 0, {}],
    ]);
    expect(out.entries[1]!.unspecified).toEqual(["mtimeNs"]);
  });
});

describe("harness self-test: sparse check", () => {
  it("fails when a hole is allocated", async () => {
    const e = (path: string, blocks: number): ManifestEntry => ({ path, type: "file", mode: 0o644, uid: 0, gid: 0, mtimeNs: "0", nlink: 1, ino: 1, blocks, xattrs: {} });
    const ctx = (b: number) => ({ imagePath: "", expected: { entries: [] }, actual: { entries: [e("sparse-1g", b), e("sparse-many", 16), e("sparse-tail-hole", 8)] } });
    await sparseChecks(ctx(16));
    await expect(sparseChecks(ctx(2 * 1024 * 1024))).rejects.toThrow(/sparse-1g must not allocate its holes/);
  });
});

describe("harness self-test: loop mounts", () => {
  it("unmounts and detaches when the callback throws", () =>
    withTempDir("loop", async (dir) => {
      const img = join(dir, "img");
      await runOk("mkfs.ext4", ["-q", "-F", "-b", "4096", img, "8M"]);
      let seen = "";
      await expect(withLoopMount(img, { sizelimit: 8 << 20 }, async (mp) => {
        seen = mp;
        expect((await manifestOf(mp)).entries.map((e) => e.path)).toContain("lost+found");
        throw new Error("boom");
      })).rejects.toThrow("boom");
      expect(await loopDevicesFor(img)).toEqual([]);
      expect((await run("mountpoint", ["-q", seen])).code).not.toBe(0);
      await e2fsckClean(img);
      expect((await manifestViaDebugfs(img, dir)).entries.map((e) => e.path)).toEqual([".", "lost+found"]);
    }));
});
