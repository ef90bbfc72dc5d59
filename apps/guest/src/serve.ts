// `lcow-guest serve`: the guest's life. It dials the host's bridge endpoint (the host listens,
// as hcsshim listens on vsock port 0x40000000), serves the connection, and when the connection
// drops without a shutdown request re-dials every 100 ms, each new connection un-negotiated,
// as the real GCS does. It stops on a Shutdown request, on SIGTERM/SIGINT, or when the host's
// endpoint has refused every dial for 10 s; in each case it first releases every process,
// union, mount, loop device and export it holds, in that order, then exits 0.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import type { Socket } from "node:net";
import { mkdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { kernelTools } from "@lcow/driver/kernel";
import type { ServeOptions } from "./args.js";
import { BridgeConnection } from "./connection.js";
import { describeEndpoint, dial, type Endpoint } from "./endpoint.js";
import { GuestError } from "./errors.js";
import { Guest } from "./guest.js";
import { Unions } from "./layers.js";
import { createLogger, type Logger } from "./log.js";
import { ProcessTable } from "./processes.js";
import { ScsiBus } from "./scsi.js";

const run = promisify(execFile);

/** Re-dial spacing, and how long the host's endpoint may refuse before the guest gives up. */
export const REDIAL_INTERVAL_MS = 100;
export const HOST_GONE_MS = 10_000;
/** Guest paths kept private to the guest's mount namespace with `--isolated`. */
export const ISOLATED_DIRS = ["/run/mounts", "/run/gcs"] as const;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The parent of `pid` ("self" or a number), as the /proc mounted now numbers it. */
async function parentOf(pid: string | number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const ppid = Number(/^PPid:\s*(\d+)$/m.exec(status)?.[1]);
  return ppid > 0 ? ppid : undefined;
}

/**
 * Refuses to shadow the host's own /run/mounts, /run/gcs and /proc: `--isolated` is for a guest
 * that is the init of its own pid namespace and whose mount namespace is not its launcher's.
 * The /proc mounted at this point is still the host's, which numbers processes (parents
 * included) as the host does: our parent is unshare, in our new mount namespace; its parent is
 * the launcher, in the host's.
 */
async function checkIsolated(): Promise<void> {
  const parent = await parentOf("self");
  const launcher = parent === undefined ? undefined : await parentOf(parent);
  const ours = await readlink("/proc/self/ns/mnt");
  const theirs = launcher === undefined ? undefined : await readlink(`/proc/${launcher}/ns/mnt`).catch(() => undefined);
  if (process.pid !== 1 || theirs === undefined || theirs === ours) {
    throw new GuestError("INVALID_ARGUMENT", "--isolated needs mount and pid namespaces of its own: run the guest under unshare --mount --pid --fork --propagation private");
  }
}

/**
 * Makes the guest's namespaces look like a VM's (the launcher runs it under unshare --mount
 * --pid): a tmpfs on each well-known path, so what is made under them lives in this mount
 * namespace only, and a procfs of this pid namespace on /proc. Without the latter /proc would
 * still be the host's: the pid a daemon writes to its pid file (ours) would name another
 * process there, and qemu-storage-daemon could not be told apart or waited for.
 */
async function isolate(log: Logger): Promise<void> {
  await checkIsolated();
  for (const dir of ISOLATED_DIRS) {
    await mkdir(dir, { recursive: true });
    await run("mount", ["-t", "tmpfs", "-o", "mode=0755", "tmpfs", dir]);
  }
  await run("mount", ["-t", "proc", "-o", "nosuid,nodev,noexec", "proc", "/proc"]);
  log.info("isolated", { dirs: ISOLATED_DIRS });
}

/**
 * Starts the holder of the mount namespace qemu-storage-daemon runs in (`sleep infinity` under
 * `unshare --mount`), made before anything is mounted so that it holds none of our mounts. The
 * daemons must not live in our namespace: when it dies, its last process unmounts its
 * filesystems, and a daemon unmounting a filesystem that stands on its own FUSE export waits for
 * itself forever (see ExportNamespace in @lcow/driver's qsd.ts). The holder is in our pid
 * namespace, so it dies with us; the daemons are reached through /proc/<holder>/root.
 */
async function startExportNamespace(exportsDir: string, log: Logger): Promise<ChildProcess> {
  await mkdir(exportsDir, { recursive: true });
  // The export files live on a tmpfs of the holder's namespace: in ours their names must not
  // exist, or losetup and mount would resolve /proc/<holder>/root/<name> to our empty file
  // (see exportPath in @lcow/driver's qsd.ts).
  const holder = spawn("unshare", ["--mount", "--propagation", "private", "--", "sh", "-c", 'mount -t tmpfs -o mode=0700 tmpfs "$0" && exec sleep infinity', exportsDir], {
    stdio: "ignore",
  });
  await new Promise<void>((resolve, reject) => {
    holder.once("spawn", resolve);
    holder.once("error", reject);
  });
  // Ready once its tmpfs is mounted (it then execs sleep).
  const deadline = Date.now() + 5000;
  while ((await readlink(`/proc/${holder.pid}/exe`).catch(() => "")).endsWith("/sleep") === false) {
    if (holder.exitCode !== null || Date.now() > deadline) {
      holder.kill("SIGKILL");
      throw new Error(`unshare --mount (pid ${holder.pid}) did not make a mount namespace with ${exportsDir} for qemu-storage-daemon`);
    }
    await sleep(5);
  }
  log.info("export namespace ready", { holder: holder.pid });
  return holder;
}

/** Dials until connected; undefined when `stopping()` or when every dial failed for HOST_GONE_MS. */
async function dialBridge(endpoint: Endpoint, stopping: () => boolean, log: Logger): Promise<Socket | undefined> {
  let failingSince: number | undefined;
  for (;;) {
    if (stopping()) return undefined;
    try {
      return await dial(endpoint);
    } catch (err) {
      failingSince ??= Date.now();
      if (Date.now() - failingSince >= HOST_GONE_MS) {
        log.warn("the host's bridge endpoint is gone, stopping", { endpoint: describeEndpoint(endpoint), err });
        return undefined;
      }
      await sleep(REDIAL_INTERVAL_MS);
    }
  }
}

/** Runs the guest until it stops; resolves with the exit status (0 unless start-up failed). */
export async function serve(options: ServeOptions, mainScript: string): Promise<number> {
  const log = createLogger({ level: options.logLevel });
  log.info("starting", { pid: process.pid, bridge: describeEndpoint(options.bridge), isolated: options.isolated });
  let holder: ChildProcess | undefined;
  if (options.isolated) {
    await isolate(log);
    holder = await startExportNamespace(join(options.stateDir, "exports"), log);
  }
  await mkdir(join(options.stateDir, "scsi"), { recursive: true });
  const tools = kernelTools({ exportNamespacePid: holder?.pid });
  const guest = new Guest(
    new ScsiBus(options.scsiDir, options.stateDir, tools, log.child({ part: "scsi" })),
    new Unions(options.stateDir, tools, log.child({ part: "layers" })),
    new ProcessTable(options.stdio, { mainScript, tmpDir: join(options.stateDir, "tmp") }, log.child({ part: "processes" })),
    log,
  );
  let current: BridgeConnection | undefined;
  guest.onStopping = () => current?.stop();
  guest.onStopped = () => current?.close();
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.on(sig, () => void guest.shutdown("graceful"));

  while (!guest.shuttingDown) {
    const socket = await dialBridge(options.bridge, () => guest.shuttingDown, log);
    if (!socket) break;
    log.info("bridge connected");
    current = new BridgeConnection(socket, guest, log.child({ part: "bridge" }));
    await current.run();
    current = undefined;
    if (guest.shuttingDown) break;
    log.info("bridge closed without a shutdown; re-dialing");
    await sleep(REDIAL_INTERVAL_MS);
  }
  // The host is gone (or asked): nothing will use what we hold any more.
  await guest.shutdown("forced");
  holder?.kill("SIGKILL");
  log.info("stopped");
  return 0;
}
