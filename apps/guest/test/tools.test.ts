// The 2017 in-VM tools, run the way the 2017 client ran them: ExecuteProcess of the tool's name
// with stdio relays, the data through stdin and stdout. Outputs are checked with the real tools
// (e2fsck, tar, qemu-img) and against @lcow/vhd on the host (the conversion is deterministic).
import { execFileSync, spawnSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { convertTar, createSandbox, exportImage } from "@lcow/vhd";
import { guestMain, resultOf, TestGuest } from "./harness.js";
import { runProcess } from "./process-helper.js";
import { makeTar } from "./tar.js";

let guest: TestGuest;

beforeAll(async () => {
  guest = await TestGuest.start({ isolated: true });
  expect(resultOf(await guest.conn.negotiate())).toBe(0);
});

afterAll(async () => {
  const crashed = guest.crashed();
  await guest.cleanup();
  expect(crashed, guest.stderr).toBe(false);
});

/** The 2017 client's tool environment (opengcs createUtilsProcess). */
const TOOL_ENV = { WorkingDirectory: "/bin", Environment: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:" } };

/** `tar -tvf -` of `tar`, names only, sorted. */
function listTar(tar: Uint8Array): string[] {
  return execFileSync("tar", ["-tf", "-"], { input: tar, encoding: "utf8" }).split("\n").filter(Boolean).sort();
}

describe("tar2vhd and vhd2tar", () => {
  let tarPath: string;
  let vhd: Buffer;

  beforeAll(async () => {
    tarPath = await makeTar(join(guest.dir, "host", "t2v"), { "etc/hello": "hello\n", "usr/bin/tool": "#!/bin/sh\n", "etc/.wh.removed": "" });
  });

  it("tar2vhd turns a tar on stdin into a VHD on stdout that e2fsck passes, byte for byte what @lcow/vhd makes", async () => {
    const out = await runProcess(guest, [], await readFile(tarPath), { CommandLine: "tar2vhd", ...TOOL_ENV });
    expect(out.stderr).toBe("");
    expect(out.exitCode).toBe(0);
    vhd = out.stdout;
    expect(vhd.subarray(vhd.length - 512, vhd.length - 504).toString("latin1")).toBe("conectix");
    const ext4 = join(guest.dir, "host", "t2v.ext4");
    await writeFile(ext4, vhd.subarray(0, vhd.length - 512));
    const fsck = spawnSync("e2fsck", ["-fn", ext4], { encoding: "utf8" });
    expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0);
    const host = join(guest.dir, "host", "t2v-host.vhd");
    await convertTar(tarPath, host);
    expect(vhd.equals(await readFile(host))).toBe(true);
    // Its temporary file is gone.
    expect(execFileSync("ls", ["-A", guest.hostPath(join(guest.dir, "state", "tmp"))], { encoding: "utf8" })).toBe("");
  });

  it("vhd2tar gives the layer back as a tar, whiteouts as .wh. entries", async () => {
    const out = await runProcess(guest, ["/usr/bin/vhd2tar"], vhd, TOOL_ENV);
    expect(out).toMatchObject({ exitCode: 0, stderr: "" });
    expect(listTar(out.stdout)).toEqual(["./", "etc/", "etc/.wh.removed", "etc/hello", "usr/", "usr/bin/", "usr/bin/tool"]);
    const chunks: Buffer[] = [];
    const { Writable } = await import("node:stream");
    await exportImage(join(guest.dir, "host", "t2v-host.vhd"), new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }));
    expect(out.stdout.equals(Buffer.concat(chunks))).toBe(true);
  });

  it("fails with exit 1 and a message for input that is not a tar, and for flags it does not support", async () => {
    const bad = await runProcess(guest, ["tar2vhd"], Buffer.alloc(4096, 0x41), TOOL_ENV);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/^tar2vhd: /);
    const fs = await runProcess(guest, ["tar2vhd", "-fs", "xfs"], undefined, TOOL_ENV);
    expect(fs).toMatchObject({ exitCode: 1, stderr: 'tar2vhd: -fs "xfs" is not supported (only ext4)\n' });
    const flag = await runProcess(guest, ["vhd2tar", "-bogus"], undefined, TOOL_ENV);
    expect(flag).toMatchObject({ exitCode: 1, stderr: "vhd2tar: flag provided but not defined: -bogus\n" });
  });
});

