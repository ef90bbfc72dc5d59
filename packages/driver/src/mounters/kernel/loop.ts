// Loop devices through util-linux `losetup`. A device is recorded with the identity of its
// backing file (inode and device number, as the kernel reports them), and is detached only if
// it still has that backing file: after a crash the device may have been freed and reused by
// someone else, and the backing file's path may have changed (a layer renamed to
// `<id>-removing` while mounted), so neither the device name nor the path alone is proof.
import { DriverError, isDriverError } from "../../errors.js";
import { run } from "./exec.js";

/** Which file a loop device is bound to, as `losetup` reports it. */
export interface LoopBacking {
  /** Inode number of the backing file. */
  ino: number;
  /** `major:minor` of the filesystem holding the backing file. */
  dev: string;
}

export interface LoopTools {
  losetup: string;
  /** Bound on each losetup run; 0 for none. */
  timeoutMs: number;
  /** Bound on waiting for the kernel to let go of a device or a daemon to exit (never 0). */
  waitMs: number;
}

interface LosetupJson {
  loopdevices?: { name?: string; "back-ino"?: number | string | null; "back-maj:min"?: string | null }[];
}

/** The backing file identity of `device`, or undefined when it is not attached (or does not exist). */
export async function loopBacking(tools: LoopTools, device: string): Promise<LoopBacking | undefined> {
  let out: string;
  try {
    ({ stdout: out } = await run(tools.losetup, ["--list", "--json", "--output", "NAME,BACK-INO,BACK-MAJ:MIN", device], { timeoutMs: tools.timeoutMs }));
  } catch (err) {
    // losetup fails for a device node that no longer exists; that device is certainly not ours.
    if (isDriverError(err) && err.code === "INTERNAL") return undefined;
    throw err;
  }
  if (!out.trim()) return undefined;
  const row = (JSON.parse(out) as LosetupJson).loopdevices?.[0];
  const ino = row?.["back-ino"];
  const dev = row?.["back-maj:min"]?.trim();
  if (ino === null || ino === undefined || ino === "" || !dev) return undefined;
  return { ino: Number(ino), dev };
}

/**
 * Binds a free loop device to `file` (read-only, limited to `sizeLimit` bytes when given) and
 * returns its name and backing identity. `onDevice` is called with the name as soon as it is
 * known, before anything else can fail, so the caller can record it for undo.
 */
export async function attachLoop(
  tools: LoopTools,
  file: string,
  options: { readOnly: boolean; sizeLimit?: number },
  onDevice: (device: string) => Promise<void>,
): Promise<{ device: string; backing: LoopBacking }> {
  const args = ["--find", "--show"];
  if (options.readOnly) args.push("--read-only");
  if (options.sizeLimit !== undefined) args.push("--sizelimit", String(options.sizeLimit));
  args.push(file);
  const { stdout } = await run(tools.losetup, args, { timeoutMs: tools.timeoutMs });
  const device = stdout.trim();
  if (!/^\/dev\/loop\d+$/.test(device)) throw new DriverError("INTERNAL", `losetup attached ${file} but printed ${JSON.stringify(stdout)}`);
  await onDevice(device);
  const backing = await loopBacking(tools, device);
  if (!backing) throw new DriverError("INTERNAL", `${device} was detached from ${file} right after losetup attached it`);
  return { device, backing };
}

/**
 * Detaches `device` if it is still bound to the file `backing` identifies; does nothing when it
 * is already free or bound to another file. The caller unmounts first: for a device still open
 * the kernel only sets auto-clear, so it is released when its last user closes it.
 */
export async function detachLoop(tools: LoopTools, device: string, backing: LoopBacking): Promise<void> {
  const same = (now: LoopBacking | undefined) => !!now && now.ino === backing.ino && now.dev === backing.dev;
  if (!same(await loopBacking(tools, device))) return;
  await run(tools.losetup, ["--detach", device], { timeoutMs: tools.timeoutMs });
  // If something still had the device open (udev's blkid probe after the umount), the kernel only
  // set auto-clear and the file stays held. Wait for the release: the caller's next step may be
  // stopping the FUSE daemon that serves this file.
  const deadline = Date.now() + tools.waitMs;
  while (same(await loopBacking(tools, device))) {
    if (Date.now() > deadline) throw new DriverError("UNAVAILABLE", `${device} is still bound to its file ${tools.waitMs} ms after losetup --detach (held open by another process)`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
