// A sandbox.vhdx seen as a raw disk: qemu-storage-daemon (Debian's qemu-system-common 7.2)
// opens the VHDX and exports its virtual disk over FUSE onto an existing regular file, which a
// loop device can then hold. The daemon is started with --daemonize, so its parent exits only
// once the export is up (or has failed) and we need no readiness polling; --pidfile tells us
// whom to stop. Stopping it with SIGTERM makes qemu flush and close the VHDX cleanly (BAT and
// log written) and remove its FUSE mount.
import { open, readFile, rm, writeFile } from "node:fs/promises";
import { DriverError } from "../../errors.js";
import { run } from "./exec.js";
import { commandArgs, findProcesses, isAlive, isMountPoint } from "./proc.js";

export interface QsdTools {
  qemuStorageDaemon: string;
  umount: string;
  /** Bound on each tool run; 0 for none. */
  timeoutMs: number;
  /** How long a daemon gets to exit after SIGTERM before SIGKILL (never 0: a clean exit flushes the VHDX). */
  waitMs: number;
}

/** Where a daemon's export and pid file live; both are unique to one mount's work folder. */
export interface QsdPaths {
  /** The VHDX it opens. */
  vhdx: string;
  /** The regular file the raw disk is exported onto (FUSE mount point). */
  exportFile: string;
  /** The file the daemon writes its pid to. */
  pidFile: string;
  /**
   * Export writable (a container's own sandbox) or read-only (a writable layer's snapshot used
   * as a lower layer). A read-only export opens the VHDX with `force-share=on`, so it works
   * while another daemon holds the same VHDX writable (qemu's image locking would refuse).
   */
  writable: boolean;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The part of the export option that names `exportFile`: how we recognise our daemon in /proc. */
function exportMarker(exportFile: string): string {
  return `,mountpoint=${qemuValue(exportFile)},`;
}

/** True for the argument vector of a qemu-storage-daemon exporting onto `exportFile`. */
function exportsTo(args: string[], exportFile: string): boolean {
  const marker = exportMarker(exportFile);
  return args.some((a) => a.endsWith("qemu-storage-daemon")) && args.some((a) => a.includes(marker));
}

/**
 * Commas in qemu option values are escaped by doubling them; qemu's own parser reads them back.
 * Other characters pass through.
 */
function qemuValue(value: string): string {
  return value.replace(/,/g, ",,");
}

/** Starts the daemon exporting `paths.vhdx` onto `paths.exportFile`, and returns its pid. */
export async function startExport(tools: QsdTools, paths: QsdPaths): Promise<number> {
  // The FUSE export mounts over an existing regular file; an empty one is enough.
  await writeFile(paths.exportFile, "");
  await rm(paths.pidFile, { force: true });
  const ro = paths.writable ? "" : ",read-only=on,force-share=on";
  await run(
    tools.qemuStorageDaemon,
    [
      "--blockdev", `driver=file,node-name=f,filename=${qemuValue(paths.vhdx)}${ro}`,
      "--blockdev", `driver=vhdx,node-name=v,file=f${ro}`,
      "--export", `type=fuse,id=e,node-name=v${exportMarker(paths.exportFile)}writable=${paths.writable ? "on" : "off"}`,
      "--pidfile", qemuValue(paths.pidFile),
      "--daemonize",
    ],
    { timeoutMs: tools.timeoutMs },
  );
  const pid = await readPidFile(paths.pidFile);
  if (pid === undefined) throw new DriverError("INTERNAL", `qemu-storage-daemon for ${paths.vhdx} started but wrote no pid to ${paths.pidFile}`);
  return pid;
}

async function readPidFile(pidFile: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(pidFile, "utf8")).trim());
    return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** True when `pid` is a qemu-storage-daemon exporting onto `exportFile` (not a recycled pid). */
async function isOurDaemon(pid: number, exportFile: string): Promise<boolean> {
  const args = await commandArgs(pid);
  return !!args && exportsTo(args, exportFile);
}

/** Sends `sig` to `pid`; a process that is already gone is fine. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/** Waits up to `ms` for `pid` to go; true if it did. */
async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (await isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/** Flushes the exported disk: an fsync on the FUSE file reaches qemu as a flush of the VHDX. */
async function flushExport(exportFile: string): Promise<void> {
  const fh = await open(exportFile, "r+");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Stops the daemon serving `paths` and removes its files. The pid is `pid` if recorded, else
 * the pid file's, else found by its unique export path in /proc; a pid that now belongs to
 * another process is left alone. Flushes first, sends SIGTERM and waits (SIGKILL after the
 * timeout), then lazily unmounts a FUSE export a killed daemon left behind. Succeeds when the
 * daemon and files are already gone.
 */
export async function stopExport(tools: QsdTools, paths: QsdPaths, pid: number | undefined): Promise<void> {
  const candidates = new Set<number>();
  for (const p of [pid, await readPidFile(paths.pidFile)]) if (p !== undefined) candidates.add(p);
  const ours: number[] = [];
  for (const p of candidates) if ((await isAlive(p)) && (await isOurDaemon(p, paths.exportFile))) ours.push(p);
  if (ours.length === 0) {
    // Never recorded (crash between start and pid file) or recorded wrongly: look it up by export path.
    ours.push(...(await findProcesses((args) => exportsTo(args, paths.exportFile))));
  }
  if (paths.writable && ours.length > 0 && (await isMountPoint(paths.exportFile))) {
    await flushExport(paths.exportFile).catch(() => {
      // A flush that fails (daemon wedged) must not keep us from stopping it; SIGTERM flushes too.
    });
  }
  for (const p of ours) {
    signal(p, "SIGTERM");
    if (!(await waitGone(p, tools.waitMs))) {
      signal(p, "SIGKILL");
      if (!(await waitGone(p, 5000))) throw new DriverError("UNAVAILABLE", `qemu-storage-daemon ${p} (${paths.vhdx}) did not exit after SIGKILL`);
    }
  }
  // A daemon that died without cleaning up leaves a dead FUSE mount ("transport endpoint is not connected").
  if (await isMountPoint(paths.exportFile)) await run(tools.umount, ["--lazy", paths.exportFile], { timeoutMs: tools.timeoutMs });
  await rm(paths.exportFile, { force: true });
  await rm(paths.pidFile, { force: true });
}
