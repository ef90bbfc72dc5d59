// Disks and unions for real (root, loop devices, FUSE, overlayfs): the guest runs under
// unshare as the launcher starts it, disks are "attached" through the SCSI folder, and the host
// looks at the guest's mounts through /proc/<pid>/root.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { convertTar, createSandbox } from "@lcow/vhd";
import { Hresult, Rpc, baseRequest } from "@lcow/gcs-client/protocol";
import { eventually, loopsOf, resultOf, TestGuest } from "./harness.js";
import { makeTar } from "./tar.js";

let guest: TestGuest;

beforeEach(async () => {
  guest = await TestGuest.start({ isolated: true });
  expect(resultOf(await guest.conn.negotiate())).toBe(0);
});

afterEach(async () => {
  const crashed = guest.crashed();
  await guest.cleanup();
  expect(crashed, guest.stderr).toBe(false);
});

/** A layer.vhd holding `files` (path -> content), made with @lcow/vhd from a tar. */
async function layer(name: string, files: Record<string, string>): Promise<string> {
  const tar = await makeTar(join(guest.dir, "host", `${name}-src`), files);
  const out = join(guest.dir, "host", `${name}.vhd`);
  await convertTar(tar, out);
  return out;
}

const disk = (mountPath: string, controller: number, lun: number, readOnly: boolean, requestType = "Add") => ({
  ResourceType: "MappedVirtualDisk",
  RequestType: requestType,
  Settings: { MountPath: mountPath, Lun: lun, Controller: controller, ReadOnly: readOnly, Options: readOnly ? ["ro"] : [] },
});
/** Every loop device with its backing file, as losetup prints them. */
function loopList(): string {
  return execFileSync("losetup", ["--list", "--noheadings", "--output", "NAME,BACK-FILE"], { encoding: "utf8" });
}

/** True while a process whose command line holds `text` runs. */
function pgrep(text: string): boolean {
  try {
    execFileSync("pgrep", ["-f", text]);
    return true;
  } catch {
    return false;
  }
}

const unplug = (controller: number, lun: number) => ({ ResourceType: "SCSIDevice", RequestType: "Remove", Settings: { Controller: controller, Lun: lun } });

async function ok(request: Record<string, unknown>): Promise<void> {
  const r = await guest.conn.modify(request);
  expect(r.body.ErrorMessage ?? "", JSON.stringify(request)).toBe("");
  expect(resultOf(r)).toBe(0);
}

