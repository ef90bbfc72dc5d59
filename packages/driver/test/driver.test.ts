import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import * as vhd from "@lcow/vhd";
import { describe, expect, it } from "vitest";
import { init, REPRODUCES_EXACT_DIFFS } from "../src/index.js";
import { describeLayerStore } from "./conformance.js";

/** The kernel mounter needs Linux, root, loop devices, FUSE, overlayfs and qemu-storage-daemon. */
function kernelSupported(): boolean {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return false;
  if (!existsSync("/dev/loop-control") || !existsSync("/dev/fuse")) return false;
  const fs = readFileSync("/proc/filesystems", "utf8");
  if (!/\toverlay$/m.test(fs) || !/\text4$/m.test(fs) || !/\tfuse$/m.test(fs)) return false;
  try {
    execFileSync("qemu-storage-daemon", ["--version"], { stdio: "ignore" });
    execFileSync("losetup", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describeLayerStore("driver, none mounter", (home) => init(home, ["lcow.mounter=none"], { fsync: false }), { union: false });

describe.skipIf(!kernelSupported())("kernel", () => {
  describeLayerStore("driver, kernel mounter", (home) => init(home, ["lcow.mounter=kernel"], { fsync: false }), { union: true });
});

describe("exact diffs", () => {
  it("are on exactly when @lcow/vhd can replay a tar-split record", () => {
    expect(REPRODUCES_EXACT_DIFFS).toBe(typeof (vhd as Record<string, unknown>)["reproduceTar"] === "function");
  });
});

// ---- Driver-specific behaviour (beyond the conformance suite) ----

import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, truncate, writeFile as write, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach } from "vitest";
import { checkStore, DriverError, parseOptions, type Mounter } from "../src/index.js";
import { chunksOf, dir, file, tarOf } from "./tar.js";

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => (e as DriverError).code,
  );
}

describe("options", () => {
  it("parses the seed's names case-insensitively, from strings or a record", () => {
    const o = parseOptions(["LCOW.GlobalMode=true", "lcow.sandboxsize=30", "lcow.kirdpath=C:\\k", "lcow.kernel=bzImage", "lcow.initrd=i.img", "lcow.bootparameters=quiet a=b", "lcow.timeout=0", "lcow.mounter=kernel"]);
    expect(o).toEqual({ globalMode: true, sandboxSizeGB: 30, kirdPath: "C:\\k", kernel: "bzImage", initrd: "i.img", bootParameters: "quiet a=b", timeoutSeconds: 0, mounter: "kernel" });
    expect(parseOptions({ "lcow.globalmode": "0" }).globalMode).toBe(false);
    expect(parseOptions().mounter).toBe("none");
  });

  it.each([
    ["lcow.unknown=1", "lcow.unknown"],
    ["nokey", "nokey"],
    ["lcow.globalmode=yes", "lcow.globalmode"],
    ["lcow.sandboxsize=19", "lcow.sandboxsize"],
    ["lcow.sandboxsize=2.5", "lcow.sandboxsize"],
    ["lcow.timeout=-1", "lcow.timeout"],
    ["lcow.mounter=fuse", "lcow.mounter"],
    ["lcow.kirdpath=", "lcow.kirdpath"],
  ])("refuses %s, naming it", (opt, name) => {
    let err: unknown;
    try {
      parseOptions([opt]);
    } catch (e) {
      err = e;
    }
    expect((err as DriverError).code).toBe("INVALID_ARGUMENT");
    expect((err as Error).message).toContain(name);
  });
});

