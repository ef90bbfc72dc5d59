// The driver's conformance suite with `lcow.mounter=uvm`, in global and in safe mode: the
// service VMs are apps/guest processes started by @lcow/gcs-client's Linux launcher, in their
// own mount and pid namespaces; layers are hot-added to them over the GCS bridge and combined by
// the guest's overlayfs. Needs what the kernel mounter needs, plus unshare and a built apps/guest.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, rm, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { init } from "../src/index.js";
import { describeLayerStore } from "./conformance.js";
import { chunksOf, file, tarOf } from "./tar.js";

const GUEST = resolve(dirname(fileURLToPath(import.meta.url)), "../../../apps/guest/dist/main.js");

function uvmSupported(): boolean {
  if (process.platform !== "linux" || process.getuid?.() !== 0 || !existsSync(GUEST)) return false;
  if (!existsSync("/dev/loop-control") || !existsSync("/dev/fuse")) return false;
  const fs = readFileSync("/proc/filesystems", "utf8");
  if (!/\toverlay$/m.test(fs) || !/\text4$/m.test(fs)) return false;
  try {
    for (const tool of ["qemu-storage-daemon", "losetup", "unshare"]) execFileSync(tool, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const opts = (global: boolean) => ["lcow.mounter=uvm", `lcow.globalmode=${global}`, `lcow.guest=${GUEST}`, "lcow.timeout=60"];

describe.skipIf(!uvmSupported())("uvm mounter", () => {
  describeLayerStore("driver, uvm mounter, global mode", (home) => init(home, opts(true), { fsync: false }), { union: true });
  describeLayerStore("driver, uvm mounter, safe mode", (home) => init(home, opts(false), { fsync: false }), { union: true });

  it("safe mode starts one VM per mounted id and stops it with the last put; global mode keeps one until cleanup", async () => {
    const home = await mkdtemp(join(tmpdir(), "lcow-uvm-modes-"));
    const guests = () => execFileSync("sh", ["-c", `pgrep -f '^unshare .*${GUEST} serve' || true`], { encoding: "utf8" }).trim().split("\n").filter(Boolean).length;
    const before = guests();
    try {
      for (const global of [false, true]) {
        const store = await init(join(home, String(global)), opts(global), { fsync: false });
        await store.create("base");
        await store.applyDiff("base", "", chunksOf(tarOf(file("f", "layer\n"))));
        await store.createReadWrite("c1", "base");
        await store.createReadWrite("c2", "base");
        const p1 = await store.get("c1");
        const p2 = await store.get("c2");
        expect(await readFile(join(p1, "f"), "utf8")).toBe("layer\n");
        expect(await readFile(join(p2, "f"), "utf8")).toBe("layer\n");
        expect(guests() - before).toBe(global ? 1 : 2);
        // Each service VM has its scratch disk, as the seed gave them: scratch/<vm>.vhdx.
        const scratch = join(home, String(global), "scratch");
        expect((await readdir(scratch)).sort()).toEqual(global ? ["_lcow_global_svm_.vhdx"] : ["c1_svm.vhdx", "c2_svm.vhdx"]);
        await store.put("c1");
        await store.put("c2");
        expect(guests() - before).toBe(global ? 1 : 0);
        await store.cleanup();
        expect(guests() - before).toBe(0);
        expect(await readdir(scratch)).toEqual([]);
      }
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it("names the missing guest agent when lcow.guest is not set", async () => {
    const home = await mkdtemp(join(tmpdir(), "lcow-uvm-noguest-"));
    const saved = process.env.LCOW_GUEST;
    delete process.env.LCOW_GUEST;
    try {
      const store = await init(home, ["lcow.mounter=uvm"], { fsync: false });
      await store.create("l");
      await expect(store.get("l")).rejects.toMatchObject({ name: "DriverError", message: expect.stringContaining("lcow.guest") });
    } finally {
      if (saved !== undefined) process.env.LCOW_GUEST = saved;
      await rm(home, { recursive: true, force: true });
    }
  });
});
