// The `uvm` mounter: the union view of a layer and its chain made inside a utility VM, as
// Docker's lcow driver made it. Each layer file is hot-added over SCSI and mounted by the guest
// at a short path (/run/mounts/scsi/m<N>), the guest's overlayfs combines them at
// /run/gcs/c/<id>/rootfs, and `put` takes it all apart again.
//
// Service VMs follow the seed: with `lcow.globalmode=true` one VM, `_lcow_global_svm_`, serves
// every id and stays up until `cleanup` (a layer used by several unions is attached once and
// reference-counted); otherwise ("safe mode") each id gets its own VM, `<id>_svm`, started by
// `get` and terminated when its last reference goes.
//
// The VM belongs to the process that started it (the guest dies when its bridge's host goes
// away), so this mounter suits a long-lived process: the Docker plugin, a daemon, a test. After
// a restart, a recorded mount whose VM is gone needs no undo: the VM took its mounts with it.
import { chmod, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { UtilityVM, UtilityVmLauncher } from "@lcow/gcs-client";
import { DEFAULT_SANDBOX_SIZE, SandboxCache } from "@lcow/vhd";
import { DriverError } from "../errors.js";
import { CACHE_DIR, LOCKS_DIR, SCRATCH_DIR } from "../layout.js";
import { withLock } from "../lock.js";
import type { LcowOptions } from "../options.js";
import { unionLayers } from "./layers.js";
import type { Mounter, MountRequest, MountState } from "./types.js";

export const GLOBAL_SVM_NAME = "_lcow_global_svm_";

export interface UvmMounterOptions {
  /** The store's home: scratch disks go to `scratch/<vm>.vhdx`, their blank to `cache/scratch.vhdx`. */
  home: string;
  options: LcowOptions;
  /** Starts service VMs (LinuxLauncher with the guest agent, or HcsLauncher on Windows). */
  launcher: UtilityVmLauncher;
}

/** What a uvm mount records: enough for `unmount` to undo it in the VM that made it. */
interface UvmMountState {
  mounter: "uvm";
  /** The VM's name; null when nothing was attached (an empty layer). */
  vm: string | null;
  /** Host files attached for this mount, in attach order. */
  disks: string[];
  /** The guest path of the overlay, when one was made. */
  union: string | null;
  /** The guest path returned (the union, or the single layer's mount). */
  guestPath: string;
}

interface VmEntry {
  vm: Promise<UtilityVM>;
  /** Mounts using the VM (safe mode terminates it when this drops to 0). */
  users: number;
  /** Terminates the VM and deletes its scratch disk. Idempotent. */
  stop: () => Promise<void>;
}

/** Where a service VM's scratch disk is mounted (the seed's opengcs used /tmp/scratch). */
export const SCRATCH_GUEST_PATH = "/run/mounts/scratch";

class UvmMounter implements Mounter {
  readonly name = "uvm" as const;
  readonly #home: string;
  readonly #options: LcowOptions;
  readonly #launcher: UtilityVmLauncher;
  readonly #vms = new Map<string, VmEntry>();
  readonly #scratchCache: SandboxCache;

  constructor(options: UvmMounterOptions) {
    this.#home = options.home;
    this.#options = options.options;
    this.#launcher = options.launcher;
    this.#scratchCache = new SandboxCache(join(options.home, CACHE_DIR));
  }

  /**
   * Starts the service VM `name` with its scratch disk, as the seed did: a copy of the cached
   * blank scratch at `scratch/<name>.vhdx` (a reflink where possible), attached read-write at
   * SCRATCH_GUEST_PATH for the VM's own work. The file is held by `locks/scratch-<name>.lock`
   * for the VM's life (the driver's init deletes scratch disks whose lock is not held) and
   * deleted when the VM stops.
   */
  async #start(name: string): Promise<{ vm: UtilityVM; stop: () => Promise<void> }> {
    const { UtilityVM } = await import("@lcow/gcs-client");
    const scratch = join(this.#home, SCRATCH_DIR, `${name}.vhdx`);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const haveLock = new Promise<void>((resolve) => (locked = resolve));
    const holding = withLock(join(this.#home, LOCKS_DIR, `scratch-${name}.lock`), async () => {
      locked();
      await released;
      await rm(scratch, { force: true });
    });
    holding.catch(() => {});
    let vm: UtilityVM | undefined;
    try {
      await Promise.race([haveLock, holding]);
      await rm(scratch, { force: true }); // a leftover of a VM of this name is stale
      await this.#scratchCache.copyTo("scratch", DEFAULT_SANDBOX_SIZE, scratch);
      const o = this.#options;
      // Four SCSI controllers (256 LUNs): a 128-layer image plus its sandbox must fit one VM.
      vm = await UtilityVM.start({ name, launcher: this.#launcher, timeoutSeconds: o.timeoutSeconds, kirdPath: o.kirdPath, kernel: o.kernel, initrd: o.initrd, bootParameters: o.bootParameters, scsiControllers: 4 });
      await vm.addDisk(scratch, { readOnly: false, mountPath: SCRATCH_GUEST_PATH });
    } catch (err) {
      await vm?.terminate().catch(() => {});
      release();
      await holding.catch(() => {});
      throw err;
    }
    const started = vm;
    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        try {
          await started.terminate();
        } finally {
          release();
          await holding.catch(() => {});
        }
      })());
    // A VM that stops on its own gives its scratch disk back too.
    void started.exited.then(() => stop().catch(() => {}));
    return { vm: started, stop };
  }

  #vmName(id: string): string {
    return this.#options.globalMode ? GLOBAL_SVM_NAME : `${id}_svm`;
  }

  /** Takes a use of the VM `name`, starting it if it is not running. */
  async #acquire(name: string): Promise<UtilityVM> {
    let entry = this.#vms.get(name);
    if (!entry) {
      // Registered before the first await, so concurrent mounts share one start.
      const starting = this.#start(name);
      const fresh: VmEntry = { vm: starting.then((s) => s.vm), users: 0, stop: async () => (await starting.catch(() => undefined))?.stop() };
      entry = fresh;
      this.#vms.set(name, fresh);
      starting.then(
        ({ vm }) => void vm.exited.then(() => this.#vms.get(name) === fresh && this.#vms.delete(name)),
        () => this.#vms.get(name) === fresh && this.#vms.delete(name),
      );
    }
    entry.users++;
    try {
      return await entry.vm;
    } catch (err) {
      entry.users--;
      throw err;
    }
  }

  /** Drops a use; in safe mode the last one terminates the VM. */
  async #release(name: string): Promise<void> {
    const entry = this.#vms.get(name);
    if (!entry) return;
    entry.users--;
    if (entry.users > 0 || this.#options.globalMode) return;
    this.#vms.delete(name);
    await entry.stop();
  }

  async mount(request: MountRequest): Promise<{ path: string; state: MountState }> {
    const { id } = request;
    const { own, lowers } = await unionLayers(request);
    if (lowers.length === 0 && own === undefined) {
      // Nothing to attach: an empty layer (created, nothing applied) with no content below.
      // Its view is an empty read-only folder; no VM is involved.
      const path = join(request.workDir, "empty");
      await mkdir(path, { recursive: true });
      await chmod(path, 0o555);
      return { path, state: { mounter: "uvm", vm: null, disks: [], union: null, guestPath: "" } };
    }
    const name = this.#vmName(id);
    const vm = await this.#acquire(name);
    const state: UvmMountState & { vm: string } = { mounter: "uvm", vm: name, disks: [], union: null, guestPath: "" };
    try {
      const lowerPaths: string[] = [];
      // One at a time: the guest serialises SCSI work anyway, and the LUN order stays stable.
      for (const lower of lowers) {
        const disk = await vm.addDisk(lower.file, { readOnly: true });
        state.disks.push(lower.file);
        // A writable layer in the chain (a container snapshot) contributes its upper/ dir.
        lowerPaths.push(lower.kind === "layer" ? disk.guestPath : `${disk.guestPath}/upper`);
      }
      let scratch: string | undefined;
      if (own?.kind === "sandbox") {
        const disk = await vm.addDisk(own.file, { readOnly: false });
        state.disks.push(own.file);
        scratch = disk.guestPath;
      }
      if (!scratch && lowers.length === 1 && own?.kind === "layer") {
        // A base layer alone needs no union: its read-only mount is the view.
        state.guestPath = lowerPaths[0]!;
      } else {
        const root = `/run/gcs/c/${id}/rootfs`;
        state.union = root;
        await vm.combineLayers(root, lowerPaths, scratch);
        state.guestPath = root;
      }
      const path = vm.hostPath(state.guestPath) ?? state.guestPath;
      return { path, state: state as unknown as MountState };
    } catch (err) {
      await this.#undo(vm, state).catch(() => {});
      await this.#release(name).catch(() => {});
      throw err;
    }
  }

  async #undo(vm: UtilityVM, state: UvmMountState): Promise<void> {
    if (state.union) await vm.removeCombinedLayers(state.union);
    for (const file of [...state.disks].reverse()) await vm.removeDisk(file);
  }

  async unmount(id: string, raw: MountState): Promise<void> {
    if (Object.keys(raw).length === 0) return; // mount failed and undid itself
    const state = parseState(id, raw);
    if (state.vm === null) return;
    const entry = this.#vms.get(state.vm);
    // Not ours, or not running any more: the VM that made the mount took it along when it stopped.
    if (!entry) return;
    const vm = await entry.vm.catch(() => undefined);
    if (!vm) return;
    await this.#undo(vm, state);
    await this.#release(state.vm);
  }

  /** Terminates every VM (the global one lives until here). */
  async close(): Promise<void> {
    const entries = [...this.#vms.values()];
    this.#vms.clear();
    await Promise.all(entries.map((e) => e.stop()));
  }
}

function parseState(id: string, raw: MountState): UvmMountState {
  const s = raw as Partial<UvmMountState>;
  if (s.mounter !== "uvm" || (s.vm !== null && typeof s.vm !== "string") || !Array.isArray(s.disks) || !s.disks.every((d) => typeof d === "string") || (s.union !== null && typeof s.union !== "string")) {
    throw new DriverError("DATA_LOSS", `the mount record of ${id} is not a uvm mount state: ${JSON.stringify(raw).slice(0, 200)}`, { id });
  }
  return s as UvmMountState;
}

export function createUvmMounter(options: UvmMounterOptions): Mounter {
  return new UvmMounter(options);
}
