// The built `lcow` binary, spawned as a user would run it: exit codes, stdout/stderr contents,
// and what is left on disk. Builds apps/cli (and @lcow/vhd if it has never been built) first.

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { sampleEntries, sampleLayer, ustarHeader, type SampleEntry } from "../src/sample.js";

const CLI_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
const MAIN = join(CLI_DIR, "dist/main.js");
const VHD_DIR = join(CLI_DIR, "../../packages/vhd");

beforeAll(() => {
  // `pnpm test` builds everything first (turbo); a bare `vitest run` may find no dist yet.
  if (!existsSync(join(VHD_DIR, "dist/index.js"))) execFileSync("npx", ["tsup"], { cwd: VHD_DIR, stdio: "pipe" });
  execFileSync("npx", ["tsup"], { cwd: CLI_DIR, stdio: "pipe" });
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `args`, feeding `stdin` (closed at once when not given). */
function lcow(
  args: string[],
  opts: { cwd: string; stdin?: Uint8Array | "keep-open"; closeStdout?: boolean; onSpawn?: (child: ReturnType<typeof spawn>) => void },
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd: opts.cwd, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    if (opts.closeStdout) child.stdout.destroy();
    child.stdin.on("error", () => {}); // the CLI may exit before reading what we offer
    if (opts.stdin instanceof Uint8Array) child.stdin.end(opts.stdin);
    else if (opts.stdin === undefined) child.stdin.end();
    opts.onSpawn?.(child);
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "lcow-e2e-"));
});

describe("lcow binary", () => {
  it("is an executable ESM file with a node shebang", () => {
    expect(readFileSync(MAIN, "utf8").startsWith("#!/usr/bin/env node\n")).toBe(true);
  });

  it("--version prints the package version", async () => {
    const r = await lcow(["--version"], { cwd: dir });
    const pkg = JSON.parse(readFileSync(join(CLI_DIR, "package.json"), "utf8")) as { version: string };
    expect(r).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: "" });
  });

  it("exits 2 with usage on an unknown flag or command", async () => {
    const r = await lcow(["convert", "x.tar", "-o", "x.vhd", "--frob"], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^lcow: error: Unknown option '--frob'\n\nUsage: lcow convert/);
    expect(r.stdout).toBe("");
    const c = await lcow(["frob"], { cwd: dir });
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/^lcow: error: unknown command 'frob'\n/);
  });

  it("reports a missing input file as one error line and one JSON object, and writes nothing", async () => {
    const r = await lcow(["convert", "nope.tar.gz", "-o", "out.vhd", "--json"], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("lcow: error: cannot open 'nope.tar.gz': no such file or directory (ENOENT)\n");
    expect(JSON.parse(r.stdout)).toEqual({
      ok: false,
      code: "IO",
      message: "cannot open 'nope.tar.gz': no such file or directory (ENOENT)",
      path: "nope.tar.gz",
      offset: null,
    });
    expect(readdirSync(dir)).toEqual([]);
  });

  it("rejects a bad --max-size with exit 1 before reading stdin", async () => {
    const r = await lcow(["convert", "-", "-o", "out.vhd", "--max-size", "lots"], { cwd: dir, stdin: "keep-open" });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("lcow: error: invalid --max-size 'lots': expected a size like 128G, 512M, 1T, 2GiB or a number of bytes\n");
    expect(readdirSync(dir)).toEqual([]);
  });

  it("reports a closed stdout (EPIPE) as an IO error instead of crashing", async () => {
    const r = await lcow(["convert", "--help"], { cwd: dir, closeStdout: true });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("lcow: error: cannot write stdout: broken pipe (EPIPE)\n");
  });
});

async function sampleTar(): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of sampleLayer()) parts.push(c);
  return Buffer.concat(parts);
}

