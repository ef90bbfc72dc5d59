// The `kernel` mounter against the real kernel: layers written by @lcow/vhd, loop devices,
// ext4, overlayfs and qemu-storage-daemon's FUSE export. Needs root; skipped without loop,
// overlay or FUSE support. Every test checks that nothing it made stays attached.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { convertTar, createSandbox, createVhdx, exportImage } from "@lcow/vhd";
import { createKernelMounter, JOURNAL_NAME, recoverKernelMount } from "../src/mounters/kernel/index.js";
import type { MountRequest, MountState } from "../src/mounters/types.js";

const MiB = 1024 * 1024;
const repo = join(import.meta.dirname, "..", "..", "..");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function kernelSupports(): boolean {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return false;
  if (!existsSync("/dev/loop-control") || !existsSync("/dev/fuse")) return false;
  const filesystems = readFileSync("/proc/filesystems", "utf8");
  if (!/\toverlay$/m.test(filesystems) || !/\text4$/m.test(filesystems) || !/\tfuse$/m.test(filesystems)) return false;
  try {
    execFileSync("qemu-storage-daemon", ["--version"], { stdio: "ignore" });
    execFileSync("losetup", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const supported = kernelSupports();

// ---------------------------------------------------------------------------------------------
// A small ustar writer and reader, enough for the layers these tests build and for reading back
// what exportImage writes (it may use PAX headers for long names).

type Entry =
  | { type: "file"; path: string; content: string; mode?: number }
  | { type: "dir"; path: string; mode?: number };

const file = (path: string, content: string): Entry => ({ type: "file", path, content });
const dir = (path: string): Entry => ({ type: "dir", path });
/** An OCI whiteout for `path` (`dir/.wh.name`). */
const whiteout = (path: string): Entry => {
  const at = path.lastIndexOf("/");
  return file(`${path.slice(0, at + 1)}.wh.${path.slice(at + 1)}`, "");
};
/** An OCI opaque marker for directory `path`. */
const opaque = (path: string): Entry => file(`${path}/.wh..wh..opq`, "");

function octal(buf: Buffer, at: number, width: number, value: number): void {
  buf.write(value.toString(8).padStart(width - 1, "0") + "\0", at, width, "latin1");
}

function tarOf(entries: Entry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const body = e.type === "file" ? Buffer.from(e.content) : Buffer.alloc(0);
    const h = Buffer.alloc(512);
    const name = e.type === "dir" ? `${e.path}/` : e.path;
    if (name.length > 100) throw new Error(`test tar name too long: ${name}`);
    h.write(name, 0, 100, "latin1");
    octal(h, 100, 8, e.mode ?? (e.type === "dir" ? 0o755 : 0o644));
    octal(h, 108, 8, 0);
    octal(h, 116, 8, 0);
    octal(h, 124, 12, body.length);
    octal(h, 136, 12, 1_700_000_000);
    h.write(e.type === "dir" ? "5" : "0", 156, 1, "latin1");
    h.write("ustar\0" + "00", 257, 8, "latin1");
    h.fill(" ", 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "latin1");
    parts.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** The entries of a tar: name (no leading `./`, directories without their `/`) to type flag and content. */
function readTar(tar: Buffer): Map<string, { type: string; content: string }> {
  const out = new Map<string, { type: string; content: string }>();
  let at = 0;
  let longName: string | undefined;
  while (at + 512 <= tar.length) {
    const h = tar.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    const str = (o: number, w: number) => h.toString("latin1", o, o + w).replace(/\0.*$/s, "");
    const size = parseInt(str(124, 12).trim() || "0", 8);
    const type = str(156, 1) || "0";
    const body = tar.subarray(at + 512, at + 512 + size);
    at += 512 + Math.ceil(size / 512) * 512;
    if (type === "x") {
      const m = /\d+ path=([^\n]*)\n/.exec(body.toString("utf8"));
      if (m) longName = m[1];
      continue;
    }
    if (type === "g") continue;
    const prefix = str(345, 155);
    const name = (longName ?? (prefix ? `${prefix}/${str(0, 100)}` : str(0, 100))).replace(/^\.\//, "").replace(/\/$/, "");
    longName = undefined;
    if (name === "" || name === ".") continue;
    out.set(name, { type, content: body.toString("utf8") });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A layer store laid out as the driver lays it out, and leak checks.

let home: string;
const mounter = createKernelMounter({ timeoutMs: 30_000 });

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "lcow-kmount-"));
});
afterAll(async () => {
  if (home) await rm(home, { recursive: true, force: true });
});

/** Writes `<home>/<id>/layer.vhd` from `entries`. */
async function layer(id: string, entries: Entry[]): Promise<string> {
  const layerDir = join(home, id);
  await mkdir(layerDir, { recursive: true });
  const tarPath = join(home, `${id}.tar`);
  await writeFile(tarPath, tarOf(entries));
  await convertTar(tarPath, join(layerDir, "layer.vhd"), { maxDiskSize: 64 * MiB });
  await unlink(tarPath);
  return layerDir;
}

/** Writes `<home>/<id>/sandbox.vhdx`, a blank 64 MiB sandbox with upper/ and work/. */
async function sandbox(id: string): Promise<string> {
  const layerDir = join(home, id);
  await mkdir(layerDir, { recursive: true });
  await createSandbox(join(layerDir, "sandbox.vhdx"), { size: 64 * MiB });
  return layerDir;
}

function request(id: string, chain: string[]): MountRequest {
  return { id, layerDir: join(home, id), chain, workDir: join(home, "mounts", id) };
}

/** What this test run has attached: mounts under home, loop devices on its files, its daemons. */
function attached(): { mounts: string[]; loops: string[]; daemons: string[] } {
  const mounts = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.startsWith(home));
  const loops = execFileSync("losetup", ["--list", "--noheadings", "--output", "NAME,BACK-FILE"], { encoding: "utf8" })
    .split("\n")
    .filter((l) => l.includes(home));
  const daemons: string[] = [];
  for (const pid of execFileSync("ls", ["/proc"], { encoding: "utf8" }).split("\n").filter((n) => /^\d+$/.test(n))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      const st = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (cmd.includes("qemu-storage-daemon") && cmd.includes(home) && st.slice(st.lastIndexOf(")") + 2)[0] !== "Z") daemons.push(pid);
    } catch {
      // gone while we looked
    }
  }
  return { mounts, loops, daemons };
}

const nothing = { mounts: [], loops: [], daemons: [] };

/** Safety net: whatever a failing test left, released so the next tests (and the machine) stay clean. */
afterEach(() => {
  const left = attached();
  for (const m of left.mounts.reverse()) execFileSync("umount", ["--lazy", m]);
  for (const pid of left.daemons) process.kill(Number(pid), "SIGKILL");
  for (const l of left.loops) execFileSync("losetup", ["--detach", l.trim().split(/\s+/)[0]!]);
});

/** A state as another process would see it: persisted as JSON and read back. */
const persisted = (state: MountState): MountState => JSON.parse(JSON.stringify(state)) as MountState;

const read = (path: string) => readFile(path, "utf8");

// ---------------------------------------------------------------------------------------------

describe.skipIf(!supported)("kernel mounter", () => {
  let base: string;
  let mid: string;

  beforeAll(async () => {
    base = await layer("base", [
      dir("etc"),
      file("etc/f1", "base f1"),
      file("etc/f2", "base f2"),
      file("gone", "base gone"),
      dir("opq"),
      file("opq/old", "old"),
      dir("opq/sub"),
      file("opq/sub/deep", "deep"),
      dir("keep"),
      file("keep/a", "a"),
    ]);
    mid = await layer("mid", [
      dir("etc"),
      file("etc/f1", "mid f1"),
      whiteout("gone"),
      dir("opq"),
      opaque("opq"),
      file("opq/new", "new"),
      file("midfile", "mid"),
    ]);
    await layer("top", [dir("keep"), whiteout("keep/a"), file("keep/b", "b"), file("topfile", "top")]);
  });

  it("mounts a single read-only layer and shows its files", async () => {
    const { path, state } = await mounter.mount(request("base", []));
    try {
      expect(await read(join(path, "etc/f1"))).toBe("base f1");
      expect((await readdir(path)).sort()).toEqual(["etc", "gone", "keep", "lost+found", "opq"]);
      await expect(writeFile(join(path, "new"), "x")).rejects.toMatchObject({ code: "EROFS" });
      expect(attached().loops).toHaveLength(1);
    } finally {
      await mounter.unmount("base", state);
    }
    expect(attached()).toEqual(nothing);
  });

  it("shows a 3-layer chain as a union: whiteouts hide lower files, an opaque directory hides lower contents", async () => {
    const { path, state } = await mounter.mount(request("top", [mid, base]));
    try {
      expect(await read(join(path, "etc/f1"))).toBe("mid f1");
      expect(await read(join(path, "etc/f2"))).toBe("base f2");
      expect(existsSync(join(path, "gone"))).toBe(false);
      expect(await readdir(join(path, "opq"))).toEqual(["new"]);
      expect(await readdir(join(path, "keep"))).toEqual(["b"]);
      expect(await read(join(path, "topfile"))).toBe("top");
      expect(await read(join(path, "midfile"))).toBe("mid");
      await expect(writeFile(join(path, "x"), "x")).rejects.toMatchObject({ code: "EROFS" });
    } finally {
      await mounter.unmount("top", state);
    }
    expect(attached()).toEqual(nothing);
  });

  it("takes writes in a writable layer that survive unmount and a new mount, and that exportImage of upper/ sees", async () => {
    const rw = await sandbox("rw");
    const first = await mounter.mount(request("rw", [mid, base]));
    try {
      expect(await read(join(first.path, "etc/f1"))).toBe("mid f1");
      await writeFile(join(first.path, "etc/f2"), "changed f2");
      await unlink(join(first.path, "etc/f1"));
      await mkdir(join(first.path, "newdir"));
      await writeFile(join(first.path, "newdir/hello"), "hello");
      // Large enough to allocate fresh VHDX blocks through the daemon.
      await writeFile(join(first.path, "big"), Buffer.alloc(5 * MiB, 7));
    } finally {
      await mounter.unmount("rw", first.state);
    }
    expect(attached()).toEqual(nothing);

    // A different instance (as another process would be) mounts it again.
    const again = createKernelMounter();
    const second = await again.mount(request("rw", [mid, base]));
    try {
      expect(await read(join(second.path, "etc/f2"))).toBe("changed f2");
      expect(existsSync(join(second.path, "etc/f1"))).toBe(false);
      expect(await read(join(second.path, "newdir/hello"))).toBe("hello");
      expect((await stat(join(second.path, "big"))).size).toBe(5 * MiB);
      expect(await read(join(second.path, "midfile"))).toBe("mid");
    } finally {
      await again.unmount("rw", persisted(second.state));
    }
    expect(attached()).toEqual(nothing);

    const out = join(home, "rw-upper.tar");
    await exportImage(join(rw, "sandbox.vhdx"), out, { path: "upper" });
    const entries = readTar(await readFile(out));
    expect(entries.get("etc/f2")?.content).toBe("changed f2");
    expect(entries.has("etc/.wh.f1")).toBe(true);
    expect(entries.get("newdir/hello")?.content).toBe("hello");
    expect(entries.has("midfile")).toBe(false);
  });

  it("mounts a writable layer without parents", async () => {
    await sandbox("rw-alone");
    const { path, state } = await mounter.mount(request("rw-alone", []));
    try {
      await writeFile(join(path, "only"), "only");
      expect(await readdir(path)).toEqual(["only"]);
    } finally {
      await mounter.unmount("rw-alone", persisted(state));
    }
    expect(attached()).toEqual(nothing);
  });

  it("mounts a 128-layer chain and shows the top and bottom files", async () => {
    const chain: string[] = [];
    for (let i = 1; i <= 127; i++) chain.unshift(await layer(`deep-${i}`, [file(`file-${i}`, `layer ${i}`), file("common", `from ${i}`)]));
    await layer("deep-128", [file("file-128", "layer 128"), file("common", "from 128")]);
    expect(chain).toHaveLength(127);
    const started = Date.now();
    const { path, state } = await mounter.mount(request("deep-128", chain));
    const mountMs = Date.now() - started;
    try {
      expect(await read(join(path, "file-1"))).toBe("layer 1");
      expect(await read(join(path, "file-64"))).toBe("layer 64");
      expect(await read(join(path, "file-128"))).toBe("layer 128");
      expect(await read(join(path, "common"))).toBe("from 128");
      expect((await readdir(path)).filter((n) => n.startsWith("file-"))).toHaveLength(128);
      expect(attached().loops).toHaveLength(128);
    } finally {
      await mounter.unmount("deep-128", persisted(state));
    }
    expect(attached()).toEqual(nothing);
    expect(mountMs).toBeLessThan(30_000);
  });

  it("is released by a fresh instance from the persisted state alone, and unmount is idempotent", async () => {
    await sandbox("rw-state");
    const { path, state } = await createKernelMounter().mount(request("rw-state", [mid, base]));
    await writeFile(join(path, "note"), "kept");
    const saved = persisted(state);
    expect(attached().daemons).toHaveLength(1);
    expect(attached().loops).toHaveLength(3);

    await createKernelMounter().unmount("rw-state", saved);
    expect(attached()).toEqual(nothing);
    expect(await readdir(join(home, "mounts", "rw-state"))).toEqual([]);
    await createKernelMounter().unmount("rw-state", saved);

    const again = await mounter.mount(request("rw-state", [mid, base]));
    expect(await read(join(again.path, "note"))).toBe("kept");
    await mounter.unmount("rw-state", again.state);
    expect(attached()).toEqual(nothing);
  });

  it("releases a mount whose state was never persisted, from its journal (crash before the core saved it)", async () => {
    await sandbox("rw-crash");
    const workDir = join(home, "mounts", "rw-crash");
    await mounter.mount(request("rw-crash", [base]));
    expect(existsSync(join(workDir, JOURNAL_NAME))).toBe(true);
    // The next mount of the id finds the journal and releases the old mount first.
    const { state } = await createKernelMounter().mount(request("rw-crash", [base]));
    expect(attached().daemons).toHaveLength(1);
    expect(attached().loops).toHaveLength(2);
    // The start-up sweep finds the journal of a mount nobody recorded.
    expect(await recoverKernelMount(workDir)).toBe(true);
    expect(attached()).toEqual(nothing);
    expect(await recoverKernelMount(workDir)).toBe(false);
    await mounter.unmount("rw-crash", state);
  });

  it("leaves nothing behind when a layer in the middle of the chain is corrupt", async () => {
    const bad = await layer("bad", [file("x", "x")]);
    // Zero the primary superblock (byte 1024 of the ext4 image): mount fails after the layers above it are mounted.
    const fh = await open(join(bad, "layer.vhd"), "r+");
    await fh.write(Buffer.alloc(1024), 0, 1024, 1024);
    await fh.close();
    await layer("over-bad", [file("y", "y")]);
    await expect(mounter.mount(request("over-bad", [mid, bad, base]))).rejects.toMatchObject({ code: "INTERNAL", message: expect.stringMatching(/mount/) });
    expect(attached()).toEqual(nothing);
    expect(await readdir(join(home, "mounts", "over-bad"))).toEqual([]);
  });

  it("leaves nothing behind when the sandbox disk holds no filesystem (daemon and loop device up, ext4 mount fails)", async () => {
    const layerDir = join(home, "rw-blank");
    await mkdir(layerDir, { recursive: true });
    const sink = await createVhdx(join(layerDir, "sandbox.vhdx"), { virtualSize: 16 * MiB });
    await sink.close();
    await expect(mounter.mount(request("rw-blank", [mid, base]))).rejects.toMatchObject({ code: "INTERNAL" });
    expect(attached()).toEqual(nothing);
    expect(await readdir(join(home, "mounts", "rw-blank"))).toEqual([]);
  });

  it("leaves nothing behind when qemu-storage-daemon cannot open the sandbox", async () => {
    const layerDir = join(home, "rw-garbage");
    await mkdir(layerDir, { recursive: true });
    await writeFile(join(layerDir, "sandbox.vhdx"), Buffer.alloc(MiB, 0x5a));
    await expect(mounter.mount(request("rw-garbage", [base]))).rejects.toMatchObject({ code: "INTERNAL", message: expect.stringMatching(/qemu-storage-daemon/) });
    expect(attached()).toEqual(nothing);
    expect(await readdir(join(home, "mounts", "rw-garbage"))).toEqual([]);
  });

  it("rejects a layer without a VHD footer, and another mounter's state", async () => {
    await mkdir(join(home, "raw"), { recursive: true });
    await writeFile(join(home, "raw", "layer.vhd"), Buffer.alloc(64 * 1024));
    await expect(mounter.mount(request("raw", []))).rejects.toMatchObject({ code: "DATA_LOSS" });
    await expect(mounter.unmount("x", { mounter: "uvm" })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(mounter.unmount("x", { mounter: "kernel", version: 1 })).rejects.toMatchObject({ code: "DATA_LOSS" });
    expect(attached()).toEqual(nothing);
  });

  it("skips empty layers: an empty layer alone is an empty read-only view, one in the chain adds nothing", async () => {
    await mkdir(join(home, "empty"), { recursive: true });
    const alone = await mounter.mount(request("empty", []));
    try {
      expect(await readdir(alone.path)).toEqual([]);
      await expect(writeFile(join(alone.path, "x"), "x")).rejects.toMatchObject({ code: "EROFS" });
    } finally {
      await mounter.unmount("empty", alone.state);
    }
    await layer("over-empty", [file("z", "z")]);
    const over = await mounter.mount(request("over-empty", [join(home, "empty"), base]));
    try {
      expect((await readdir(over.path)).sort()).toEqual(["etc", "gone", "keep", "lost+found", "opq", "z"]);
    } finally {
      await mounter.unmount("over-empty", over.state);
    }
    expect(attached()).toEqual(nothing);
  });

  it("uses a writable layer in the chain (a snapshot of a container) through its upper/, also while that layer is mounted", async () => {
    await sandbox("rw-parent");
    const parent = await mounter.mount(request("rw-parent", [mid, base]));
    try {
      await writeFile(join(parent.path, "from-rw"), "rw");
      await unlink(join(parent.path, "midfile"));
    } finally {
      await mounter.unmount("rw-parent", parent.state);
    }
    const again = await mounter.mount(request("rw-parent", [mid, base]));
    await sandbox("rw-child");
    const child = await mounter.mount(request("rw-child", [join(home, "rw-parent"), mid, base]));
    try {
      expect(await read(join(child.path, "from-rw"))).toBe("rw");
      expect(existsSync(join(child.path, "midfile"))).toBe(false);
      expect(await read(join(child.path, "etc/f1"))).toBe("mid f1");
      await writeFile(join(child.path, "from-child"), "child");
      expect(attached().daemons).toHaveLength(3);
    } finally {
      await mounter.unmount("rw-child", child.state);
      await mounter.unmount("rw-parent", again.state);
    }
    expect(attached()).toEqual(nothing);
  });

  it("fails a busy unmount with FAILED_PRECONDITION and completes it on retry", async () => {
    await layer("busy", [file("held", "held")]);
    const { path, state } = await mounter.mount(request("busy", [base]));
    const fh = await open(join(path, "held"), "r");
    try {
      await expect(mounter.unmount("busy", persisted(state))).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
    } finally {
      await fh.close();
    }
    expect(attached().loops).toHaveLength(2);
    await mounter.unmount("busy", persisted(state));
    expect(attached()).toEqual(nothing);
  });

  it("releases everything after the mounting process is killed with SIGKILL at random points", async () => {
    // The child runs this package's TypeScript, bundled once (Node 20 cannot strip types).
    const childTs = join(home, "kill-child.ts");
    const childJs = join(home, "kill-child.mjs");
    await writeFile(
      childTs,
      `import { createKernelMounter } from ${JSON.stringify(join(import.meta.dirname, "..", "src", "mounters", "kernel", "index.ts"))};
       await createKernelMounter().mount(JSON.parse(process.argv[2]));
       process.stdout.write("mounted\\n");`,
    );
    execFileSync(join(repo, "node_modules", ".bin", "esbuild"), [childTs, "--bundle", "--platform=node", "--format=esm", "--target=node20", `--outfile=${childJs}`, "--log-level=error"]);
    await sandbox("rw-snap");
    await sandbox("rw-kill");
    const req = request("rw-kill", [join(home, "rw-snap"), mid, base]);
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed / 2 ** 31);
    let completed = 0;
    for (let i = 0; i < 16; i++) {
      const child = spawn(process.execPath, [childJs, JSON.stringify(req)], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.on("data", (b: Buffer) => (out += b.toString()));
      const exited = new Promise((r) => child.once("exit", r));
      // Thirds: before the child gets far (0-50 ms: Node is still starting), anywhere in the
      // mount (50-450 ms), and after it on most machines (700-1000 ms), so that both outcomes
      // occur however fast this machine mounts.
      const band = i % 3;
      await sleep(band === 0 ? rand() * 50 : band === 1 ? 50 + rand() * 400 : 700 + rand() * 300);
      child.kill("SIGKILL");
      await exited;
      if (out.includes("mounted")) completed++;
      // Tools the child had started (mount, qemu-storage-daemon's start-up) finish on their own.
      await sleep(300);
      // What the core does at init for a mount record without state.
      await createKernelMounter({ home }).unmount("rw-kill", {});
      expect(attached(), `after kill ${i}`).toEqual(nothing);
      expect(await readdir(req.workDir).catch(() => []), `after kill ${i}`).toEqual([]);
    }
    // Killed at random points: some before, some after the mount completed.
    expect(completed).toBeGreaterThan(0);
    expect(completed).toBeLessThan(16);
    const { path, state } = await mounter.mount(req);
    await writeFile(join(path, "after-kills"), "ok");
    await mounter.unmount("rw-kill", state);
    expect(attached()).toEqual(nothing);
  });

  it("releases, given no state but the store's home, what a crashed mount left (the core's unmount(id, {}))", async () => {
    await sandbox("rw-nostate");
    await createKernelMounter().mount(request("rw-nostate", [base]));
    expect(attached().daemons).toHaveLength(1);
    await createKernelMounter().unmount("rw-nostate", {});
    expect(attached().daemons).toHaveLength(1);
    await createKernelMounter({ home }).unmount("rw-nostate", {});
    expect(attached()).toEqual(nothing);
    await createKernelMounter({ home }).unmount("rw-nostate", {});
  });
});
