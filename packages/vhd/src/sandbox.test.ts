// createSandbox and SandboxCache: typed errors for bad sizes, the cache's file names, build-once
// under concurrency (in-process and across processes), independent copies, and nothing left
// behind (no lock, no temporary file) when a build fails. Real-tool checks of the files
// themselves (qemu-img, e2fsck, a read-write mount) are in test/sandbox*.test.ts.
import { spawn, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, open, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isVhdError } from "./errors.js";
import { Ext4Reader } from "./ext4/reader.js";
import { createVhdx, openVhdxSource } from "./vhdx/index.js";
import { createSandbox, DEFAULT_SANDBOX_SIZE, MAX_SANDBOX_SIZE, SandboxCache, type SandboxKind } from "./sandbox.js";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));

const MiB = 2 ** 20;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lcow-vhd-sandbox-unit-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isVhdError(err)) return err.code;
    throw err;
  }
  throw new Error("expected a rejection");
}

/** Names in the root directory of the ext4 filesystem inside a VHDX. */
async function rootNames(path: string): Promise<string[]> {
  const { source } = await openVhdxSource(path);
  try {
    const reader = await Ext4Reader.open(source);
    const entries = await reader.readDir(reader.root, await reader.readInode(reader.root));
    return entries.map((e) => e.name).sort();
  } finally {
    await source.close();
  }
}

