// The CLI's wiring, in-process, with @lcow/vhd's convertTar replaced by a fake: flags to options,
// input selection (file, stdin, sample), progress, warnings, summary, --json and error mapping.
// test/e2e.test.ts runs the built binary against the real converter.

import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { ConvertOptions, ConvertSummary } from "@lcow/vhd";
import { VhdError } from "@lcow/vhd";
import { run, version } from "./cli.js";
import { COMMANDS } from "./commands/index.js";
import type { CliIO } from "./io.js";

const fake = vi.hoisted(() => ({
  impl: undefined as undefined | ((input: string | AsyncIterable<Uint8Array>, out: string, options: ConvertOptions) => Promise<ConvertSummary>),
}));
vi.mock("@lcow/vhd", async (importOriginal) => ({
  ...(await importOriginal<typeof import("@lcow/vhd")>()),
  convertTar: (input: string | AsyncIterable<Uint8Array>, out: string, options: ConvertOptions) => {
    if (fake.impl === undefined) throw new Error("no fake convertTar set");
    return fake.impl(input, out, options);
  },
}));

const SUMMARY: ConvertSummary = {
  entries: { file: 3, directory: 2, symlink: 1 },
  bytesIn: 10_240,
  ext4Bytes: 4 * 2 ** 20,
  imageBytes: 4 * 2 ** 20 + 512,
};

/** A fake converter that drains its input and records what it was given. */
function draining(summary: ConvertSummary = SUMMARY) {
  const calls: { bytes: Buffer; out: string; options: ConvertOptions; path: string | undefined }[] = [];
  fake.impl = async (input, out, options) => {
    const parts: Uint8Array[] = [];
    // A file is handed over by path (the library reads it itself); streams are drained.
    if (typeof input === "string") parts.push(readFileSync(input));
    else for await (const c of input) parts.push(c);
    calls.push({ bytes: Buffer.concat(parts), out, options, path: typeof input === "string" ? input : undefined });
    return summary;
  };
  return calls;
}

function fakeIO(opts: { stdin?: AsyncIterable<Uint8Array>; tty?: boolean; cwd: string; signal?: AbortSignal }) {
  let out = "";
  let err = "";
  const io: CliIO = {
    stdin: opts.stdin ?? (async function* () {})(),
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s), isTTY: opts.tty ?? false, columns: 120 },
    cwd: opts.cwd,
    ...(opts.signal === undefined ? {} : { signal: opts.signal }),
  };
  return { io, out: () => out, err: () => err };
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "lcow-cli-"));
  fake.impl = undefined;
});

describe("lcow (dispatcher)", () => {
  it("--version prints package.json's version", async () => {
    const t = fakeIO({ cwd: dir });
    expect(await run(["--version"], t.io)).toBe(0);
    expect(t.out()).toBe(`${version()}\n`);
    expect(version()).toBe(JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version);
  });

  it("--help lists every command of the table", async () => {
    const t = fakeIO({ cwd: dir });
    expect(await run(["--help"], t.io)).toBe(0);
    for (const c of COMMANDS) expect(t.out()).toContain(`  ${c.name}`);
    const h = fakeIO({ cwd: dir });
    expect(await run(["help", "convert"], h.io)).toBe(0);
    expect(h.out()).toMatch(/^Usage: lcow convert/);
  });

  it.each([[[]], [["frobnicate"]], [["--frob"]], [["help", "nope"]]])("exits 2 with usage for %j", async (argv) => {
    const t = fakeIO({ cwd: dir });
    expect(await run(argv, t.io)).toBe(2);
    expect(t.err()).toContain("Usage: lcow <command>");
    expect(t.out()).toBe("");
  });
});

