// A utility VM: a launched guest, its negotiated bridge, and the host's bookkeeping of what is
// attached to it: SCSI disks by controller and LUN, reference-counted per host file, each
// mounted at a short guest path (/run/mounts/scsi/m<N>, hcsshim's), plus overlay unions and
// processes. On top of it, the 2017 opengcs tool calls the seed's driver used (tools.ts).
import { posix } from "node:path";
import type { Readable } from "node:stream";
import { GcsBridge, type GuestProcess } from "../bridge.js";
import { GcsError, isGcsError, toGcsError } from "../errors.js";
import { KeyedMutex } from "../keyed-mutex.js";
import type { MappedVirtualDisk, ProcessParameters } from "../protocol/messages.js";
import { SCSI_LUNS_PER_CONTROLLER } from "../protocol/constants.js";
import type { LaunchedVm, UtilityVmLauncher, VmExit } from "./launcher.js";

/** The seed's utility VM options (`lcow.*`) plus ours. */
export interface UtilityVmOptions {
  /** The VM's name; the seed used `<id>_svm` or `_lcow_global_svm_`. */
  name: string;
  /** Starts the VM: `LinuxLauncher` (a guest agent process) or `HcsLauncher` (Hyper-V). */
  launcher: UtilityVmLauncher;
  /** `lcow.timeout`: seconds any one operation (boot, an RPC, a disk add) may take. If not provided, 300. */
  timeoutSeconds?: number;
  /** `lcow.kirdpath`, `lcow.kernel`, `lcow.initrd`, `lcow.bootparameters`: passed to the launcher. */
  kirdPath?: string;
  kernel?: string;
  initrd?: string;
  bootParameters?: string;
  /** SCSI controllers (1..4), each with 64 LUNs. If not provided, 1 (hcsshim's LCOW default). */
  scsiControllers?: number;
}

/** A disk as the VM holds it. */
export interface AttachedDisk {
  hostPath: string;
  controller: number;
  lun: number;
  /** Where the guest mounted it. */
  guestPath: string;
  readOnly: boolean;
  refs: number;
}