describe("createSandbox", () => {
  it("defaults to 20 GiB (Docker's 20 GB lcow.sandboxsize), 1 MiB blocks, upper/ and work/ in the root", async () => {
    const path = join(dir, "default.vhdx");
    const s = await createSandbox(path);
    expect(DEFAULT_SANDBOX_SIZE).toBe(21474836480);
    expect(s).toMatchObject({ path, virtualSize: DEFAULT_SANDBOX_SIZE, ext4Bytes: DEFAULT_SANDBOX_SIZE, blockSize: MiB });
    expect(s.diskBytes).toBeLessThan(8 * MiB);
    expect(await rootNames(path)).toEqual(["lost+found", "upper", "work"]);
    // No temporary file is left next to it.
    expect((await readdir(dir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("takes other sizes, block sizes and root directories", async () => {
    const path = join(dir, "odd.vhdx");
    // A multiple of 512 but not of 4 KiB: the disk keeps the size, ext4 rounds down to its blocks.
    const s = await createSandbox(path, { size: 64 * MiB + 512, blockSize: 8 * MiB, directories: [] });
    expect(s).toMatchObject({ virtualSize: 64 * MiB + 512, ext4Bytes: 64 * MiB, blockSize: 8 * MiB });
    expect(await rootNames(path)).toEqual(["lost+found"]);
  });

  it("is byte-identical for the same uuid, timestamp and seed", async () => {
    const o = { size: 256 * MiB, uuid: "0f8fad5b-d9cb-469f-a165-70867728950e", timestamp: 1_700_000_000, seed: "s" };
    await createSandbox(join(dir, "d1.vhdx"), o);
    await createSandbox(join(dir, "d2.vhdx"), o);
    expect(Buffer.compare(await readFile(join(dir, "d1.vhdx")), await readFile(join(dir, "d2.vhdx")))).toBe(0);
  });

  it.each([
    ["not a multiple of the sector size", 20 * 2 ** 30 + 1],
    ["too small", 512 * 1024],
    ["zero", 0],
    ["negative", -MiB],
    ["a fraction", 1.5 * MiB + 0.5],
    ["beyond ext4's 2^32 blocks", MAX_SANDBOX_SIZE + 4096],
  ])("refuses a size that is %s with INVALID_ARGUMENT and writes nothing", async (_why, size) => {
    const path = join(dir, `bad-${size}.vhdx`);
    expect(await codeOf(createSandbox(path, { size }))).toBe("INVALID_ARGUMENT");
    expect(existsSync(path)).toBe(false);
  });

  it("refuses a bad block size or uuid with INVALID_ARGUMENT and leaves no temporary file", async () => {
    const sub = join(dir, "badopts");
    await mkdir(sub);
    expect(await codeOf(createSandbox(join(sub, "a.vhdx"), { size: 64 * MiB, blockSize: 3 * MiB }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(createSandbox(join(sub, "b.vhdx"), { size: 64 * MiB, uuid: "nope" }))).toBe("INVALID_ARGUMENT");
    expect(await readdir(sub)).toEqual([]);
  });

  it("reports a missing folder as IO", async () => {
    expect(await codeOf(createSandbox(join(dir, "no", "such", "x.vhdx"), { size: 64 * MiB }))).toBe("IO");
  });
});

describe("SandboxCache", () => {
  it("names blanks sandbox.vhdx / scratch.vhdx for the default size, size-qualified otherwise", () => {
    expect(SandboxCache.fileName("sandbox")).toBe("sandbox.vhdx");
    expect(SandboxCache.fileName("scratch", DEFAULT_SANDBOX_SIZE)).toBe("scratch.vhdx");
    expect(SandboxCache.fileName("sandbox", 30 * 2 ** 30)).toBe("sandbox-32212254720.vhdx");
    expect(() => SandboxCache.fileName("other" as SandboxKind)).toThrow(/expected "sandbox" or "scratch"/);
  });

  it("builds each blank once under concurrent first uses, then reuses it", async () => {
    const cacheDir = join(dir, "cache-once");
    const builds: string[] = [];
    const cache = new SandboxCache(cacheDir, { onBuild: (kind, size) => builds.push(`${kind}:${size}`) });
    const results = await Promise.all([
      ...Array.from({ length: 8 }, () => cache.ensure("sandbox")),
      ...Array.from({ length: 4 }, () => cache.ensure("scratch", 64 * MiB)),
    ]);
    expect(builds.sort()).toEqual([`sandbox:${DEFAULT_SANDBOX_SIZE}`, `scratch:${64 * MiB}`]);
    expect(new Set(results.map((r) => r.path))).toEqual(new Set([join(cacheDir, "sandbox.vhdx"), join(cacheDir, `scratch-${64 * MiB}.vhdx`)]));
    expect((await readdir(cacheDir)).sort()).toEqual(["sandbox.vhdx", `scratch-${64 * MiB}.vhdx`]);
    // The kinds differ only in the root directories.
    expect(await rootNames(join(cacheDir, "sandbox.vhdx"))).toEqual(["lost+found", "upper", "work"]);
    expect(await rootNames(join(cacheDir, `scratch-${64 * MiB}.vhdx`))).toEqual(["lost+found"]);
    // Later uses, and a fresh cache object over the same folder (another process), find it.
    expect(await cache.ensure("sandbox")).toEqual({ path: join(cacheDir, "sandbox.vhdx"), built: false });
    const again = new SandboxCache(cacheDir, { onBuild: () => builds.push("again") });
    expect(await again.get("sandbox")).toBe(join(cacheDir, "sandbox.vhdx"));
    expect(builds).toHaveLength(2);
  });

  it("copies blanks into independent files and says how it copied", async () => {
    const cacheDir = join(dir, "cache-copy");
    const cache = new SandboxCache(cacheDir);
    const layer = join(dir, "layer1");
    await mkdir(layer);
    const a = await cache.copyTo("sandbox", 64 * MiB, join(layer, "sandbox.vhdx"));
    const b = await cache.copyTo("sandbox", 64 * MiB, join(dir, "other.vhdx"));
    expect(a).toMatchObject({ path: join(layer, "sandbox.vhdx"), source: join(cacheDir, `sandbox-${64 * MiB}.vhdx`), built: true });
    expect(b.built).toBe(false);
    expect(["reflink", "copy"]).toContain(a.method);
    const blank = await readFile(a.source);
    expect(Buffer.compare(await readFile(a.path), blank)).toBe(0);
    // Writing to one copy changes neither the other nor the cache.
    const fh = await open(a.path, "r+");
    await fh.write(Buffer.alloc(4096, 0xab), 0, 4096, 8 * MiB);
    await fh.close();
    expect(Buffer.compare(await readFile(b.path), blank)).toBe(0);
    expect(Buffer.compare(await readFile(a.source), blank)).toBe(0);
    expect((await stat(a.path)).ino).not.toBe((await stat(a.source)).ino);
    // Replaces an existing destination; leaves no temporary file.
    await cache.copyTo("sandbox", 64 * MiB, a.path);
    expect(Buffer.compare(await readFile(a.path), blank)).toBe(0);
    expect(await readdir(layer)).toEqual(["sandbox.vhdx"]);
  });

  it("rebuilds a blank removed under it, and replaces a cached file that is not a blank of its size", async () => {
    const cacheDir = join(dir, "cache-bad");
    let builds = 0;
    const cache = new SandboxCache(cacheDir, { onBuild: () => builds++ });
    const path = await cache.get("scratch", 32 * MiB);
    await rm(path);
    expect((await cache.copyTo("scratch", 32 * MiB, join(dir, "scratch-copy.vhdx"))).built).toBe(true);
    expect(builds).toBe(2);
    // A foreign file under the cache's name (here: a blank of another size) is replaced once.
    await createSandbox(join(cacheDir, SandboxCache.fileName("scratch", 16 * MiB)), { size: 8 * MiB });
    const fresh = new SandboxCache(cacheDir, { onBuild: () => builds++ });
    const p = await fresh.get("scratch", 16 * MiB);
    const { source } = await openVhdxSource(p);
    expect(source.size).toBe(16 * MiB);
    await source.close();
    expect(builds).toBe(3);
  });

  it("leaves no lock and no temporary file when a build fails, and a later call can succeed", async () => {
    const cacheDir = join(dir, "cache-fail");
    const cache = new SandboxCache(cacheDir, { blockSize: 3 * MiB }); // not a power of two: the build fails
    const errors = await Promise.all(Array.from({ length: 3 }, () => codeOf(cache.get("sandbox", 64 * MiB))));
    expect(errors).toEqual(["INVALID_ARGUMENT", "INVALID_ARGUMENT", "INVALID_ARGUMENT"]);
    expect(await readdir(cacheDir)).toEqual([]);
    expect(await codeOf(cache.get("sandbox", 1000))).toBe("INVALID_ARGUMENT");
    const good = new SandboxCache(cacheDir);
    expect(await good.get("sandbox", 64 * MiB)).toBe(join(cacheDir, `sandbox-${64 * MiB}.vhdx`));
    expect(await readdir(cacheDir)).toEqual([`sandbox-${64 * MiB}.vhdx`]);
  });

  it("waits for a live lock held by another process, and removes a stale one", async () => {
    const cacheDir = join(dir, "cache-lock");
    await mkdir(cacheDir);
    const name = SandboxCache.fileName("sandbox", 64 * MiB);
    const lock = join(cacheDir, `.${name}.lock`);
    // A live lock: the "other process" publishes the blank, then drops its lock.
    await writeFile(lock, "other\n");
    let builds = 0;
    const cache = new SandboxCache(cacheDir, { onBuild: () => builds++ });
    const waiting = cache.ensure("sandbox", 64 * MiB);
    await new Promise((r) => setTimeout(r, 50));
    await createSandbox(join(cacheDir, name), { size: 64 * MiB });
    await rm(lock);
    expect(await waiting).toEqual({ path: join(cacheDir, name), built: false });
    expect(builds).toBe(0);
    // A stale lock (its owner crashed): removed once older than staleLockMs, then we build.
    const name2 = SandboxCache.fileName("scratch", 64 * MiB);
    const lock2 = join(cacheDir, `.${name2}.lock`);
    await writeFile(lock2, "crashed\n");
    const past = new Date(Date.now() - 60_000);
    await utimes(lock2, past, past);
    expect(await cache.ensure("scratch", 64 * MiB)).toEqual({ path: join(cacheDir, name2), built: true });
    expect((await readdir(cacheDir)).sort()).toEqual([name, name2].sort());
  });

  // Processes share nothing but the folder: the lock lets one build, the rest find its blank.
  it("builds a blank once when several processes ask for it at the same time", async () => {
    const bundle = join(dir, "sandbox-bundle.mjs");
    const esbuild = resolve(here, "../../../node_modules/.bin/esbuild");
    execFileSync(esbuild, [resolve(here, "sandbox.ts"), "--bundle", "--platform=node", "--format=esm", `--outfile=${bundle}`, "--log-level=warning"]);
    const cacheDir = join(dir, "cache-procs");
    const script = `import { SandboxCache } from ${JSON.stringify(bundle)};
const go = Date.now() + 300; while (Date.now() < go) {} // start together
const r = await new SandboxCache(${JSON.stringify(cacheDir)}).ensure("sandbox");
process.stdout.write(JSON.stringify(r));`;
    const outputs = await Promise.all(
      Array.from({ length: 4 }, () => {
        const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
        let out = "";
        child.stdout.on("data", (b: Buffer) => (out += b.toString()));
        return new Promise<{ path: string; built: boolean }>((res, rej) => child.on("close", (code) => (code === 0 ? res(JSON.parse(out)) : rej(new Error(`child exited ${code}`)))));
      }),
    );
    expect(outputs.filter((o) => o.built)).toHaveLength(1);
    expect(new Set(outputs.map((o) => o.path))).toEqual(new Set([join(cacheDir, "sandbox.vhdx")]));
    expect(await readdir(cacheDir)).toEqual(["sandbox.vhdx"]);
  });
});

// The converter's VHDX path relies on these: the disk is made at maxDiskSize, then shrunk.
describe("VhdxSink.setVirtualSize / setIdentity", () => {
  it("shrinks the disk and re-derives the GUIDs; refuses sizes that are bad or would drop data", async () => {
    const path = join(dir, "resize.vhdx");
    const sink = await createVhdx(path, { virtualSize: 64 * MiB, unallocatedState: "zero" });
    await sink.write(new Uint8Array(4096).fill(1), 5 * MiB);
    expect(await codeOf(sink.setVirtualSize(5 * MiB))).toBe("INVALID_ARGUMENT"); // block 5 holds data
    expect(await codeOf(sink.setVirtualSize(128 * MiB))).toBe("INVALID_ARGUMENT"); // larger than created
    expect(await codeOf(sink.setVirtualSize(6 * MiB + 100))).toBe("INVALID_ARGUMENT"); // not a sector multiple
    await sink.setVirtualSize(6 * MiB + 512);
    await sink.setIdentity("layer");
    await sink.close();
    const { source } = await openVhdxSource(path);
    expect(source.size).toBe(6 * MiB + 512);
    expect(source.info.allocatedBlocks).toBe(1);
    const diskId = source.info.virtualDiskId;
    await source.close();
    const again = await createVhdx(join(dir, "resize2.vhdx"), { virtualSize: 6 * MiB + 512, seed: "layer", unallocatedState: "zero" });
    const { source: s2 } = await openVhdxSource(again.path);
    expect(s2.info.virtualDiskId).toBe(diskId);
    await s2.close();
    await again.close();
  });
});
