// Read-only loop mounts that are always torn down, also when the callback throws.
import { existsSync } from "node:fs";
import { mkdtemp, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, runOk, describeFailure } from "./exec.js";

export interface LoopMountOptions {
  /** Bytes of the file the loop device exposes (the ext4 part of a VHD: file size - 512). */
  sizelimit?: number;
}

/**
 * True when this process can loop-mount (root and a loop-control device). Where it cannot,
 * verifyConversion compares through debugfs instead (issue 3: "where a mount is impossible").
 */
export function canLoopMount(): boolean {
  return process.getuid?.() === 0 && existsSync("/dev/loop-control");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Attaches `imagePath` read-only to a free loop device (`losetup -r --sizelimit`), mounts it
 * read-only as ext4 on a fresh directory, runs `fn(mountPoint)`, then unmounts, detaches the
 * loop device and removes the directory in `finally`. A teardown failure is reported only when
 * `fn` succeeded (so the first cause wins).
 */
export async function withLoopMount<T>(imagePath: string, opts: LoopMountOptions, fn: (mountPoint: string) => Promise<T>): Promise<T> {
  const args = ["-r", "--find", "--show"];
  if (opts.sizelimit !== undefined) args.push("--sizelimit", String(opts.sizelimit));
  const dev = (await runOk("losetup", [...args, imagePath])).stdout.trim();
  let mountPoint: string | undefined;
  let mounted = false;
  let failed = false;
  try {
    mountPoint = await mkdtemp(join(tmpdir(), "lcow-vhd-mnt-"));
    await runOk("mount", ["-t", "ext4", "-o", "ro", dev, mountPoint]);
    mounted = true;
    return await fn(mountPoint);
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    const errors: string[] = [];
    if (mounted && mountPoint) {
      let r = await run("umount", [mountPoint]);
      for (let i = 0; r.code !== 0 && i < 10; i++) {
        await sleep(200); // EBUSY right after a reader exited
        r = await run("umount", [mountPoint]);
      }
      if (r.code !== 0) errors.push(describeFailure(r));
    }
    if (mountPoint) await rmdir(mountPoint).catch((e: Error) => errors.push(String(e)));
    const d = await run("losetup", ["-d", dev]);
    if (d.code !== 0) errors.push(describeFailure(d));
    if (errors.length && !failed) throw new Error(`loop mount teardown failed for ${imagePath} on ${dev}:\n${errors.join("\n")}`);
  }
}

/**
 * Attaches `imagePath` read-only to a free loop device limited to `sizelimit` bytes (so tools
 * such as e2fsck see exactly the ext4 bytes of a VHD without a copy), runs `fn(device)` and
 * detaches in `finally`.
 */
export async function withLoopDevice<T>(imagePath: string, opts: LoopMountOptions, fn: (device: string) => Promise<T>): Promise<T> {
  const args = ["-r", "--find", "--show"];
  if (opts.sizelimit !== undefined) args.push("--sizelimit", String(opts.sizelimit));
  const dev = (await runOk("losetup", [...args, imagePath])).stdout.trim();
  let failed = false;
  try {
    return await fn(dev);
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    const d = await run("losetup", ["-d", dev]);
    if (d.code !== 0 && !failed) throw new Error(`losetup -d ${dev} failed:\n${describeFailure(d)}`);
  }
}

/** Loop devices currently backed by `imagePath` (for leak checks in tests). */
export async function loopDevicesFor(imagePath: string): Promise<string[]> {
  const r = await runOk("losetup", ["-j", imagePath]);
  return r.stdout.split("\n").filter(Boolean).map((l) => l.split(":")[0]!);
}