describe("MappedVirtualDisk", () => {
  it("mounts a layer.vhd read-only, readable through /proc/<pid>/root, and releases it on Remove", async () => {
    const vhd = await layer("a", { "etc/hello": "from layer a\n" });
    await guest.attach(0, 1, vhd, true);
    await ok(disk("/run/mounts/scsi/m0", 0, 1, true));
    expect(await readFile(guest.hostPath("/run/mounts/scsi/m0/etc/hello"), "utf8")).toBe("from layer a\n");
    expect(loopsOf(vhd)).not.toBe("");
    // Private to the guest: the host's own /run/mounts is untouched.
    expect(existsSync("/run/mounts/scsi/m0/etc/hello")).toBe(false);
    const w = await guest.conn.request(Rpc.DumpStacks, baseRequest());
    expect(w.body.GuestStacks).toContain(`scsi 0-1: ${vhd} (vhd, ro attachment)`);
    await ok(disk("/run/mounts/scsi/m0", 0, 1, true, "Remove"));
    await ok(unplug(0, 1));
    await guest.detach(0, 1);
    expect(loopsOf(vhd)).toBe("");
    expect(await readdir(guest.hostPath("/run/mounts/scsi/m0"))).toEqual([]);
  });

  it("waits for the host's attach, however late", async () => {
    const vhd = await layer("late", { f: "late\n" });
    const add = guest.conn.modify(disk("/run/mounts/scsi/m3", 1, 7, true));
    await new Promise((r) => setTimeout(r, 300));
    await guest.attach(1, 7, vhd, true);
    expect(resultOf(await add)).toBe(0);
    expect(await readFile(guest.hostPath("/run/mounts/scsi/m3/f"), "utf8")).toBe("late\n");
    await ok(disk("/run/mounts/scsi/m3", 1, 7, true, "Remove"));
    await ok(unplug(1, 7));
  });

  it("mounts a sandbox.vhdx read-write through qemu-storage-daemon, keeps writes, and releases daemon and loop", async () => {
    const vhdx = join(guest.dir, "host", "sandbox.vhdx");
    await createSandbox(vhdx, { size: 64 << 20 });
    await guest.attach(0, 2, vhdx, false);
    await ok(disk("/run/mounts/scsi/m1", 0, 2, false));
    await writeFile(guest.hostPath("/run/mounts/scsi/m1/upper/written"), "kept\n");
    // The FUSE export lives in the guest's daemon namespace; the loop device names it by its path there.
    const exportFile = join(guest.dir, "state", "exports", "0-2.raw");
    expect(loopList()).toContain(exportFile);
    expect(pgrep(exportFile)).toBe(true);
    await ok(disk("/run/mounts/scsi/m1", 0, 2, false, "Remove"));
    expect(loopList()).not.toContain(exportFile);
    expect(pgrep(exportFile)).toBe(false);
    // Mounted again, read-only this time: the write is in the VHDX.
    await ok(disk("/run/mounts/scsi/m1", 0, 2, true));
    expect(await readFile(guest.hostPath("/run/mounts/scsi/m1/upper/written"), "utf8")).toBe("kept\n");
    await ok(disk("/run/mounts/scsi/m1", 0, 2, true, "Remove"));
    await ok(unplug(0, 2));
  });

  it("attaches without mounting when MountPath is empty, and refuses read-write on a read-only attachment", async () => {
    const vhd = await layer("b", { b: "b\n" });
    await guest.attach(0, 3, vhd, true);
    await ok(disk("", 0, 3, true));
    const rw = await guest.conn.modify(disk("/run/mounts/scsi/m4", 0, 3, false));
    expect(resultOf(rw)).toBe(Hresult.E_INVALIDARG);
    await ok(disk("", 0, 3, true, "Remove"));
    await ok(unplug(0, 3));
    expect(loopsOf(vhd)).toBe("");
  });

  it("fails a disk that is not ext4 and leaves nothing behind", async () => {
    const junk = join(guest.dir, "host", "junk.img");
    await writeFile(junk, Buffer.alloc(1 << 20, 7));
    await guest.attach(0, 4, junk, true);
    const r = await guest.conn.modify(disk("/run/mounts/scsi/m5", 0, 4, true));
    expect(resultOf(r)).toBe(Hresult.E_FAIL);
    expect(r.body.ErrorMessage).toMatch(/mount/);
    expect(loopsOf(junk)).toBe("");
    await ok(unplug(0, 4));
  });
});

