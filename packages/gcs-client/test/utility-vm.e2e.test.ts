// The utility-VM handle end to end on Linux: the VM is apps/guest started by the LinuxLauncher in
// its own mount and pid namespaces; disks are real layer.vhd files made by @lcow/vhd, mounted by
// the guest through loop devices. Needs root, unshare, losetup, e2fsck and a built apps/guest.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { convertTar } from "@lcow/vhd";
import { LinuxLauncher, UtilityVM, createSandbox, tarToVhd, vhdToTar, isGcsError } from "../src/index.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const GUEST = resolve(HERE, "../../../apps/guest/dist/main.js");
const root = process.getuid?.() === 0;
const tool = (name: string) => spawnSync("sh", ["-c", `command -v ${name}`]).status === 0;
const supported = process.platform === "linux" && root && existsSync(GUEST) && tool("unshare") && tool("losetup");

function loopsOf(file: string): string {
  return execFileSync("losetup", ["-j", file], { encoding: "utf8" }).trim();
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

describe.skipIf(!supported)("UtilityVM with the Linux launcher and apps/guest", () => {
  let work: string;
  let layer: string;
  let tarFile: string;
  let vm: UtilityVM;
  const launcher = new LinuxLauncher({ guestCommand: [process.execPath, GUEST] });

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "lcow-uvm-test-"));
    const tree = join(work, "tree");
    await mkdir(join(tree, "etc"), { recursive: true });
    await writeFile(join(tree, "etc", "hostname"), "lcow-guest\n");
    await writeFile(join(tree, "hello.txt"), "hello from a layer\n");
    tarFile = join(work, "layer.tar");
    execFileSync("tar", ["-C", tree, "-cf", tarFile, "."]);
    layer = join(work, "layer.vhd");
    await convertTar(tarFile, layer, { fsync: false });
    vm = await UtilityVM.start({ name: "uvm-e2e", launcher, timeoutSeconds: 60 });
  });

  afterAll(async () => {
    await vm?.terminate();
    await rm(work, { recursive: true, force: true });
  });

  it("runs a process with stdin, stdout, stderr and its exit code", async () => {
    const result = await vm.run(["/bin/sh", "-c", "cat; echo oops >&2; exit 3"], { stdin: "piped through\n" });
    expect(result.exitCode).toBe(3);
    expect(result.stdout.toString()).toBe("piped through\n");
    expect(result.stderr.toString()).toBe("oops\n");
  });

  it("reports a signal death as 4294967295", async () => {
    const result = await vm.run(["/bin/sh", "-c", "kill -9 $$"]);
    expect(result.exitCode).toBe(0xffff_ffff);
  });

  it("hot-adds a layer, shares it by reference count, and releases it with the last reference", async () => {
    const first = await vm.addDisk(layer, { readOnly: true });
    const second = await vm.addDisk(layer, { readOnly: true });
    expect(second.guestPath).toBe(first.guestPath);
    expect(second.refs).toBe(2);
    const seen = vm.hostPath(`${first.guestPath}/hello.txt`)!;
    expect(await readFile(seen, "utf8")).toBe("hello from a layer\n");
    // The mount lives in the guest's namespace only.
    expect(existsSync(`${first.guestPath}/hello.txt`)).toBe(false);
    expect(loopsOf(layer)).not.toBe("");
    // Read-write on top of a read-only attachment is refused, with a code.
    await expect(vm.addDisk(layer, { readOnly: false })).rejects.toMatchObject({ name: "GcsError", code: "ALREADY_EXISTS" });

    await vm.removeDisk(layer);
    expect(await readFile(seen, "utf8")).toBe("hello from a layer\n");
    await vm.removeDisk(layer);
    expect(existsSync(seen)).toBe(false);
    expect(loopsOf(layer)).toBe("");
    await expect(vm.removeDisk(layer)).rejects.toMatchObject({ code: "NOT_FOUND" });
  });

  it("combines layers and a sandbox into a writable union", async () => {
    const sandbox = join(work, "sandbox.vhdx");
    const { createSandbox: blankSandbox } = await import("@lcow/vhd");
    await blankSandbox(sandbox);
    const lower = await vm.addDisk(layer, { readOnly: true });
    const scratch = await vm.addDisk(sandbox, { readOnly: false });
    const rootfs = "/run/gcs/c/union-test/rootfs";
    await vm.combineLayers(rootfs, [lower.guestPath], scratch.guestPath);
    const view = vm.hostPath(rootfs)!;
    expect(await readFile(join(view, "etc/hostname"), "utf8")).toBe("lcow-guest\n");
    await writeFile(join(view, "written.txt"), "new\n");
    expect(await readFile(vm.hostPath(`${scratch.guestPath}/upper/written.txt`)!, "utf8")).toBe("new\n");
    await vm.removeCombinedLayers(rootfs);
    await vm.removeDisk(sandbox);
    await vm.removeDisk(layer);
    expect(loopsOf(layer)).toBe("");
  });

  it("runs the 2017 tools: tar2vhd, vhd2tar and createSandbox", async () => {
    const made = join(work, "tool-layer.vhd");
    const bytes = await tarToVhd(vm, made, Readable.from([await readFile(tarFile)]));
    expect(bytes).toBe((await stat(made)).size);
    const ext4 = join(work, "tool-layer.ext4");
    execFileSync("sh", ["-c", `head -c ${bytes - 512} '${made}' > '${ext4}'`]);
    expect(spawnSync("e2fsck", ["-fn", ext4]).status).toBe(0);

    const tar = await collect(await vhdToTar(vm, made, "", false));
    const listing = execFileSync("tar", ["-tf", "-"], { input: tar, encoding: "utf8" });
    expect(listing).toContain("hello.txt");
    expect(listing).toContain("etc/hostname");

    const sandbox = join(work, "tool-sandbox.vhdx");
    const cache = join(work, "cache-sandbox.vhdx");
    await createSandbox(vm, sandbox, 20, cache);
    expect(spawnSync("qemu-img", ["check", "-f", "vhdx", sandbox]).status).toBe(0);
    expect(existsSync(cache)).toBe(true);
    // A failing tool is an error, not a short file.
    await expect(tarToVhd(vm, join(work, "bad.vhd"), Readable.from([Buffer.from("not a tar at all")]))).rejects.toMatchObject({ name: "GcsError" });
    expect(existsSync(join(work, "bad.vhd"))).toBe(false);
  });

  it("a guest killed mid-operation fails the operation with a typed error and leaves no mount or loop device", async () => {
    // Its own copy of the layer, so that only this VM's loop device can hold it.
    const own = join(work, "victim-layer.vhd");
    await writeFile(own, await readFile(layer));
    const victim = await UtilityVM.start({ name: "uvm-victim", launcher, timeoutSeconds: 60 });
    const victimPid = victim.pid!;
    try {
      const disk = await victim.addDisk(own, { readOnly: true });
      // And a sandbox through a FUSE export, written to: the hardest kind to let go of.
      const sandbox = join(work, "victim-sandbox.vhdx");
      const { createSandbox: blankSandbox } = await import("@lcow/vhd");
      await blankSandbox(sandbox);
      const scratch = await victim.addDisk(sandbox, { readOnly: false });
      await writeFile(victim.hostPath(`${scratch.guestPath}/upper/dirty`)!, Buffer.alloc(1 << 20, 7));
      const seen = victim.hostPath(`${disk.guestPath}/hello.txt`)!;
      expect(await readFile(seen, "utf8")).toBe("hello from a layer\n");
      const sleeper = await victim.spawn({ CommandArgs: ["/bin/sleep", "30"], Environment: { PATH: "/bin:/usr/bin" } });
      const waiting = sleeper.wait();
      process.kill(victimPid, "SIGKILL");
      const err = await waiting.then(() => undefined, (e: unknown) => e);
      expect(isGcsError(err)).toBe(true);
      expect((err as { code: string }).code).toBe("CLOSED");
      await expect(victim.addDisk(join(work, "tool-layer.vhd"), { readOnly: true })).rejects.toMatchObject({ name: "GcsError" });
      await victim.exited;
    } finally {
      await victim.terminate();
    }
    // terminate() waited for the kernel to free the dead guest's loop devices; the mounts were
    // never visible outside the guest's namespace, and the namespace is gone.
    expect(loopsOf(own)).toBe("");
    expect(() => process.kill(victimPid, 0)).toThrow();
    // No loop device is left on a file only the dead guest could see (losetup shows those as "/").
    const orphans = execFileSync("losetup", ["--list", "--noheadings", "--output", "NAME,BACK-FILE"], { encoding: "utf8" })
      .split("\n")
      .filter((l) => /\s\/$/.test(l.trim()) || l.includes(" /\n"));
    expect(orphans).toEqual([]);
  });
});