describe("lcow convert: command line", () => {
  it("--help prints the options on stdout", async () => {
    const t = fakeIO({ cwd: dir });
    expect(await run(["convert", "--help"], t.io)).toBe(0);
    for (const flag of ["--output", "--no-vhd", "--keep-whiteouts", "--inline-data", "--max-size", "--uuid", "--timestamp", "--strict", "--json", "--sample"]) {
      expect(t.out()).toContain(flag);
    }
  });

  it.each([
    [["convert", "in.tar", "-o", "x", "--frob"], "lcow: error: Unknown option '--frob'"],
    [["convert", "-o", "x"], "lcow: error: missing <input> (a tar file, or - for stdin)"],
    [["convert", "in.tar"], "lcow: error: missing -o <output>"],
    [["convert", "in.tar", "--sample", "-o", "x"], "lcow: error: give either <input> or --sample, not both"],
    [["convert", "a", "b", "-o", "x"], "lcow: error: unexpected argument 'b'"],
  ])("%j exits 2 with the convert usage", async (argv, message) => {
    const t = fakeIO({ cwd: dir });
    expect(await run(argv, t.io)).toBe(2);
    expect(t.err().split("\n")[0]).toBe(message);
    expect(t.err()).toContain("Usage: lcow convert");
  });

  it.each([
    ["--max-size", "12Q", "invalid --max-size '12Q': expected a size like 128G, 512M, 1T, 2GiB or a number of bytes"],
    ["--max-size", "0", "invalid --max-size '0': must be greater than zero"],
    ["--timestamp", "yesterday", "invalid --timestamp 'yesterday': expected whole seconds since 1970 (0 to 4294967295)"],
    ["--uuid", "nope", "invalid --uuid 'nope': expected a UUID like 0f8fad5b-d9cb-469f-a165-70867728950e"],
  ])("bad %s value exits 1 with one error line and, with --json, one JSON object", async (flag, value, message) => {
    draining();
    const t = fakeIO({ cwd: dir });
    expect(await run(["convert", "--sample", "-o", "x.vhd", flag, value, "--json"], t.io)).toBe(1);
    expect(t.err()).toBe(`lcow: error: ${message}\n`);
    expect(JSON.parse(t.out())).toEqual({ ok: false, code: "INVALID_ARGUMENT", message, path: null, offset: null });
  });

  it("passes every flag to the converter as options", async () => {
    const calls = draining();
    const t = fakeIO({ cwd: dir });
    const argv = ["convert", "--sample", "-o", "out.vhd", "--no-vhd", "--keep-whiteouts", "--inline-data", "--strict"];
    argv.push("--max-size", "2GiB", "--uuid", "0F8FAD5B-D9CB-469F-A165-70867728950E", "--timestamp", "1700000000");
    expect(await run(argv, t.io)).toBe(0);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.out).toBe(join(dir, "out.vhd"));
    expect(calls[0]?.options).toMatchObject({
      vhd: false,
      keepWhiteouts: true,
      inlineData: true,
      strict: true,
      maxDiskSize: 2 * 2 ** 30,
      uuid: "0f8fad5b-d9cb-469f-a165-70867728950e",
      timestamp: 1_700_000_000,
    });
  });

  it("leaves library defaults alone when flags are absent", async () => {
    const calls = draining();
    expect(await run(["convert", "--sample", "-o", "out.vhd"], fakeIO({ cwd: dir }).io)).toBe(0);
    const options = calls[0]?.options ?? {};
    expect(options).toMatchObject({ vhd: true, keepWhiteouts: false, inlineData: false, strict: false });
    expect("maxDiskSize" in options || "uuid" in options || "timestamp" in options).toBe(false);
  });
});