describe("CombinedLayers", () => {
  it("unions two layers and a sandbox, takes writes into the sandbox's upper, and unmounts on Remove", async () => {
    const base = await layer("base", { "etc/os": "base\n", "etc/gone": "x\n", "bin/tool": "v1\n" });
    const top = await layer("top", { "bin/tool": "v2\n" });
    const vhdx = join(guest.dir, "host", "sandbox.vhdx");
    await createSandbox(vhdx, { size: 64 << 20 });
    await guest.attach(0, 1, base, true);
    await guest.attach(0, 2, top, true);
    await guest.attach(0, 3, vhdx, false);
    await ok(disk("/run/mounts/scsi/m1", 0, 1, true));
    await ok(disk("/run/mounts/scsi/m2", 0, 2, true));
    await ok(disk("/run/mounts/scsi/m3", 0, 3, false));
    const rootfs = "/run/gcs/c/abc/rootfs";
    await ok({
      ResourceType: "CombinedLayers",
      RequestType: "Add",
      Settings: { ContainerRootPath: rootfs, Layers: [{ Path: "/run/mounts/scsi/m2" }, { Path: "/run/mounts/scsi/m1" }], ScratchPath: "/run/mounts/scsi/m3/scratch" },
    });
    const view = guest.hostPath(rootfs);
    expect(await readFile(join(view, "bin/tool"), "utf8")).toBe("v2\n");
    expect(await readFile(join(view, "etc/os"), "utf8")).toBe("base\n");
    await writeFile(join(view, "etc/new"), "new\n");
    execFileSync("rm", [join(view, "etc/gone")]);
    const upper = guest.hostPath("/run/mounts/scsi/m3/scratch/upper");
    expect(await readFile(join(upper, "etc/new"), "utf8")).toBe("new\n");
    // The deletion is an overlay whiteout: a 0/0 character device.
    const whiteout = await stat(join(upper, "etc/gone"));
    expect(whiteout.isCharacterDevice() && whiteout.rdev === 0).toBe(true);
    await ok({ ResourceType: "CombinedLayers", RequestType: "Remove", Settings: { ContainerRootPath: rootfs } });
    expect(await readdir(view)).toEqual([]);
    // Removing again is a no-op.
    await ok({ ResourceType: "CombinedLayers", RequestType: "Remove", Settings: { ContainerRootPath: rootfs } });
    for (const [m, lun] of [["m1", 1], ["m2", 2], ["m3", 3]] as const) {
      await ok(disk(`/run/mounts/scsi/${m}`, 0, lun, lun !== 3, "Remove"));
      await ok(unplug(0, lun));
    }
    expect(loopsOf(base) + loopsOf(top)).toBe("");
  });

  it("makes a read-only union of one layer (padded with an empty lower dir)", async () => {
    const base = await layer("solo", { a: "a\n" });
    await guest.attach(0, 1, base, true);
    await ok(disk("/run/mounts/scsi/m1", 0, 1, true));
    await ok({ ResourceType: "CombinedLayers", Settings: { ContainerRootPath: "/run/gcs/c/ro/rootfs", Layers: [{ Path: "/run/mounts/scsi/m1" }] } });
    const view = guest.hostPath("/run/gcs/c/ro/rootfs");
    expect(await readFile(join(view, "a"), "utf8")).toBe("a\n");
    await expect(writeFile(join(view, "b"), "b")).rejects.toMatchObject({ code: "EROFS" });
    const again = await guest.conn.modify({ ResourceType: "CombinedLayers", Settings: { ContainerRootPath: "/run/gcs/c/ro/rootfs", Layers: [{ Path: "/run/mounts/scsi/m1" }] } });
    expect(resultOf(again)).toBe(Hresult.E_FAIL);
    await ok({ ResourceType: "CombinedLayers", RequestType: "Remove", Settings: { ContainerRootPath: "/run/gcs/c/ro/rootfs" } });
  });
});

describe("teardown", () => {
  it("leaves no mount, loop device or daemon when the guest is killed with a layer, a written sandbox and a union mounted", async () => {
    const vhd = await layer("k", { k: "k\n" });
    const vhdx = join(guest.dir, "host", "sandbox.vhdx");
    await createSandbox(vhdx, { size: 64 << 20 });
    await guest.attach(0, 1, vhd, true);
    await guest.attach(0, 2, vhdx, false);
    await ok(disk("/run/mounts/scsi/m1", 0, 1, true));
    await ok(disk("/run/mounts/scsi/m2", 0, 2, false));
    await ok({ ResourceType: "CombinedLayers", Settings: { ContainerRootPath: "/run/gcs/c/k/rootfs", Layers: [{ Path: "/run/mounts/scsi/m1" }], ScratchPath: "/run/mounts/scsi/m2" } });
    // Dirty data in the union's upper layer, so that the teardown must write through the export.
    await writeFile(guest.hostPath("/run/gcs/c/k/rootfs/written"), Buffer.alloc(1 << 20, 1));
    const exportFile = join(guest.dir, "state", "exports", "0-2.raw");
    const loops = loopList;
    expect(loops()).toContain(exportFile);
    expect(pgrep(exportFile)).toBe(true);
    // As a launcher that only kills unshare would: its --kill-child takes the guest down.
    guest.child.kill("SIGKILL");
    await guest.exited;
    await eventually(() => !loops().includes(exportFile) && loopsOf(vhd) === "", 10_000, "loop devices released");
    await eventually(() => !pgrep(exportFile), 5000, "qemu-storage-daemon gone");
    const mounts = execFileSync("findmnt", ["-rn", "-o", "SOURCE,TARGET"], { encoding: "utf8" });
    expect(mounts).not.toContain(guest.dir);
  });

  it("releases everything on ShutdownForced, then closes the bridge and exits 0", async () => {
    const vhd = await layer("s", { s: "s\n" });
    await guest.attach(0, 1, vhd, true);
    await ok(disk("/run/mounts/scsi/m1", 0, 1, true));
    await mkdir(join(guest.dir, "host", "x"));
    guest.conn.send(Rpc.ShutdownForced, baseRequest());
    await guest.conn.closed;
    // Released before the stream closed, not by the namespace's death.
    expect(loopsOf(vhd)).toBe("");
    expect(await guest.exited).toEqual({ code: 0, signal: null });
  });
});
