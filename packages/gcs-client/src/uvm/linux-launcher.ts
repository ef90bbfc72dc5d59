// The Linux launcher: the "VM" is a guest agent process (apps/guest, or anything that speaks the
// guest side of the bridge) in its own mount and pid namespaces, started with
//   unshare --mount --pid --fork --kill-child --propagation slave -- <guest> serve ...
// so that, like a real VM, everything it mounts is invisible to the host and vanishes with it:
// when it dies the kernel kills its children (qemu-storage-daemon) and tears down its mounts,
// which releases their auto-clear loop devices. The host reaches the guest's files through
// /proc/<pid>/root. The "virtual hardware" it is given:
//   <dir>/v/<port>.sock          vsock port <port>: the bridge (0x40000000) and stdio relays, the
//                                host listens, the guest dials (UnixTransport)
//   <dir>/scsi/<c>-<l>.json      a disk "attached" at controller c, LUN l: {"path","readOnly"}
//   <dir>/state/                 the guest's own files (FUSE exports of VHDX disks)
// <dir> is a fresh folder under the system temp folder: unix socket paths must stay under 108 bytes.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, open, readdir, readFile, readlink, rename, rm, writeFile, realpath, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GcsError } from "../errors.js";
import { GCS_VSOCK_PORT } from "../protocol/constants.js";
import { UnixTransport } from "../transport/index.js";
import type { LaunchedVm, LaunchOptions, ScsiAttachment, UtilityVmLauncher, VmExit } from "./launcher.js";

/** How much of the guest's stderr is kept for error messages. */
const LOG_TAIL = 16 * 1024;
/** How long terminate waits for the kernel to let go of a dead guest's loop devices. */
const RELEASE_WAIT_MS = 10_000;

export interface LinuxLauncherOptions {
  /**
   * The guest agent's command, to which `serve --bridge ... --stdio ... --scsi-dir ...
   * --state-dir ... --isolated` is appended, e.g. `[process.execPath, "/opt/lcow/guest/main.js"]`.
   */
  guestCommand: readonly string[];
  /**
   * Run the guest in its own mount and pid namespaces (needs root). If not provided, true.
   * Without it the guest mounts in the host's namespace and its mounts outlive a crash.
   */
  isolate?: boolean;
  /** Path or name of unshare(1). If not provided, "unshare". */
  unshare?: string;
  /** Where VM folders are made. If not provided, the system temp folder. */
  runDir?: string;
  /** Receives the guest's log (stderr) as it comes. If not provided, it is only kept for errors. */
  onLog?: (name: string, chunk: string) => void;
  /** Extra arguments for the guest's `serve` (e.g. `--log-level debug`). */
  guestArgs?: readonly string[];
}

export class LinuxLauncher implements UtilityVmLauncher {
  readonly kind = "linux";
  readonly #options: LinuxLauncherOptions;

  constructor(options: LinuxLauncherOptions) {
    if (!Array.isArray(options.guestCommand) || options.guestCommand.length === 0) {
      throw new GcsError("INVALID_ARGUMENT", "LinuxLauncher: guestCommand must name the guest agent, e.g. [process.execPath, '<path>/apps/guest/dist/main.js']");
    }
    this.#options = options;
  }

