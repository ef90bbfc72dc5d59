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
  /** Where daemons run, if not in our mount namespace (see `ExportNamespace`). */
  exportNamespace?: ExportNamespace;
}

/**
 * Another mount namespace for the daemons and their FUSE exports: that of process `pid`,
 * entered with `nsenter`, whose files we reach through `/proc/<pid>/root`. For a caller that
 * lives in a mount namespace of its own that dies with it (apps/guest under unshare): when such
 * a namespace loses its last process, that process unmounts everything in it as it exits, and if
 * it is a qemu-storage-daemon, the filesystem on a loop device on its own FUSE export waits for
 * an answer only the exiting daemon could give. A deadlock that leaves the FUSE connection, the
 * loop device and anything that scans loop devices stuck. A daemon outside the namespace is
 * never the one to tear it down; the namespace's teardown then meets either a live daemon or
 * an aborted connection.
 */
export interface ExportNamespace {
  pid: number;
  /** Path or name of `nsenter`. */
  nsenter: string;
}

/**
 * `file` (a path in the daemons' namespace) as seen from ours. Tools that canonicalize paths
 * (losetup, mount -o loop) resolve `/proc/<pid>/root` to `/` and then look the rest up in our
 * namespace, keeping the name as given only when that fails: so export files must live where
 * our namespace has nothing of the same name (apps/guest puts them on a tmpfs private to the
 * daemons' namespace).
 */
export function exportPath(tools: QsdTools, file: string): string {
  return tools.exportNamespace ? `/proc/${tools.exportNamespace.pid}/root${file}` : file;
}

/** Runs `file args` in the daemons' mount namespace. */
function runThere(tools: QsdTools, file: string, args: readonly string[]): ReturnType<typeof run> {
  const ns = tools.exportNamespace;
  if (!ns) return run(file, args, { timeoutMs: tools.timeoutMs });
  return run(ns.nsenter, [`--mount=/proc/${ns.pid}/ns/mnt`, "--", file, ...args], { timeoutMs: tools.timeoutMs });
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
  // The FUSE export mounts over an existing regular file (in the daemons' namespace); an empty one is enough.
  await writeFile(exportPath(tools, paths.exportFile), "");
  await rm(paths.pidFile, { force: true });
  const ro = paths.writable ? "" : ",read-only=on,force-share=on";
  await runThere(
    tools,
    tools.qemuStorageDaemon,
    [
      "--blockdev", `driver=file,node-name=f,filename=${qemuValue(paths.vhdx)}${ro}`,
      "--blockdev", `driver=vhdx,node-name=v,file=f${ro}`,
      "--export", `type=fuse,id=e,node-name=v${exportMarker(paths.exportFile)}writable=${paths.writable ? "on" : "off"}`,
      "--pidfile", qemuValue(paths.pidFile),
      "--daemonize",
    ],
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
  const nsPid = tools.exportNamespace?.pid;
  // The daemons' namespace may be gone (its holder died): then so is every export in it.
  const exported = () => isMountPoint(paths.exportFile, nsPid).catch(() => false);
  if (paths.writable && ours.length > 0 && (await exported())) {
    await flushExport(exportPath(tools, paths.exportFile)).catch(() => {
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
  if (await exported()) await runThere(tools, tools.umount, ["--lazy", paths.exportFile]);
  await rm(exportPath(tools, paths.exportFile), { force: true });
  await rm(paths.pidFile, { force: true });
}
