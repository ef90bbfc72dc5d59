// Acceptance (issue 5), interop: a sandbox we create, exported as a raw device by
// qemu-storage-daemon's FUSE export (Debian's qemu-system-common) and mounted read-write by the
// Linux kernel through a loop device — as the `kernel` mounter will — takes writes that our
// reader then sees. A cache copy of the blank behaves the same, and the cache is untouched.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, stat, writeFile, symlink as fsSymlink } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSandbox, Ext4Reader, exportImage, openImage, SandboxCache } from "../src/index.js";
import { run, runOk } from "./harness/exec.js";
import { canLoopMount } from "./harness/loop.js";
import { makeTempDir } from "./harness/tmp.js";
import { randomBytesSeeded } from "./vhdx-helpers.js";

const MiB = 2 ** 20;
const haveQsd = process.getuid?.() === 0 && existsSync("/dev/fuse") && ["/usr/bin/qemu-storage-daemon", "/usr/local/bin/qemu-storage-daemon"].some(existsSync) && canLoopMount();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let dir: string;

beforeAll(async () => {
  dir = await makeTempDir("sandbox-qsd");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Exports `vhdx` read-write as the raw file `mountpoint`; resolves once the FUSE export is up. */
async function exportVhdx(vhdx: string, mountpoint: string, size: number): Promise<ChildProcess> {
  await writeFile(mountpoint, "");
  const child = spawn(
    "qemu-storage-daemon",
    ["--blockdev", `driver=file,node-name=file0,filename=${vhdx}`, "--blockdev", "driver=vhdx,node-name=disk0,file=file0", "--export", `type=fuse,id=exp0,node-name=disk0,mountpoint=${mountpoint},writable=on`],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`qemu-storage-daemon exited ${child.exitCode}: ${stderr}`);
    if ((await stat(mountpoint)).size === size) return child;
    await sleep(50);
  }
  child.kill("SIGKILL");
  throw new Error(`FUSE export of ${vhdx} did not appear: ${stderr}`);
}

async function stopDaemon(child: ChildProcess, mountpoint: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }
  const mounts = await readFile("/proc/mounts", "utf8");
  if (mounts.split("\n").some((l) => l.split(" ")[1] === mountpoint)) await runOk("umount", ["-l", mountpoint]);
}

/**
 * Mounts the sandbox read-write through qemu-storage-daemon + a loop device, runs `fn` on the
 * mounted filesystem, then unmounts (the kernel flushes), stops the daemon (qemu flushes the
 * VHDX) and checks the VHDX with qemu-img.
 */
async function withMountedSandbox(vhdx: string, size: number, name: string, fn: (root: string) => Promise<void>): Promise<void> {
  const raw = join(dir, `${name}.raw`);
  const mnt = join(dir, `${name}.mnt`);
  await mkdir(mnt);
  const child = await exportVhdx(vhdx, raw, size);
  try {
    await runOk("mount", ["-t", "ext4", "-o", "loop,rw", raw, mnt]);
    try {
      await fn(mnt);
    } finally {
      const r = await run("umount", [mnt]);
      if (r.code !== 0) await run("umount", ["-l", mnt]);
    }
  } finally {
    await stopDaemon(child, raw);
  }
  await runOk("qemu-img", ["check", "-f", "vhdx", vhdx]);
}

/** The content of a regular file inside the VHDX's filesystem, read with our reader. */
async function readThroughUs(vhdx: string, path: string): Promise<Buffer> {
  const image = await openImage(vhdx);
  try {
    const reader = await Ext4Reader.open(image.source);
    const ino = await reader.lookup(path);
    return Buffer.from(await reader.readAll(ino, await reader.readInode(ino)));
  } finally {
    await image.source.close();
  }
}

/** Names and sizes of the entries of a tar, via GNU tar. */
async function tarListing(tar: string): Promise<string[]> {
  return (await runOk("tar", ["-tvf", tar])).stdout
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const f = l.split(/\s+/);
      return `${f[0]![0]} ${f[2]} ${f.slice(5).join(" ")}`;
    })
    .sort();
}

describe.skipIf(!haveQsd)("sandbox mounted read-write through qemu-storage-daemon and a loop device", () => {
  it("takes writes (files, a symlink, a directory, 5 MiB of data) that our reader and export then see", async () => {
    const size = 20 * 2 ** 30;
    const vhdx = join(dir, "sandbox.vhdx");
    await createSandbox(vhdx, { size });
    const big = randomBytesSeeded(5 * MiB + 123, 5);
    await withMountedSandbox(vhdx, size, "sandbox", async (root) => {
      await mkdir(join(root, "upper", "etc"), { recursive: true });
      await writeFile(join(root, "upper", "etc", "hostname"), "container\n");
      await writeFile(join(root, "upper", "big.bin"), big);
      await fsSymlink("etc/hostname", join(root, "upper", "link"));
      await mkdir(join(root, "work", "work"));
    });
    expect((await readThroughUs(vhdx, "/upper/etc/hostname")).toString()).toBe("container\n");
    expect(Buffer.compare(await readThroughUs(vhdx, "/upper/big.bin"), Buffer.from(big))).toBe(0);
    const tar = join(dir, "sandbox.tar");
    await exportImage(vhdx, tar, { keepWhiteouts: true });
    expect(await tarListing(tar)).toEqual(
      expect.arrayContaining(["d 0 upper/etc/", `- ${big.length} upper/big.bin`, "- 10 upper/etc/hostname", "l 0 upper/link -> etc/hostname", "d 0 work/work/"]),
    );
    // The file is still a valid VHDX and a clean filesystem after the kernel's writes.
    await runOk("qemu-img", ["convert", "-f", "vhdx", "-O", "raw", vhdx, join(dir, "after.raw")]);
    await runOk("e2fsck", ["-fn", join(dir, "after.raw")]);
    await rm(join(dir, "after.raw"));
  });

  it("a copy from the cache takes writes without changing the cached blank", async () => {
    const cache = new SandboxCache(join(dir, "cache"));
    const size = 2 * 2 ** 30;
    const copy = await cache.copyTo("sandbox", size, join(dir, "layer.vhdx"));
    const blank = await readFile(copy.source);
    await withMountedSandbox(copy.path, size, "copy", async (root) => {
      await writeFile(join(root, "upper", "hello.txt"), "hello from the kernel\n");
    });
    expect((await readThroughUs(copy.path, "/upper/hello.txt")).toString()).toBe("hello from the kernel\n");
    expect(Buffer.compare(await readFile(copy.source), blank)).toBe(0);
  });
});
