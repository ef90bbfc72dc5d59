// The built `lcow` binary, spawned as a user would run it: exit codes, stdout/stderr contents,
// and what is left on disk. Builds apps/cli (and @lcow/vhd if it has never been built) first.

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";

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
function lcow(args: string[], opts: { cwd: string; stdin?: Uint8Array | "keep-open"; closeStdout?: boolean }): Promise<Result> {
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