  async launch(options: LaunchOptions): Promise<LaunchedVm> {
    if (process.platform !== "linux") throw new GcsError("UNSUPPORTED_PLATFORM", `the Linux launcher runs on Linux, not ${process.platform}`);
    const dir = await realpath(await mkdtemp(join(this.#options.runDir ?? tmpdir(), "lcow-uvm-")));
    const vsockDir = join(dir, "v");
    const scsiDir = join(dir, "scsi");
    const stateDir = join(dir, "state");
    await Promise.all([mkdir(vsockDir), mkdir(scsiDir), mkdir(stateDir)]);
    const transport = new UnixTransport({ dir: vsockDir });
    let child: ChildProcess | undefined;
    try {
      const listener = await transport.listen(GCS_VSOCK_PORT);
      const isolate = this.#options.isolate ?? true;
      const guest = [
        ...this.#options.guestCommand,
        "serve",
        "--bridge",
        `unix:${join(vsockDir, `${GCS_VSOCK_PORT}.sock`)}`,
        "--stdio",
        `unix:${vsockDir}`,
        "--scsi-dir",
        scsiDir,
        "--state-dir",
        stateDir,
        ...(isolate ? ["--isolated"] : []),
        ...(this.#options.guestArgs ?? []),
      ];
      const [file, ...args] = isolate
        ? // slave, not private: the guest's copy of the host's mounts follows the host's unmounts,
          // so it never keeps a host filesystem (and its loop device) busy after the host let go.
          [this.#options.unshare ?? "unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "slave", "--", ...guest]
        : guest;
      child = spawn(file!, args, { stdio: ["ignore", "ignore", "pipe"] });
      const proc = child;
      let log = "";
      proc.stderr!.setEncoding("utf8");
      proc.stderr!.on("data", (chunk: string) => {
        log = (log + chunk).slice(-LOG_TAIL);
        this.#options.onLog?.(options.name, chunk);
      });
      const exited = new Promise<VmExit>((resolve) => {
        proc.on("error", (err) => resolve({ code: null, signal: null, log: `${log}${String(err)}` }));
        proc.on("close", (code, signal) => resolve({ code, signal, log }));
      });
      // The guest dials in once it is up; it may instead die (bad command, no root, no unshare).
      const abort = new AbortController();
      const died = exited.then((exit) => {
        abort.abort();
        return exit;
      });
      let bridge;
      try {
        bridge = await Promise.race([
          listener.accept({ timeoutMs: options.timeoutMs, signal: abort.signal }),
          died.then((exit) => {
            throw new GcsError("VM_FAILED", `utility VM ${options.name}: the guest exited (${exit.signal ?? `code ${exit.code}`}) before it connected: ${exit.log.trim().slice(-2000) || "no output"}`);
          }),
        ]);
      } finally {
        await listener.close();
      }
      // Hold the guest's mount namespace open (see LinuxVm.#terminate), and find the guest itself
      // (unshare's child, the init of the new pid namespace).
      const namespace = isolate ? await open(`/proc/${proc.pid}/ns/mnt`, "r").catch(() => undefined) : undefined;
      const guestPid = isolate ? await childOf(proc.pid!) : proc.pid;
      // The namespace starts as a copy of ours: only mounts made after this are the guest's.
      const inherited = new Set(isolate ? (await mountsOf(proc.pid!)).map((m) => m.id) : []);
      return new LinuxVm(options.name, dir, transport, proc, exited, bridge, isolate, namespace, guestPid, inherited);
    } catch (err) {
      if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await transport.close?.().catch(() => {});
      await rm(dir, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  }
}

class LinuxVm implements LaunchedVm {
  /** Loop devices seen behind the guest's mounts, to wait for at the end. */
  readonly #loops: LoopDevices = new Map();
  #terminating: Promise<void> | undefined;

  constructor(
    readonly name: string,
    readonly dir: string,
    readonly transport: UnixTransport,
    readonly child: ChildProcess,
    readonly exited: Promise<VmExit>,
    readonly bridge: import("node:stream").Duplex,
    readonly isolated: boolean,
    /** An open handle on the guest's mount namespace: it keeps the namespace after its last process. */
    readonly namespace: FileHandle | undefined,
    /** The guest agent's pid (host view): the pid namespace's init. */
    readonly guestPid: number | undefined,
    /** Mount ids the namespace had when the guest connected (copies of the host's). */
    readonly inherited: ReadonlySet<string>,
  ) {}

  #scsiFile(a: { controller: number; lun: number }): string {
    return join(this.dir, "scsi", `${a.controller}-${a.lun}.json`);
  }

  async attachScsi(a: ScsiAttachment): Promise<void> {
    const file = this.#scsiFile(a);
    // Written whole under a temporary name: the guest polls for the final name.
    await writeFile(`${file}.tmp`, JSON.stringify({ path: a.hostPath, readOnly: a.readOnly }));
    await rename(`${file}.tmp`, file);
  }

  async recordMounts(): Promise<void> {
    if (!this.isolated || !this.#alive()) return;
    for (const [name, file] of await guestLoopsOf(this.child.pid!, this.inherited)) this.#loops.set(name, file);
  }

  #alive(): boolean {
    return this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async detachScsi(a: ScsiAttachment): Promise<void> {
    await rm(this.#scsiFile(a), { force: true });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  hostPath(guestPath: string): string | undefined {
    if (!this.isolated) return guestPath;
    if (!this.#alive()) return undefined;
    return `/proc/${this.child.pid}/root${guestPath}`;
  }

  terminate(): Promise<void> {
    this.#terminating ??= this.#terminate();
    return this.#terminating;
  }

  // Why the namespace handle: when a mount namespace loses its last process, that process tears
  // its mounts down as it exits. If that is qemu-storage-daemon, unmounting a filesystem on a loop
  // device on its own FUSE export waits for an answer only it could give: a deadlock that leaves
  // the FUSE connection, the loop device and anything that scans loop devices (mount -o loop)
  // stuck for good. So we keep the namespace open while its processes die (the daemon's exit
  // closes /dev/fuse, which aborts its connection), and drop it only when all of them are gone:
  // the teardown then runs here and meets an aborted connection (EIO), not a dead end.
  async #terminate(): Promise<void> {
    if (this.#alive()) {
      await this.recordMounts();
      // Kill the pid namespace's init, not unshare: unshare exits only once init is gone, and
      // init only once every process of its namespace is.
      try {
        process.kill(this.guestPid ?? this.child.pid!, "SIGKILL");
      } catch {
        this.child.kill("SIGKILL");
      }
    }
    await this.exited;
    // Killed from outside (unshare first): its init may still be reaping its namespace.
    if (this.guestPid !== undefined) await waitGone(this.guestPid, RELEASE_WAIT_MS);
    await this.namespace?.close().catch(() => {});
    this.bridge.destroy();
    // The namespace is gone; the kernel unmounts its filesystems and then frees their auto-clear
    // loop devices a moment later. Wait for that, so "terminated" means "released".
    if (this.isolated) await waitLoopsReleased(this.#loops);
    await this.transport.close?.().catch(() => {});
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** The first child of `pid` (unshare's forked child), waiting briefly for it to appear. */
async function childOf(pid: number): Promise<number | undefined> {
  for (let i = 0; i < 100; i++) {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
    const child = Number(text.trim().split(" ")[0]);
    if (child > 0) return child;
    await new Promise((r) => setTimeout(r, 10));
  }
  return undefined;
}

/** Waits until process `pid` no longer exists (or is a zombie), bounded by `timeoutMs`. */
async function waitGone(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    // Field 3, after the parenthesised command name, is the state; Z = exited, not yet reaped.
    if (stat === "" || / Z /.test(stat.slice(stat.lastIndexOf(")")))) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Loop devices behind the guest's own mounts: device name (`loop7`) -> backing file. */
type LoopDevices = Map<string, string>;

/** One line of /proc/<pid>/mountinfo: the mount's id and its source (a device for block filesystems). */
interface MountLine {
  id: string;
  source: string;
}

/** Mounts of process `pid`'s mount namespace ("<id> <parent> <major:minor> ... - <fstype> <source> <options>"). */
async function mountsOf(pid: number | string): Promise<MountLine[]> {
  const info = await readFile(`/proc/${pid}/mountinfo`, "utf8").catch(() => "");
  const mounts: MountLine[] = [];
  for (const line of info.split("\n")) {
    const [head, tail] = line.split(" - ");
    if (head && tail) mounts.push({ id: head.split(" ")[0]!, source: tail.split(" ")[1] ?? "" });
  }
  return mounts;
}

const loopName = (source: string): string | undefined => /^\/dev\/(loop\d+)$/.exec(source)?.[1];

/** The loop devices behind the mounts of process `pid` that are not `inherited`, with their backing files. */
async function guestLoopsOf(pid: number, inherited: ReadonlySet<string>): Promise<LoopDevices> {
  const found: LoopDevices = new Map();
  for (const mount of await mountsOf(pid)) {
    const name = loopName(mount.source);
    if (!name || inherited.has(mount.id)) continue;
    const backing = await readFile(`/sys/block/${name}/loop/backing_file`, "utf8").catch(() => undefined);
    if (backing !== undefined) found.set(name, backing.trim());
  }
  return found;
}

/** Loop devices (`loop7`) some live mount namespace on this machine has a filesystem on. */
async function loopsInUse(): Promise<Set<string>> {
  const used = new Set<string>();
  const seen = new Set<string>();
  for (const pid of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    const ns = await readlink(`/proc/${pid}/ns/mnt`).catch(() => undefined);
    if (!ns || seen.has(ns)) continue;
    seen.add(ns);
    for (const mount of await mountsOf(pid)) {
      const name = loopName(mount.source);
      if (name) used.add(name);
    }
  }
  return used;
}

/**
 * Waits until each of `devices` (loop device name -> backing file) is detached, rebound to
 * another file, or still used by a live mount namespace (mount(8) shares one device per file,
 * so another VM or the host may hold the same one), bounded by `timeoutMs`: after a mount
 * namespace is torn down the kernel frees its auto-clear loop devices asynchronously.
 */
export async function waitLoopsReleased(devices: ReadonlyMap<string, string>, timeoutMs = RELEASE_WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const held: string[] = [];
    for (const [name, file] of devices) {
      const backing = await readFile(`/sys/block/${name}/loop/backing_file`, "utf8").catch(() => undefined);
      if (backing !== undefined && backing.trim() === file) held.push(name);
    }
    const inUse = held.length === 0 ? new Set<string>() : await loopsInUse();
    const orphaned = held.filter((name) => !inUse.has(name));
    if (orphaned.length === 0) return;
    if (Date.now() > deadline) {
      throw new GcsError("INTERNAL", `${orphaned.map((n) => `/dev/${n} (${devices.get(n)})`).join(", ")} still attached ${timeoutMs} ms after the guest died`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