describe("lcow convert: input", () => {
  it("reads a file, relative to the working directory, and passes its raw bytes", async () => {
    const calls = draining();
    const data = Buffer.alloc(3 * 2 ** 20 + 7, 0x61);
    writeFileSync(join(dir, "layer.tar.gz"), data);
    expect(await run(["convert", "layer.tar.gz", "-o", "out.vhd"], fakeIO({ cwd: dir }).io)).toBe(0);
    expect(calls[0]?.path).toBe(join(dir, "layer.tar.gz"));
    expect(calls[0]?.bytes.equals(data)).toBe(true);
  });

  it("reads stdin for `-`", async () => {
    const calls = draining();
    const stdin = (async function* () {
      yield Buffer.from("part one,");
      yield Buffer.from(" part two");
    })();
    expect(await run(["convert", "-", "-o", "out.vhd"], fakeIO({ cwd: dir, stdin }).io)).toBe(0);
    expect(calls[0]?.bytes.toString()).toBe("part one, part two");
  });

  it("feeds the built-in sample for --sample", async () => {
    const calls = draining();
    expect(await run(["convert", "--sample", "-o", "out.vhd"], fakeIO({ cwd: dir }).io)).toBe(0);
    const tar = calls[0]?.bytes ?? Buffer.alloc(0);
    expect(tar.subarray(257, 262).toString()).toBe("ustar");
    expect(tar.length % 512).toBe(0);
  });

  it("reports a missing input file as IO without calling the converter", async () => {
    const calls = draining();
    const t = fakeIO({ cwd: dir });
    expect(await run(["convert", "missing.tar", "-o", "out.vhd", "--json"], t.io)).toBe(1);
    expect(calls).toHaveLength(0);
    expect(t.err()).toBe("lcow: error: cannot open 'missing.tar': no such file or directory (ENOENT)\n");
    expect(JSON.parse(t.out())).toMatchObject({ ok: false, code: "IO", path: "missing.tar" });
  });

  it("reports a directory given as input", async () => {
    const t = fakeIO({ cwd: dir });
    expect(await run(["convert", ".", "-o", "out.vhd"], t.io)).toBe(1);
    expect(t.err()).toBe("lcow: error: cannot read '.': is a directory (EISDIR)\n");
  });

  it("refuses an output in a missing directory, or that is a directory, before reading stdin", async () => {
    let read = false;
    const stdin = (async function* () {
      read = true;
      yield new Uint8Array(1);
    })();
    draining();
    const t = fakeIO({ cwd: dir, stdin });
    expect(await run(["convert", "-", "-o", "no/such/dir/out.vhd"], t.io)).toBe(1);
    expect(t.err()).toBe(`lcow: error: cannot create 'no/such/dir/out.vhd': directory '${join(dir, "no/such/dir")}' does not exist (ENOENT)\n`);
    mkdirSync(join(dir, "sub"));
    const u = fakeIO({ cwd: dir, stdin });
    expect(await run(["convert", "-", "-o", "sub"], u.io)).toBe(1);
    expect(u.err()).toBe("lcow: error: cannot create 'sub': is a directory (EISDIR)\n");
    expect(read).toBe(false);
  });

  it("maps an OS error thrown while converting to IO", async () => {
    fake.impl = async () => {
      throw Object.assign(new Error("EACCES: permission denied, open '/ro/x.vhd.tmp'"), { code: "EACCES", syscall: "open", path: "/ro/x.vhd.tmp" });
    };
    const t = fakeIO({ cwd: dir });
    expect(await run(["convert", "--sample", "-o", "x.vhd", "--json"], t.io)).toBe(1);
    expect(t.err()).toBe("lcow: error: cannot open '/ro/x.vhd.tmp': permission denied (EACCES)\n");
    expect(JSON.parse(t.out())).toEqual({ ok: false, code: "IO", message: "cannot open '/ro/x.vhd.tmp': permission denied (EACCES)", path: "/ro/x.vhd.tmp", offset: null });
  });

  it("stops reading on abort (Ctrl-C) and exits 130", async () => {
    const controller = new AbortController();
    let pulls = 0;
    const stdin = (async function* () {
      for (;;) {
        pulls++;
        if (pulls === 3) controller.abort();
        yield new Uint8Array(10);
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    draining();
    const t = fakeIO({ cwd: dir, stdin, signal: controller.signal });
    expect(await run(["convert", "-", "-o", "x.vhd"], t.io)).toBe(130);
    expect(t.err()).toBe("lcow: error: interrupted\n");
    expect(pulls).toBeLessThanOrEqual(4);
  });
});

describe("lcow convert: output", () => {
  it("prints a human summary on stdout", async () => {
    draining();
    const t = fakeIO({ cwd: dir });
    expect(await run(["convert", "--sample", "-o", "out.vhd"], t.io)).toBe(0);
    const lines = t.out().split("\n");
    expect(lines[0]).toBe("converted <sample> -> out.vhd");
    expect(t.out()).toContain("  entries   6 (3 files, 2 directories, 1 symlink)\n");
    expect(t.out()).toContain("  tar in    10.0 KiB\n");
    expect(t.out()).toContain("  image     4.0 MiB (ext4 4.0 MiB + 512-byte VHD footer)\n");
    expect(t.out()).toMatch(/ {2}time {6}\d+\.\d\d s \(\d+\.\d MiB\/s\)\n$/);
    expect(t.err()).toBe("");
  });

  it("--json prints exactly one object with every documented field", async () => {
    draining();
    const t = fakeIO({ cwd: dir });
    expect(await run(["convert", "--sample", "-o", "out.vhd", "--json"], t.io)).toBe(0);
    expect(t.out().trim().split("\n")).toHaveLength(1);
    const j = JSON.parse(t.out());
    expect(Object.keys(j).sort()).toEqual(["bytesIn", "entries", "ext4Bytes", "imageBytes", "mibPerSecond", "ok", "output", "peakRssBytes", "seconds"]);
    expect(j).toMatchObject({ ok: true, output: join(dir, "out.vhd"), entries: SUMMARY.entries, bytesIn: 10_240, ext4Bytes: SUMMARY.ext4Bytes, imageBytes: SUMMARY.imageBytes });
    expect(j.seconds).toBeGreaterThan(0);
    expect(j.mibPerSecond).toBeGreaterThanOrEqual(0);
    // maxRSS is KiB; a Node process is well over 10 MiB and (here) under 4 GiB.
    expect(j.peakRssBytes).toBeGreaterThan(10 * 2 ** 20);
    expect(j.peakRssBytes).toBeLessThan(4 * 2 ** 30);
    expect(j.peakRssBytes % 1024).toBe(0);
  });

  it("prints warnings on stderr as `warning: <code>: <message>`", async () => {
    fake.impl = async (input, _out, options) => {
      for await (const _ of input) options.onWarning?.({ code: "TAR_PARENT_MISSING", message: "a/b: parent directory a created with mode 0755", path: "a/b" });
      return SUMMARY;
    };
    const t = fakeIO({ cwd: dir });
    expect(await run(["convert", "--sample", "-o", "out.vhd", "--json"], t.io)).toBe(0);
    expect(t.err()).toMatch(/^(warning: TAR_PARENT_MISSING: a\/b: parent directory a created with mode 0755\n)+$/);
    expect(JSON.parse(t.out()).ok).toBe(true);
  });

  it("reports a VhdError with its code, path and offset", async () => {
    fake.impl = async () => {
      throw new VhdError("TAR_HEADER_INVALID", "etc/passwd at offset 1536: header checksum mismatch", { path: "etc/passwd", offset: 1536 });
    };
    const t = fakeIO({ cwd: dir });
    expect(await run(["convert", "--sample", "-o", "out.vhd", "--json"], t.io)).toBe(1);
    expect(t.err()).toBe("lcow: error: etc/passwd at offset 1536: header checksum mismatch\n");
    expect(JSON.parse(t.out())).toEqual({
      ok: false,
      code: "TAR_HEADER_INVALID",
      message: "etc/passwd at offset 1536: header checksum mismatch",
      path: "etc/passwd",
      offset: 1536,
    });
  });

  it("keeps a multi-line message on one stderr line", async () => {
    fake.impl = async () => {
      throw new Error("first\nsecond");
    };
    const t = fakeIO({ cwd: dir });
    expect(await run(["convert", "--sample", "-o", "out.vhd"], t.io)).toBe(1);
    expect(t.err()).toBe("lcow: error: first second\n");
  });

  it("draws progress on a TTY stderr with a percentage for a sized file, and clears it", async () => {
    writeFileSync(join(dir, "in.tar"), Buffer.alloc(4 * 2 ** 20));
    fake.impl = async (input, _out, options) => {
      // The library reports tar bytes through onProgress when it reads the file itself.
      expect(typeof input).toBe("string");
      for (let mib = 1; mib <= 4; mib++) {
        options.onProgress?.(mib * 2 ** 20);
        await new Promise((r) => setTimeout(r, 120));
      }
      return SUMMARY;
    };
    const t = fakeIO({ cwd: dir, tty: true });
    expect(await run(["convert", "in.tar", "-o", "out.vhd"], t.io)).toBe(0);
    expect(t.err()).toMatch(/\r\x1b\[2K\[#+-*\] +\d+%  \d+\.\d MiB \/ 4\.0 MiB/);
    expect(t.err().endsWith("\r\x1b[2K")).toBe(true);
    expect(t.out()).toMatch(/^converted in\.tar -> out\.vhd/);
  });

  it("draws nothing on a non-TTY stderr", async () => {
    writeFileSync(join(dir, "in.tar"), Buffer.alloc(4 * 2 ** 20));
    draining();
    const t = fakeIO({ cwd: dir, tty: false });
    expect(await run(["convert", "in.tar", "-o", "out.vhd"], t.io)).toBe(0);
    expect(t.err()).toBe("");
  });
});
