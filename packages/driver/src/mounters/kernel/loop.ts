// Loop devices. Layers and sandboxes are mounted with mount(8)'s `loop` option rather than a
// separate `losetup --find --show` and mount: libmount then binds the device with auto-clear
// (the kernel frees it when the filesystem on it is unmounted) and detaches it itself if the
// mount fails. A separate losetup leaves a window in which a process killed between losetup
// printing the device name and recording it leaks a device nobody can tell apart from other
// mounts' devices on the same layer file; with auto-clear there is nothing to record or leak,
// and read-only mounts of one layer share one device (libmount reuses a read-only device bound
// to the same file, offset and size limit), so a layer used by many chains costs one device.
import { DriverError } from "../../errors.js";
import { run } from "./exec.js";

export interface LoopTools {
  losetup: string;
  /** Bound on each losetup run; 0 for none. */
  timeoutMs: number;
  /** Bound on waiting for the kernel to let go of a device (never 0). */
  waitMs: number;
}

interface LosetupJson {
  loopdevices?: { name?: string }[];
}

/** Loop devices bound to `file` (matched by its inode, as losetup --associated does). */
export async function loopsOf(tools: LoopTools, file: string): Promise<string[]> {
  const { stdout } = await run(tools.losetup, ["--list", "--json", "--output", "NAME", "--associated", file], { timeoutMs: tools.timeoutMs });
  if (!stdout.trim()) return [];
  return ((JSON.parse(stdout) as LosetupJson).loopdevices ?? []).map((d) => d.name ?? "").filter((n) => n !== "");
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Makes sure no loop device holds `file`, a file private to one mount (a sandbox's FUSE export):
 * waits for auto-clear (delayed while something such as udev's blkid probe still has the device
 * open), then detaches what is left. Only for private files: a layer's device may be shared.
 */
export async function releaseLoops(tools: LoopTools, file: string): Promise<void> {
  const deadline = Date.now() + Math.min(tools.waitMs, 5000);
  let devices = await loopsOf(tools, file);
  while (devices.length > 0 && Date.now() < deadline) {
    await sleep(20);
    devices = await loopsOf(tools, file);
  }
  for (const device of devices) await run(tools.losetup, ["--detach", device], { timeoutMs: tools.timeoutMs });
  const end = Date.now() + tools.waitMs;
  while ((devices = await loopsOf(tools, file)).length > 0) {
    if (Date.now() > end) throw new DriverError("UNAVAILABLE", `${devices.join(", ")} still hold ${file} ${tools.waitMs} ms after losetup --detach (open in another process)`);
    await sleep(20);
  }
}
