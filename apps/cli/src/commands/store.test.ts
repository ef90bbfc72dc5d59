// The store commands in-process against the real driver (none mounter): create, apply, diff
// byte for byte, changes, a writable layer, mount/umount, layers ls/inspect/rm and check --root.
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../cli.js";
import type { CliIO } from "../io.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "lcow-cli-store-"));
  mkdirSync(join(dir, "src/etc"), { recursive: true });
  writeFileSync(join(dir, "src/etc/hostname"), "lcow\n");
  execFileSync("tar", ["--format=pax", "-C", join(dir, "src"), "-cf", join(dir, "base.tar"), "."]);
  writeFileSync(join(dir, "new.txt"), "new");
  execFileSync("tar", ["-C", dir, "-cf", join(dir, "top.tar"), "new.txt"]);
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

const lcow = async (...argv: string[]) => {
  const t = io();
  const code = await run(["--root", "home", ...argv], t.io);
  return { code, out: t.out(), err: t.err(), bytes: t.bytes() };
};

describe("lcow store commands", () => {
  it("create, apply, diff (byte for byte), changes, layers", async () => {
    expect((await lcow("create", "base")).code).toBe(0);
    const applied = await lcow("apply", "base.tar", "--id", "base");
    expect(applied.code).toBe(0);
    expect(Number(applied.out.trim())).toBeGreaterThan(0);
    const diff = await lcow("diff", "base");
    expect(createHash("sha256").update(diff.bytes).digest("hex")).toBe(createHash("sha256").update(readFileSync(join(dir, "base.tar"))).digest("hex"));
    expect((await lcow("create", "top", "--parent", "base")).code).toBe(0);
    expect((await lcow("apply", "top.tar", "--id", "top", "--parent", "base")).code).toBe(0);
    expect((await lcow("changes", "top")).out).toBe("A /new.txt\n");
    const ls = JSON.parse((await lcow("layers", "ls", "--json")).out);
    expect(ls.map((l: { id: string }) => l.id).sort()).toEqual(["base", "top"]);
    expect(JSON.parse((await lcow("layers", "inspect", "top")).out)).toMatchObject({ id: "top", parent: "base", kind: "layer" });
  });

  it("a writable layer mounts, unmounts and the store checks clean", async () => {
    expect((await lcow("create", "rw", "--parent", "top", "--rw")).code).toBe(0);
    const mounted = await lcow("mount", "rw");
    expect(mounted.code).toBe(0);
    expect(mounted.out.trim().split("\n").pop()).toMatch(/rw$/);
    expect((await lcow("umount", "rw")).code).toBe(0);
    const check = await lcow("check", "--json");
    expect(check.code).toBe(0);
    expect(JSON.parse(check.out)).toMatchObject({ ok: true });
  });

  it("errors: a missing layer exits 1 with the driver's code; no --root is a usage error", async () => {
    const missing = await lcow("diff", "nope");
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^lcow: error: .*nope/);
    const t = io();
    expect(await run(["layers", "ls"], t.io)).toBe(2);
    expect(t.err()).toMatch(/needs --root/);
    expect((await lcow("layers", "rm", "rw")).code).toBe(0);
    expect(JSON.parse((await lcow("layers", "ls", "--json")).out).map((l: { id: string }) => l.id)).not.toContain("rw");
  });
});
