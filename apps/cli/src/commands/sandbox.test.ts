// `lcow sandbox create`, and `lcow convert --format vhdx` followed by `lcow export` and
// `lcow inspect`, in-process against the real library; qemu-img is the oracle for the files.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../cli.js";
import type { CliIO } from "../io.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "lcow-cli-sandbox-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function io() {
  let out = "";
  let err = "";
  const cli: CliIO = {
    stdin: (async function* () {})(),
    stdout: { write: (s: string) => (out += s) },
    stdoutStream: new PassThrough(),
    stderr: { write: (s: string) => (err += s), isTTY: false, columns: 80 },
    cwd: dir,
  };
  return { io: cli, out: () => out, err: () => err };
}

const qemuInfo = (path: string) => JSON.parse(execFileSync("qemu-img", ["info", "-f", "vhdx", "--output=json", path]).toString());
const qemuCheck = (path: string) => execFileSync("qemu-img", ["check", "-f", "vhdx", path]).toString();

describe("lcow sandbox create", () => {
  it("makes a 20G sandbox by default and prints a summary", async () => {
    const t = io();
    expect(await run(["sandbox", "create", "s.vhdx"], t.io)).toBe(0);
    expect(t.out()).toMatch(/^created s\.vhdx\n {2}disk {6}20\.0 GiB dynamic VHDX, 1\.0 MiB blocks/);
    expect(qemuInfo(join(dir, "s.vhdx"))["virtual-size"]).toBe(20 * 2 ** 30);
    expect(qemuCheck(join(dir, "s.vhdx"))).toMatch(/No errors/);
  });

  it("takes --size, --scratch and --json; the JSON has every documented field", async () => {
    const t = io();
    expect(await run(["sandbox", "create", "small.vhdx", "--size", "512M", "--scratch", "--uuid", "0f8fad5b-d9cb-469f-a165-70867728950e", "--json"], t.io)).toBe(0);
    const j = JSON.parse(t.out());
    expect(Object.keys(j).sort()).toEqual(["allocatedBlocks", "blockSize", "diskBytes", "ext4Bytes", "fileBytes", "ok", "output", "seconds", "virtualSize"]);
    expect(j).toMatchObject({ ok: true, output: join(dir, "small.vhdx"), virtualSize: 512 * 2 ** 20, ext4Bytes: 512 * 2 ** 20, blockSize: 2 ** 20 });
    expect(qemuInfo(join(dir, "small.vhdx"))["virtual-size"]).toBe(512 * 2 ** 20);
    const i = io();
    expect(await run(["inspect", "small.vhdx", "--json"], i.io)).toBe(0);
    const info = JSON.parse(i.out());
    expect(info.ext4.uuid).toBe("0f8fad5b-d9cb-469f-a165-70867728950e");
    expect(info.entries).toEqual({ directory: 1 }); // lost+found only
  });

  it.each([
    [["--size", "1000"], "INVALID_ARGUMENT", /multiple of the 512-byte sector size/],
    [["--size", "100K"], "INVALID_ARGUMENT", /at least 1048576 bytes/],
    [["--size", "17T"], "INVALID_ARGUMENT", /at most/],
    [["--size", "lots"], "INVALID_ARGUMENT", /invalid --size 'lots'/],
    [["--block-size", "3M"], "INVALID_ARGUMENT", /blockSize 3145728 is not a power of two/],
  ])("%j fails with exit 1, one error line, the code in --json, and no file", async (flags, code, message) => {
    const t = io();
    expect(await run(["sandbox", "create", "bad.vhdx", ...flags, "--json"], t.io)).toBe(1);
    expect(t.err()).toMatch(/^lcow: error: .*\n$/);
    const j = JSON.parse(t.out());
    expect(j).toMatchObject({ ok: false, code });
    expect(j.message).toMatch(message);
    expect(existsSync(join(dir, "bad.vhdx"))).toBe(false);
    expect(readdirSync(dir).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("is a usage error (exit 2) without a subcommand, with an unknown one, or without <out.vhdx>", async () => {
    expect(await run(["sandbox"], io().io)).toBe(2);
    expect(await run(["sandbox", "make", "x.vhdx"], io().io)).toBe(2);
    expect(await run(["sandbox", "create"], io().io)).toBe(2);
    const h = io();
    expect(await run(["sandbox", "--help"], h.io)).toBe(0);
    expect(h.out()).toMatch(/^Usage: lcow sandbox create <out\.vhdx>/);
  });
});

describe("lcow convert --format vhdx, then export and inspect", () => {
  it("round-trips a tar through a VHDX layer", async () => {
    const src = join(dir, "tree");
    execFileSync("mkdir", ["-p", join(src, "etc"), join(src, "usr/bin")]);
    writeFileSync(join(src, "etc/hostname"), "lcow\n");
    writeFileSync(join(src, "usr/bin/tool"), Buffer.alloc(300_000, 9), { mode: 0o755 });
    execFileSync("ln", ["-s", "../etc/hostname", join(src, "usr/host")]);
    execFileSync("tar", ["--sort=name", "--owner=0", "--group=0", "--mtime=@1700000000", "-C", src, "-cf", join(dir, "in.tar"), "."]);

    const c = io();
    expect(await run(["convert", "in.tar", "-o", "layer.vhdx", "--format", "vhdx", "--json"], c.io)).toBe(0);
    const summary = JSON.parse(c.out());
    expect(qemuCheck(join(dir, "layer.vhdx"))).toMatch(/No errors/);
    expect(qemuInfo(join(dir, "layer.vhdx"))["virtual-size"]).toBe(summary.ext4Bytes);
    const human = io();
    expect(await run(["convert", "in.tar", "-o", "layer2.vhdx", "--format", "VHDX"], human.io)).toBe(0);
    expect(human.out()).toMatch(/dynamic VHDX holding ext4/);

    const e = io();
    expect(await run(["export", "layer.vhdx", "-o", "out.tar"], e.io)).toBe(0);
    const list = (tar: string) => execFileSync("tar", ["--numeric-owner", "-tvf", join(dir, tar)]).toString().trim().split("\n").map((l) => l.replace(/\s+/g, " ").replace(/ \.\/(?=\S)/, " ")).sort(); // export names have no ./ prefix
    expect(list("out.tar")).toEqual(list("in.tar"));
    const x = join(dir, "x");
    execFileSync("mkdir", [x]);
    execFileSync("tar", ["-C", x, "-xf", join(dir, "out.tar")]);
    execFileSync("diff", ["-r", "--no-dereference", src, x]);

    const i = io();
    expect(await run(["inspect", "layer.vhdx"], i.io)).toBe(0);
    expect(i.out()).toMatch(/container {2}vhdx/);
    expect(i.out()).toMatch(/vhdx {7}1\.0 MiB blocks, \d+ of \d+ allocated, 512\/4096-byte sectors, disk id [0-9a-f-]{36}, creator 'lcow'/);
  });

  it("refuses an unknown --format (exit 1) and --no-vhd with another format (exit 2)", async () => {
    const t = io();
    expect(await run(["convert", "--sample", "-o", "f.img", "--format", "qcow2"], t.io)).toBe(1);
    expect(t.err()).toMatch(/invalid --format 'qcow2': expected vhd, raw or vhdx/);
    expect(await run(["convert", "--sample", "-o", "f.img", "--format", "vhdx", "--no-vhd"], io().io)).toBe(2);
    expect(existsSync(join(dir, "f.img"))).toBe(false);
  });
});
