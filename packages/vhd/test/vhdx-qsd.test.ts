// A VHDX we create, exported as a raw file by qemu-storage-daemon's FUSE export (Debian
// package qemu-system-common), takes writes (plain file writes, and an ext4 filesystem made
// and mounted read-write through a loop device) that our reader then sees.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createVhdx, openVhdxSource } from "../src/vhdx/index.js";
import { run, runOk } from "./harness/exec.js";
import { canLoopMount } from "./harness/loop.js";
import { makeTempDir } from "./harness/tmp.js";
import { firstDiff, randomBytesSeeded, readAll } from "./vhdx-helpers.js";

const MiB = 1024 * 1024;
const haveQsd = process.getuid?.() === 0 && existsSync("/dev/fuse") && ["/usr/bin/qemu-storage-daemon", "/usr/local/bin/qemu-storage-daemon"].some(existsSync);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let dir: string;

beforeAll(async () => {
  dir = await makeTempDir("vhdx-qsd");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Exports `vhdx` as the raw file `mountpoint` and resolves once the FUSE export is up. */
async function exportVhdx(vhdx: string, mountpoint: string, size: number): Promise<ChildProcess> {
  await writeFile(mountpoint, "");
  const child = spawn(
    "qemu-storage-daemon",
    [
      "--blockdev", `driver=file,node-name=file0,filename=${vhdx}`,
      "--blockdev", "driver=vhdx,node-name=disk0,file=file0",
      "--export", `type=fuse,id=exp0,node-name=disk0,mountpoint=${mountpoint},writable=on`,
    ],
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

/**
 * Stops the daemon with `signal` (SIGTERM: clean close; SIGKILL: as a crash) and waits for it.
 * A killed daemon leaves its FUSE mount behind ("transport endpoint is not connected"), so the
 * mountpoint is unmounted if it still is one.
 */
async function stop(child: ChildProcess, signal: NodeJS.Signals, mountpoint: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill(signal);
    await exited;
  }
  const mounts = await readFile("/proc/mounts", "utf8");
  if (mounts.split("\n").some((l) => l.split(" ")[1] === mountpoint)) await runOk("umount", ["-l", mountpoint]);
}

async function writeThrough(path: string, writes: [number, Uint8Array][]): Promise<void> {
  const fh = await open(path, "r+");
  try {
    for (const [at, d] of writes) await fh.write(d, 0, d.length, at);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

describe.skipIf(!haveQsd)("VHDX through qemu-storage-daemon's FUSE export", () => {
  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    it(`takes raw writes that our reader then sees (daemon stopped with ${signal})`, async () => {
      const size = 64 * MiB;
      const vhdx = join(dir, `raw-${signal}.vhdx`);
      const sink = await createVhdx(vhdx, { virtualSize: size, seed: "qsd" });
      const model = new Uint8Array(size);
      const first = randomBytesSeeded(2 * MiB, 1);
      model.set(first, 0);
      await sink.write(first, 0);
      await sink.close();
      const writes: [number, Uint8Array][] = [
        [3 * MiB, randomBytesSeeded(2 * MiB, 2)], // new blocks: qemu allocates them
        [MiB + 512, randomBytesSeeded(4096, 3)], // inside one of our blocks
        [size - 4096, randomBytesSeeded(4096, 4)],
      ];
      for (const [at, d] of writes) model.set(d, at);
      const mountpoint = join(dir, `raw-${signal}.raw`);
      const child = await exportVhdx(vhdx, mountpoint, size);
      try {
        await writeThrough(mountpoint, writes);
      } finally {
        await stop(child, signal, mountpoint);
      }
      const { source, notes } = await openVhdxSource(vhdx);
      // qemu 7.2 applies each log entry and clears the header's LogGuid right after flushing it,
      // so even a killed daemon leaves nothing to replay; the crafted dirty log of
      // vhdx-log.test.ts covers replay.
      expect(notes).toEqual([]);
      expect(firstDiff(await readAll(source), model)).toBe(-1);
      await source.close();
      await runOk("qemu-img", ["check", "-r", "all", "-f", "vhdx", vhdx]);
    });
  }

  it.skipIf(!canLoopMount())("holds an ext4 filesystem made and mounted read-write through a loop device", async () => {
    const size = 128 * MiB;
    const vhdx = join(dir, "ext4.vhdx");
    const sink = await createVhdx(vhdx, { virtualSize: size, seed: "qsd-ext4" });
    await sink.close();
    const mountpoint = join(dir, "ext4.raw");
    const mnt = join(dir, "mnt");
    await mkdir(mnt);
    const payload = randomBytesSeeded(3 * MiB + 123, 9);
    const child = await exportVhdx(vhdx, mountpoint, size);
    try {
      await runOk("mkfs.ext4", ["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", mountpoint]);
      await runOk("mount", ["-o", "loop,rw", mountpoint, mnt]);
      try {
        await writeFile(join(mnt, "file.bin"), payload);
      } finally {
        await run("umount", [mnt]);
      }
    } finally {
      await stop(child, "SIGTERM", mountpoint);
    }
    const { source } = await openVhdxSource(vhdx);
    const raw = join(dir, "ext4-ours.raw");
    await writeFile(raw, await readAll(source));
    await source.close();
    await runOk("e2fsck", ["-fn", raw]);
    const cat = await runOk("debugfs", ["-R", "cat /file.bin", raw], { binary: true });
    expect(Buffer.from(cat.stdout, "latin1").equals(Buffer.from(payload))).toBe(true);
  });
});
