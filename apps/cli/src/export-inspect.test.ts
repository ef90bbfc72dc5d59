// `lcow export` and `lcow inspect` in-process against the real library: a sample layer is
// converted, then read back.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "./cli.js";
import type { CliIO } from "./io.js";

let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lcow-cli-export-"));
  expect(await run(["convert", "--sample", "-o", join(dir, "layer.vhd")], io().io)).toBe(0);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function io() {
  let out = "";
  let err = "";
  const bytes: Buffer[] = [];
  const stream = new PassThrough();
  stream.on("data", (b: Buffer) => bytes.push(b));
  const cli: CliIO = {
    stdin: (async function* () {})(),
    stdout: { write: (s: string) => (out += s) },
    stdoutStream: stream,
    stderr: { write: (s: string) => (err += s), isTTY: false, columns: 80 },
    cwd: dir,
  };
  return { io: cli, out: () => out, err: () => err, bytes: () => Buffer.concat(bytes) };
}

describe("lcow export", () => {
  it("writes the layer back as a tar GNU tar reads, whiteouts as .wh. entries", async () => {
    const t = io();
    expect(await run(["export", "layer.vhd", "-o", "layer.tar", "--json"], t.io)).toBe(0);
    const summary = JSON.parse(t.out());
    expect(summary).toMatchObject({ ok: true, entries: expect.objectContaining({ whiteout: 1, opaque: 1 }) });
    const names = execFileSync("tar", ["-tf", join(dir, "layer.tar")]).toString().split("\n");
    expect(names).toContain("./");
    expect(names.some((n) => n.endsWith("/.wh..wh..opq"))).toBe(true);
    expect(names.some((n) => /\/\.wh\.[^/]+$/.test(n) && !n.endsWith(".opq"))).toBe(true);
  });

  it("streams to stdout, gzip-compressed with -z, and keeps the summary off it", async () => {
    const t = io();
    expect(await run(["export", "layer.vhd", "-z"], t.io)).toBe(0);
    const gz = t.bytes();
    expect(gz[0]).toBe(0x1f);
    expect(execFileSync("tar", ["-tzf", "-"], { input: gz }).toString()).toContain("./");
    expect(t.out()).toBe("");
  });

  it("exports a subtree with --path, names relative to it", async () => {
    const t = io();
    expect(await run(["export", "layer.vhd", "--path", "etc", "--no-root-entry", "-o", "etc.tar"], t.io)).toBe(0);
    const names = execFileSync("tar", ["-tf", join(dir, "etc.tar")]).toString().trim().split("\n");
    expect(names.length).toBeGreaterThan(0);
    expect(names.every((n) => !n.startsWith("etc/") && n !== "./")).toBe(true);
  });

  it("fails with one line and exit 1 on a missing image, leaving no file", async () => {
    const t = io();
    expect(await run(["export", "missing.vhd", "-o", "x.tar"], t.io)).toBe(1);
    expect(t.err()).toMatch(/^lcow: error: cannot open .*missing\.vhd.*\n$/);
    expect(execFileSync("ls", [dir]).toString()).not.toContain("x.tar");
  });
});

describe("lcow inspect", () => {
  it("reports the container, features, entries and largest files as JSON", async () => {
    const t = io();
    expect(await run(["inspect", "layer.vhd", "--json", "--largest", "2"], t.io)).toBe(0);
    const info = JSON.parse(t.out());
    expect(info.container).toMatchObject({ format: "vhd", vhd: { creatorApplication: "lcow" } });
    expect(info.ext4.features).toEqual(expect.arrayContaining(["extent", "flex_bg", "sparse_super2"]));
    expect(info.largest).toHaveLength(2);
    expect(info.largest[0].size).toBeGreaterThanOrEqual(info.largest[1].size);
    expect(info.entries.whiteout).toBe(1);
  });

  it("prints a human summary, and a usage error for a bad --largest", async () => {
    const t = io();
    expect(await run(["inspect", "layer.vhd"], t.io)).toBe(0);
    expect(t.out()).toMatch(/container {2}vhd/);
    expect(await run(["inspect", "layer.vhd", "--largest", "x"], io().io)).toBe(2);
  });
});

describe("lcow check", () => {
  it("checks a VHDX layer too", async () => {
    expect(await run(["convert", "--sample", "--format", "vhdx", "-o", "layer.vhdx"], io().io)).toBe(0);
    const t = io();
    expect(await run(["check", "layer.vhdx", "--json"], t.io)).toBe(0);
    expect(JSON.parse(t.out())).toMatchObject({ format: "vhdx", ok: true });
  });

  it("exits 0 on a clean image and 1 with the findings on a damaged one", async () => {
    const t = io();
    expect(await run(["check", "layer.vhd"], t.io)).toBe(0);
    expect(t.out()).toMatch(/layer\.vhd: vhd, clean/);
    const damaged = join(dir, "damaged.vhd");
    execFileSync("cp", [join(dir, "layer.vhd"), damaged]);
    execFileSync("debugfs", ["-w", "-R", "sif /etc links_count 9", damaged], { stdio: "ignore" });
    const bad = io();
    expect(await run(["check", "damaged.vhd", "--json"], bad.io)).toBe(1);
    const report = JSON.parse(bad.out());
    expect(report.ok).toBe(false);
    expect(report.findings.map((f: { code: string }) => f.code)).toContain("LINK_COUNT");
  });
});