describe("createSandbox", () => {
  it("writes a blank sandbox VHDX of the size asked for", async () => {
    const out = await runProcess(guest, ["createSandbox", "-size", String(256 << 20)], undefined, TOOL_ENV);
    expect(out).toMatchObject({ exitCode: 0, stderr: "" });
    const file = join(guest.dir, "host", "made.vhdx");
    await writeFile(file, out.stdout);
    const info = JSON.parse(execFileSync("qemu-img", ["info", "--output=json", file], { encoding: "utf8" })) as { format: string; "virtual-size": number };
    expect(info).toMatchObject({ format: "vhdx", "virtual-size": 256 << 20 });
    execFileSync("qemu-img", ["check", file]);
    const tar = await runProcess(guest, ["vhd2tar"], out.stdout, TOOL_ENV);
    expect(listTar(tar.stdout)).toEqual(["./", "upper/", "work/"]);
  });
});

describe("exportSandbox", () => {
  it("tars the sandbox's upper/ of a union, deletions as .wh. entries", async () => {
    const layer = join(guest.dir, "host", "base.vhd");
    await convertTar(await makeTar(join(guest.dir, "host", "base"), { "etc/os": "base\n", "etc/gone": "x\n" }), layer);
    const sandbox = join(guest.dir, "host", "sandbox.vhdx");
    await createSandbox(sandbox, { size: 64 << 20 });
    await guest.attach(0, 1, layer, true);
    await guest.attach(0, 2, sandbox, false);
    const ok = async (request: Record<string, unknown>) => expect((await guest.conn.modify(request)).body.ErrorMessage ?? "").toBe("");
    await ok({ ResourceType: "MappedVirtualDisk", Settings: { MountPath: "/run/mounts/scsi/m1", Controller: 0, Lun: 1, ReadOnly: true } });
    await ok({ ResourceType: "MappedVirtualDisk", Settings: { MountPath: "/run/mounts/scsi/m2", Controller: 0, Lun: 2 } });
    await ok({ ResourceType: "CombinedLayers", Settings: { ContainerRootPath: "/run/gcs/c/x/rootfs", Layers: [{ Path: "/run/mounts/scsi/m1" }], ScratchPath: "/run/mounts/scsi/m2" } });
    const view = guest.hostPath("/run/gcs/c/x/rootfs");
    await writeFile(join(view, "etc/new"), "new\n");
    execFileSync("rm", [join(view, "etc/gone")]);
    const out = await runProcess(guest, ["exportSandbox", "-path", "/run/mounts/scsi/m2"], undefined, TOOL_ENV);
    expect(out).toMatchObject({ exitCode: 0, stderr: "" });
    expect(listTar(out.stdout)).toEqual(["etc/", "etc/.wh.gone", "etc/new"]);
    const content = execFileSync("tar", ["-xOf", "-", "etc/new"], { input: out.stdout, encoding: "utf8" });
    expect(content).toBe("new\n");
    // A path that is not on a disk the guest mounted cannot be exported.
    const notDisk = await runProcess(guest, ["exportSandbox", "-path", "/run/gcs"], undefined, TOOL_ENV);
    expect(notDisk.exitCode).toBe(1);
    expect(notDisk.stderr).toMatch(/not on an ext4 filesystem mounted from a loop device/);
    const noPath = await runProcess(guest, ["exportSandbox"], undefined, TOOL_ENV);
    expect(noPath).toMatchObject({ exitCode: 1, stderr: "exportSandbox: -path is required\n" });
  });
});

describe("command line", () => {
  it("exits 127 for an unknown tool, like a missing command", () => {
    const r = spawnSync(process.execPath, [guestMain, "tool", "remotefs"], { encoding: "utf8" });
    expect(r.status).toBe(127);
    expect(r.stderr).toMatch(/unknown tool "remotefs"/);
  });

  it("refuses --isolated outside namespaces of its own, before mounting anything", () => {
    const mounts = () => execFileSync("findmnt", ["-rn", "-o", "TARGET"], { encoding: "utf8" });
    const before = mounts();
    const args = [guestMain, "serve", "--bridge", "unix:/nonexistent.sock", "--stdio", "unix:/nonexistent", "--scsi-dir", "/nonexistent", "--state-dir", join(guest.dir, "st"), "--isolated"];
    for (const [file, argv] of [
      [process.execPath, args],
      ["unshare", ["--pid", "--fork", "--", process.execPath, ...args]],
    ] as const) {
      const r = spawnSync(file, argv, { encoding: "utf8" });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/--isolated needs mount and pid namespaces of its own/);
    }
    expect(mounts()).toBe(before);
  });
});
