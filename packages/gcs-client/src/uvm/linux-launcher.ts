// The Linux launcher: the "VM" is a guest agent process (apps/guest, or anything that speaks the
// guest side of the bridge) in its own mount and pid namespaces, started with
//   unshare --mount --pid --fork --kill-child --propagation private -- <guest> serve ...
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
import { mkdir, mkdtemp, readFile, rename, rm, writeFile, realpath } from "node:fs/promises";
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
        ? [this.#options.unshare ?? "unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private", "--", ...guest]
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
      return new LinuxVm(options.name, dir, transport, proc, exited, bridge, isolate);
    } catch (err) {
      if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await transport.close?.().catch(() => {});
      await rm(dir, { recursive: true, force: true }).catch(() => {});
      throw err;
    }
  }
}

class LinuxVm implements LaunchedVm {
  /** Loop devices seen behind the guest's mounts (name -> backing file), to wait for at the end. */
  readonly #loops = new Map<string, string>();
  #terminating: Promise<void> | undefined;

  constructor(
    readonly name: string,
    readonly dir: string,
    readonly transport: UnixTransport,
    readonly child: ChildProcess,
    readonly exited: Promise<VmExit>,
    readonly bridge: import("node:stream").Duplex,
    readonly isolated: boolean,
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
    for (const [name, file] of await loopDevicesOf(this.child.pid!)) this.#loops.set(name, file);
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

  async #terminate(): Promise<void> {
    if (this.#alive()) {
      await this.recordMounts();
      this.child.kill("SIGKILL");
    }
    await this.exited;
    this.bridge.destroy();
    // The namespace is gone; the kernel unmounts its filesystems and then frees their auto-clear
    // loop devices a moment later. Wait for that, so "terminated" means "released".
    if (this.isolated) await waitLoopsReleased(this.#loops);
    await this.transport.close?.().catch(() => {});
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** The loop devices behind the mounts of process `pid`'s mount namespace, with their backing files. */
async function loopDevicesOf(pid: number): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const info = await readFile(`/proc/${pid}/mountinfo`, "utf8").catch(() => "");
  for (const line of info.split("\n")) {
    // "... - <fstype> <source> <super options>": the source follows the separator.
    const source = line.split(" - ")[1]?.split(" ")[1];
    const m = source && /^\/dev\/(loop\d+)$/.exec(source);
    if (!m) continue;
    const backing = await readFile(`/sys/block/${m[1]}/loop/backing_file`, "utf8").catch(() => undefined);
    if (backing !== undefined) found.set(m[1]!, backing.trim());
  }
  return found;
}

/**
 * Waits until none of `devices` (loop device name -> backing file) is still bound to that file,
 * bounded by `timeoutMs`: after a mount namespace dies the kernel unmounts its filesystems and
 * frees their auto-clear loop devices asynchronously.
 */
export async function waitLoopsReleased(devices: ReadonlyMap<string, string>, timeoutMs = RELEASE_WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const held: string[] = [];
    for (const [name, file] of devices) {
      const backing = await readFile(`/sys/block/${name}/loop/backing_file`, "utf8").catch(() => undefined);
      if (backing !== undefined && backing.trim() === file) held.push(`/dev/${name} (${file})`);
    }
    if (held.length === 0) return;
    if (Date.now() > deadline) throw new GcsError("INTERNAL", `${held.join(", ")} still attached ${timeoutMs} ms after the guest died`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