/** A tar of `entries` built with the sample's ustar writer. */
function tarOf(entries: SampleEntry[]): Buffer {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    parts.push(ustarHeader(e));
    if (e.data !== undefined && e.data.length > 0) parts.push(e.data, new Uint8Array((512 - (e.data.length % 512)) % 512));
  }
  parts.push(new Uint8Array(1024));
  return Buffer.concat(parts);
}

/** e2fsck -fn on the ext4 part of an image: exit 0 means a clean, consistent filesystem. */
function fsck(image: string, ext4Bytes: number): void {
  const raw = `${image}.ext4`;
  writeFileSync(raw, readFileSync(image).subarray(0, ext4Bytes));
  execFileSync("e2fsck", ["-fn", raw], { stdio: "pipe" });
}

const PIN = ["--uuid", "6f1d3b2a-8e3c-4b7a-9c1d-2e3f4a5b6c7d", "--timestamp", "1700000000"];

describe("lcow convert with the real converter", () => {
  it("converts the sample to a VHD that e2fsck accepts, and reports it as one JSON object", async () => {
    const r = await lcow(["convert", "--sample", "-o", "layer.vhd", "--json"], { cwd: dir });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ ok: true, output: join(dir, "layer.vhd"), bytesIn: (await sampleTar()).length });
    const total = Object.values(j.entries as Record<string, number>).reduce((a, b) => a + b, 0);
    expect(total).toBe(sampleEntries().length);
    expect(j.entries).toMatchObject({ symlink: 1, hardlink: 1, whiteout: 1, opaque: 1 });
    const file = join(dir, "layer.vhd");
    expect(statSync(file).size).toBe(j.imageBytes);
    expect(j.imageBytes).toBe(j.ext4Bytes + 512);
    expect(readFileSync(file).subarray(j.ext4Bytes, j.ext4Bytes + 8).toString()).toBe("conectix");
    expect(j.peakRssBytes).toBeGreaterThan(0);
    fsck(file, j.ext4Bytes);
    expect(readdirSync(dir).sort()).toEqual(["layer.vhd", "layer.vhd.ext4"]);
  });

  it("prints the human summary and no progress when stderr is not a terminal", async () => {
    const r = await lcow(["convert", "--sample", "-o", "layer.vhd"], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^converted <sample> -> layer\.vhd\n {2}entries {3}17 \(.*1 whiteout, 1 opaque dir\)\n {2}tar in {4}\d+\.\d KiB\n {2}image {5}.* \+ 512-byte VHD footer\)\n {2}time {6}.*MiB\/s\)\n$/);
  });

  it("--no-vhd writes the bare ext4 image", async () => {
    const r = await lcow(["convert", "--sample", "-o", "layer.ext4", "--no-vhd", "--json"], { cwd: dir });
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.imageBytes).toBe(j.ext4Bytes);
    expect(statSync(join(dir, "layer.ext4")).size).toBe(j.ext4Bytes);
    execFileSync("e2fsck", ["-fn", join(dir, "layer.ext4")], { stdio: "pipe" });
  });

  it("gives the same image for a plain file, gzip on stdin and a zstd file", async () => {
    const tar = await sampleTar();
    writeFileSync(join(dir, "layer.tar"), tar);
    writeFileSync(join(dir, "layer.tar.zst"), execFileSync("zstd", ["-c", "-q"], { input: tar }));
    const gz = execFileSync("gzip", ["-c"], { input: tar });
    const a = await lcow(["convert", "layer.tar", "-o", "a.vhd", ...PIN], { cwd: dir });
    const b = await lcow(["convert", "-", "-o", "b.vhd", ...PIN], { cwd: dir, stdin: gz });
    const c = await lcow(["convert", "layer.tar.zst", "-o", "c.vhd", ...PIN], { cwd: dir });
    for (const r of [a, b, c]) expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(b.stdout).toMatch(/^converted <stdin> -> b\.vhd\n/);
    const image = readFileSync(join(dir, "a.vhd"));
    expect(readFileSync(join(dir, "b.vhd")).equals(image)).toBe(true);
    expect(readFileSync(join(dir, "c.vhd")).equals(image)).toBe(true);
  });

  it("fails a stdin closed mid-entry with TAR_TRUNCATED, one error line, and no file left", async () => {
    const tar = await sampleTar();
    const r = await lcow(["convert", "-", "-o", "out.vhd", "--json"], { cwd: dir, stdin: tar.subarray(0, 5000) });
    expect(r.code).toBe(1);
    expect(r.stderr.split("\n")).toHaveLength(2); // one line and its newline
    expect(r.stderr).toMatch(/^lcow: error: .+\n$/);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, code: "TAR_TRUNCATED" });
    expect(readdirSync(dir)).toEqual([]);
  });

  it("fails corrupt gzip with COMPRESSION_INVALID and no file left", async () => {
    const gz = execFileSync("gzip", ["-c"], { input: await sampleTar() });
    for (let i = 100; i < 200; i++) gz[i] = (gz[i] as number) ^ 0xa5;
    writeFileSync(join(dir, "bad.tar.gz"), gz);
    const r = await lcow(["convert", "bad.tar.gz", "-o", "out.vhd", "--json"], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^lcow: error: gzip: corrupt input near compressed byte \d+: .+\n$/);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, code: "COMPRESSION_INVALID" });
    expect(readdirSync(dir)).toEqual(["bad.tar.gz"]);
  });

  it("fails a layer that does not fit --max-size with EXT4_DISK_FULL and no file left", async () => {
    const big = new Uint8Array(3 * 1024 * 1024).fill(0x41);
    writeFileSync(join(dir, "big.tar"), tarOf([{ name: "big.bin", type: "file", mode: 0o644, data: big }]));
    const r = await lcow(["convert", "big.tar", "-o", "out.vhd", "--max-size", "1M", "--json"], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^lcow: error: .+\n$/);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, code: "EXT4_DISK_FULL" });
    expect(readdirSync(dir)).toEqual(["big.tar"]);
  });

  it("prints warnings on stderr, and --strict turns them into a failure", async () => {
    const text = new TextEncoder().encode("hi\n");
    writeFileSync(join(dir, "abs.tar"), tarOf([{ name: "/abs.txt", type: "file", mode: 0o644, data: text }]));
    const r = await lcow(["convert", "abs.tar", "-o", "out.vhd", "--json"], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^warning: TAR_ABSOLUTE_PATH: .*abs\.txt.*\n$/);
    expect(JSON.parse(r.stdout).ok).toBe(true);

    const s = await lcow(["convert", "abs.tar", "-o", "strict.vhd", "--strict", "--json"], { cwd: dir });
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/^lcow: error: .*abs\.txt.*\n$/);
    expect(JSON.parse(s.stdout)).toMatchObject({ ok: false });
    expect(readdirSync(dir).sort()).toEqual(["abs.tar", "out.vhd"]);
  });

  it("reports a closed stdout after a successful conversion as EPIPE", async () => {
    const r = await lcow(["convert", "--sample", "-o", "layer.vhd", "--json"], { cwd: dir, closeStdout: true });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("lcow: error: cannot write stdout: broken pipe (EPIPE)\n");
  });

  it("on SIGINT stops, exits 130 and leaves no temporary file", async () => {
    // stdin stays open after part of a tar, so the converter is mid-stream when the signal comes.
    const tar = await sampleTar();
    const r = await lcow(["convert", "-", "-o", "out.vhd"], {
      cwd: dir,
      stdin: "keep-open",
      onSpawn: (child) => {
        child.stdin?.write(tar.subarray(0, 4096));
        setTimeout(() => child.kill("SIGINT"), 700);
      },
    });
    expect(r.code).toBe(130);
    expect(r.stderr).toBe("lcow: error: interrupted\n");
    expect(readdirSync(dir)).toEqual([]);
  });
});