/** Output of {@link UtilityVM.run}. */
export interface RunResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** Where the guest mounts SCSI disks (hcsshim's `/run/mounts/scsi/m%d`). */
export const SCSI_MOUNT_PREFIX = "/run/mounts/scsi/m";

export class UtilityVM {
  readonly name: string;
  readonly bridge: GcsBridge;
  readonly #vm: LaunchedVm;
  readonly #timeoutMs: number;
  readonly #controllers: number;
  /** By host path. */
  readonly #disks = new Map<string, AttachedDisk>();
  /** Changes per host path, one at a time, so two adds of one file never race. */
  readonly #diskLocks = new KeyedMutex();
  readonly #usedSlots = new Set<string>();
  /** Guest mount paths in use by attached disks. */
  readonly #usedMountPaths = new Set<string>();
  #terminated: Promise<void> | undefined;

  private constructor(name: string, vm: LaunchedVm, bridge: GcsBridge, timeoutMs: number, controllers: number) {
    this.name = name;
    this.#vm = vm;
    this.bridge = bridge;
    this.#timeoutMs = timeoutMs;
    this.#controllers = controllers;
  }

  /** Launches the VM, waits for its guest to connect and negotiates the protocol. */
  static async start(options: UtilityVmOptions): Promise<UtilityVM> {
    const timeoutMs = (options.timeoutSeconds ?? 300) * 1000;
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw new GcsError("INVALID_ARGUMENT", `timeoutSeconds ${options.timeoutSeconds} must be >= 0`);
    const controllers = options.scsiControllers ?? 1;
    if (!Number.isInteger(controllers) || controllers < 1 || controllers > 4) throw new GcsError("INVALID_ARGUMENT", `scsiControllers ${controllers} must be 1..4`);
    if (!options.name) throw new GcsError("INVALID_ARGUMENT", "a utility VM needs a name");
    const vm = await options.launcher.launch({
      name: options.name,
      timeoutMs: timeoutMs || 300_000,
      kirdPath: options.kirdPath,
      kernel: options.kernel,
      initrd: options.initrd,
      bootParameters: options.bootParameters,
      scsiControllers: controllers,
    });
    const bridge = new GcsBridge(vm.bridge, { transport: vm.transport, timeoutMs: timeoutMs || undefined });
    try {
      await bridge.negotiate();
    } catch (err) {
      await bridge.close().catch(() => {});
      await vm.terminate().catch(() => {});
      throw err;
    }
    const uvm = new UtilityVM(options.name, vm, bridge, timeoutMs, controllers);
    // A VM that dies on its own takes its bridge with it: every pending call fails CLOSED.
    void vm.exited.then(() => bridge.close().catch(() => {}));
    return uvm;
  }

  /** The platform half of the VM (what the launcher handed over): HCS-side attach, host paths. */
  get launched(): LaunchedVm {
    return this.#vm;
  }

  /** The process that is the VM, when there is one (Linux launcher). */
  get pid(): number | undefined {
    return this.#vm.pid;
  }

  /** Settles when the VM stops. */
  get exited(): Promise<VmExit> {
    return this.#vm.exited;
  }

  /** Disks attached now, by host path. */
  get disks(): ReadonlyMap<string, Readonly<AttachedDisk>> {
    return this.#disks;
  }

  /** The host path of a guest path, when the launcher can reach into the guest (Linux). */
  hostPath(guestPath: string): string | undefined {
    return this.#vm.hostPath(guestPath);
  }

  /**
   * Hot-adds `hostPath` as a SCSI disk and mounts it in the guest (read-only for layers,
   * read-write for a sandbox) at `mountPath`, or the first free /run/mounts/scsi/m<N>; or takes
   * another reference if it is attached already (with the same mode). Returns where the guest
   * mounted it.
   */
  addDisk(hostPath: string, options: { readOnly: boolean; mountPath?: string }): Promise<AttachedDisk> {
    if (!posix.isAbsolute(hostPath) && !/^[A-Za-z]:[\\/]/.test(hostPath)) throw new GcsError("INVALID_ARGUMENT", `disk ${JSON.stringify(hostPath)} is not an absolute path`);
    return this.#diskLocks.run(hostPath, async () => {
      this.#checkRunning("add a disk");
      const held = this.#disks.get(hostPath);
      if (held) {
        if (held.readOnly !== options.readOnly) {
          throw new GcsError("ALREADY_EXISTS", `${hostPath} is attached to ${this.name} ${held.readOnly ? "read-only" : "read-write"} already`);
        }
        held.refs++;
        return { ...held };
      }
      if (options.mountPath !== undefined && !posix.isAbsolute(options.mountPath)) throw new GcsError("INVALID_ARGUMENT", `mount path ${JSON.stringify(options.mountPath)} is not an absolute guest path`);
      const [controller, lun] = this.#allocateSlot(hostPath);
      const guestPath = options.mountPath ?? this.#allocateMountPath();
      this.#usedMountPaths.add(guestPath);
      const disk: AttachedDisk = { hostPath, controller, lun, guestPath, readOnly: options.readOnly, refs: 1 };
      let attached = false;
      try {
        await this.#vm.attachScsi(disk);
        attached = true;
        await this.bridge.addMappedVirtualDisk(mappedDisk(disk));
      } catch (err) {
        // Undo what was done; a guest that is gone or wedged cannot be asked, so errors here are secondary.
        if (attached) {
          await this.bridge.removeMappedVirtualDisk(mappedDisk(disk)).catch(() => {});
          await this.bridge.removeScsiDevice({ Controller: controller, Lun: lun }).catch(() => {});
          await this.#vm.detachScsi(disk).catch(() => {});
        }
        this.#freeSlot(disk);
        throw this.#wrap(err, `adding disk ${hostPath} to ${this.name}`);
      }
      this.#disks.set(hostPath, disk);
      await this.#vm.recordMounts?.().catch(() => {});
      return { ...disk };
    });
  }

  /** Drops one reference to `hostPath`; the last one unmounts, unplugs and detaches it. */
  removeDisk(hostPath: string): Promise<void> {
    return this.#diskLocks.run(hostPath, async () => {
      const disk = this.#disks.get(hostPath);
      if (!disk) throw new GcsError("NOT_FOUND", `${hostPath} is not attached to ${this.name}`);
      if (--disk.refs > 0) return;
      this.#disks.delete(hostPath);
      this.#freeSlot(disk);
      if (this.#terminated) return; // the VM took the disk with it
      try {
        await this.bridge.removeMappedVirtualDisk(mappedDisk(disk));
        await this.bridge.removeScsiDevice({ Controller: disk.controller, Lun: disk.lun });
      } finally {
        await this.#vm.detachScsi(disk);
      }
    });
  }

  /** Mounts an overlay at `rootPath` of `layers` (guest paths, top-most first), writable when `scratchPath` is given. */
  async combineLayers(rootPath: string, layers: readonly string[], scratchPath?: string): Promise<void> {
    this.#checkRunning("combine layers");
    try {
      await this.bridge.addCombinedLayers({ ContainerRootPath: rootPath, Layers: layers.map((Path) => ({ Path })), ScratchPath: scratchPath });
    } catch (err) {
      throw this.#wrap(err, `combining ${layers.length} layer(s) at ${rootPath} in ${this.name}`);
    }
  }

  async removeCombinedLayers(rootPath: string): Promise<void> {
    if (this.#terminated) return;
    try {
      await this.bridge.removeCombinedLayers(rootPath);
    } catch (err) {
      throw this.#wrap(err, `removing the union at ${rootPath} in ${this.name}`);
    }
  }

  /** Starts a process in the VM with the stdio pipes it asks for. */
  async spawn(params: ProcessParameters): Promise<GuestProcess> {
    this.#checkRunning("run a process");
    return this.bridge.executeProcess(params);
  }

  /**
   * Runs a process to completion: feeds `stdin` (bytes or a stream), collects stdout and stderr,
   * returns the exit code. `timeoutMs` (default: the VM's operation timeout) bounds the whole run.
   */
  async run(args: readonly string[], options: { stdin?: Uint8Array | string | Readable; env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    const proc = await this.spawn({
      CommandArgs: [...args],
      WorkingDirectory: options.cwd ?? "/",
      Environment: options.env ?? { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
      CreateStdInPipe: true,
      CreateStdOutPipe: true,
      CreateStdErrPipe: true,
    });
    const collect = (stream: Readable | null | undefined): Promise<Buffer> =>
      new Promise((resolve, reject) => {
        if (!stream) return resolve(Buffer.alloc(0));
        const parts: Buffer[] = [];
        stream.on("data", (b: Buffer) => parts.push(b));
        stream.on("error", reject);
        stream.on("end", () => resolve(Buffer.concat(parts)));
      });
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      const work = (async () => {
        const out = collect(proc.stdout);
        const err = collect(proc.stderr);
        await feed(proc.stdin, options.stdin);
        const [exitCode, stdout, stderr] = await Promise.all([proc.wait(), out, err]);
        return { exitCode, stdout, stderr };
      })();
      if (!timeoutMs) return await work;
      return await Promise.race([
        work,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new GcsError("TIMEOUT", `${args.join(" ")} in ${this.name} did not finish within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      await proc.close();
    }
  }

  /**
   * Stops the VM: asks the guest to shut down (it releases its mounts), then terminates it
   * for good. Idempotent; every later call on the VM fails CLOSED.
   */
  terminate(): Promise<void> {
    this.#terminated ??= (async () => {
      await this.bridge.shutdown(true, { timeoutMs: 10_000 }).catch(() => {});
      await this.bridge.close().catch(() => {});
      await this.#vm.terminate();
    })();
    return this.#terminated;
  }

  #checkRunning(what: string): void {
    if (this.#terminated) throw new GcsError("CLOSED", `cannot ${what}: utility VM ${this.name} was terminated`);
  }

  #allocateSlot(hostPath: string): [number, number] {
    for (let c = 0; c < this.#controllers; c++) {
      for (let l = 0; l < SCSI_LUNS_PER_CONTROLLER; l++) {
        const key = `${c}:${l}`;
        if (!this.#usedSlots.has(key)) {
          this.#usedSlots.add(key);
          return [c, l];
        }
      }
    }
    throw new GcsError("ALREADY_EXISTS", `no free SCSI slot in ${this.name} for ${hostPath}: all ${this.#controllers * SCSI_LUNS_PER_CONTROLLER} LUNs are in use`);
  }

  /** The first free /run/mounts/scsi/m<N>, as hcsshim picks them. */
  #allocateMountPath(): string {
    let m = 0;
    while (this.#usedMountPaths.has(`${SCSI_MOUNT_PREFIX}${m}`)) m++;
    return `${SCSI_MOUNT_PREFIX}${m}`;
  }

  #freeSlot(disk: AttachedDisk): void {
    this.#usedSlots.delete(`${disk.controller}:${disk.lun}`);
    this.#usedMountPaths.delete(disk.guestPath);
  }

  #wrap(err: unknown, what: string): GcsError {
    if (!isGcsError(err)) return toGcsError(err, what);
    return new GcsError(err.code, `${what}: ${err.message}`, { hresult: err.hresult, records: err.records, operation: err.operation, cause: err });
  }
}

/** The MappedVirtualDisk settings of `disk`, the same for its Add and its Remove (as hcsshim sends them). */
function mappedDisk(disk: AttachedDisk): MappedVirtualDisk {
  return { MountPath: disk.guestPath, Lun: disk.lun, Controller: disk.controller, ReadOnly: disk.readOnly, Options: disk.readOnly ? ["ro"] : [] };
}

/** Writes `input` to a process's stdin and half-closes it (EOF for the process). */
async function feed(stdin: NodeJS.WritableStream | null | undefined, input: Uint8Array | string | Readable | undefined): Promise<void> {
  if (!stdin) return;
  if (input === undefined) {
    stdin.end();
    return;
  }
  if (typeof input === "string" || input instanceof Uint8Array) {
    await new Promise<void>((resolve, reject) => {
      stdin.once("error", reject);
      stdin.end(input, () => resolve());
    });
    return;
  }
  const { pipeline } = await import("node:stream/promises");
  await pipeline(input, stdin);
}