describe("driver", () => {
  let tmp: string;
  let home: string;
  beforeEach(async () => {
    tmp = await mkdtemp(join(tmpdir(), "lcow-driver-"));
    home = join(tmp, "store");
  });
  afterEach(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it("refuses bad options at init, and honours lcow.sandboxsize for every writable layer", async () => {
    expect(await codeOf(init(home, ["lcow.sandbox=1"]))).toBe("INVALID_ARGUMENT");
    const d = await init(home, ["lcow.sandboxsize=21"], { fsync: false });
    await d.createReadWrite("a");
    await d.createReadWrite("b", "", { storageOpt: { "lcow.sandboxsize": "22" } });
    expect(await codeOf(d.createReadWrite("c", "", { storageOpt: { "lcow.sandboxsize": "10" } }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(d.createReadWrite("c", "", { storageOpt: { size: "30G" } }))).toBe("INVALID_ARGUMENT");
    const size = async (id: string) => {
      const img = await vhd.openImage(join(home, id, "sandbox.vhdx"));
      try {
        return img.source.size;
      } finally {
        await img.source.close();
      }
    };
    expect(await size("a")).toBe(21 * 2 ** 30);
    expect(await size("b")).toBe(22 * 2 ** 30);
    expect((await checkStore(home)).ok).toBe(true);
  });

  it("shares mounts between processes through the store: a get in one is put by another", async () => {
    const a = await init(home, [], { fsync: false });
    const b = await init(home, [], { fsync: false });
    await a.create("x");
    await a.applyDiff("x", "", chunksOf(tarOf(file("f", "1"))));
    expect(await a.get("x")).toBe(join(home, "x"));
    expect(await b.get("x")).toBe(join(home, "x"));
    expect((await b.layers()).find((l) => l.id === "x")?.mounted).toBe(true);
    await b.put("x");
    await b.put("x");
    expect(await codeOf(a.put("x"))).toBe("FAILED_PRECONDITION");
    // A third store object opened later (a restarted process) finds a mount left by another.
    await a.get("x");
    const c = await init(home, [], { fsync: false });
    await c.put("x");
    expect(await readdir(join(home, "mounts"))).toEqual([]);
  });

  it("cleans up after a mounter that fails, and names an unavailable mounter", async () => {
    const calls: string[] = [];
    const failing: Mounter = {
      name: "kernel",
      async mount() {
        calls.push("mount");
        throw new Error("no loop devices");
      },
      async unmount(id, state) {
        calls.push(`unmount ${id} ${JSON.stringify(state)}`);
      },
    };
    const d = await init(home, ["lcow.mounter=kernel"], { fsync: false, mounters: { kernel: () => failing } });
    await d.create("x");
    expect(await codeOf(d.get("x"))).toBe("INTERNAL");
    expect(calls).toEqual(["mount", "unmount x {}"]);
    expect(await readdir(join(home, "mounts"))).toEqual([]);
    // A mounter that cannot be built is a typed error too (here: uvm on Linux without a guest agent).
    const saved = process.env.LCOW_GUEST;
    delete process.env.LCOW_GUEST;
    try {
      const u = await init(home, ["lcow.mounter=uvm"], { fsync: false });
      expect(await codeOf(u.get("x"))).toBe("INVALID_ARGUMENT");
    } finally {
      if (saved !== undefined) process.env.LCOW_GUEST = saved;
    }
  });

  it("repairs what a crashed process left at init", async () => {
    const d = await init(home, [], { fsync: false });
    await d.create("base");
    await d.applyDiff("base", "", chunksOf(tarOf(dir("a"), file("a/f", "x"))));
    await d.create("empty", "base");
    const dead = await deadPid();
    // A removal, a creation and an apply that never finished, an orphan tar-split record.
    await mkdir(join(home, "gone-removing", "deep"), { recursive: true });
    await mkdir(join(home, ".new.0123456789ab.tmp"));
    await write(join(home, ".new.0123456789ab.tmp", "layerchain.json"), "[]");
    await mkdir(join(home, "empty", ".apply.0123456789ab.tmp"));
    await write(join(home, "empty", "layer.tarsplit"), "partial");
    await write(join(home, "base", ".layer.vhd.0123456789ab.tmp"), "partial");
    // An interrupted mount and a stale lock of a dead process, a cache temporary.
    await write(join(home, "mounts", "base.json"), JSON.stringify({ status: "mounting", refs: 0, path: "", state: {}, mounter: "none", pid: dead, start: "1", bootId: undefined }));
    await mkdir(join(home, "mounts", "base"));
    await write(join(home, "locks", "empty.lock"), `${dead} 1 abc\n`);
    await write(join(home, "cache", ".sandbox.vhdx.0123456789ab.tmp"), "partial");
    await write(join(home, "scratch", "svm.vhdx"), "stale scratch");
    const before = await checkStore(home);
    expect(before.ok).toBe(false);
    expect(new Set(before.problems.map((p) => p.code))).toEqual(new Set(["LEFTOVER", "LAYER_INVALID", "MOUNT_INVALID"]));

    const again = await init(home, [], { fsync: false });
    expect((await checkStore(home)).problems).toEqual([]);
    expect((await again.getMetadata("empty"))["type"]).toBe("empty");
    await again.applyDiff("empty", "base", chunksOf(tarOf(file("g", "y"))));
    expect(await readdir(join(home, "scratch"))).toEqual([]);
  });

  it("waits for a lock held by another live process, and breaks it when that process dies", async () => {
    const d = await init(home, [], { fsync: false });
    const holder = spawn("sleep", ["0.4"]);
    await write(join(home, "locks", "x.lock"), `${holder.pid} ${startTimeOf(holder.pid!)} token\n`);
    const started = Date.now();
    await d.create("x");
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(await d.exists("x")).toBe(true);
  });

  it("checks a store: damaged images, broken chains, both kinds of image", async () => {
    const d = await init(home, [], { fsync: false });
    await d.create("base");
    await d.applyDiff("base", "", chunksOf(tarOf(file("f", "1"))));
    await d.create("child", "base");
    await d.applyDiff("child", "base", chunksOf(tarOf(file("g", "2"))));
    await d.createReadWrite("rw");
    expect(await checkStore(home)).toMatchObject({ ok: true, layers: { layer: 2, sandbox: 1, empty: 0 } });
    const size = (await stat(join(home, "child", "layer.vhd"))).size;
    await truncate(join(home, "child", "layer.vhd"), size - 4096);
    await rm(join(home, "base"), { recursive: true }); // behind the driver's back
    await write(join(home, "rw", "layer.vhd"), "");
    const report = await checkStore(home);
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => `${p.code} ${p.id}`).sort()).toEqual(["CHAIN_INVALID child", "IMAGE_INVALID child", "IMAGE_INVALID rw", "LAYER_INVALID rw"]);
  });
});

/** A pid that no process has (a child that has exited). */
async function deadPid(): Promise<number> {
  const p = spawn("true");
  await new Promise((r) => p.on("exit", r));
  return p.pid!;
}

function startTimeOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!;
}
