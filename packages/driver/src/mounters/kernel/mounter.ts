// The `kernel` mounter: the union view of a layer and its chain made by the host kernel, the
// way the service VM made it for Docker's lcow driver, but with loop devices instead of SCSI
// disks and a qemu-storage-daemon FUSE export standing in for Hyper-V's VHDX support.
//
// Work folder layout (`request.workDir`, ours alone):
//   l/1 .. l/N        read-only ext4 mounts of the layers, nearest first (l/1 is the layer itself
//                     for a read-only id, the nearest parent for a writable one)
//   sandbox.raw       FUSE export of sandbox.vhdx as a raw disk (writable ids only)
//   qsd.pid           the exporting daemon's pid
//   s                 read-write ext4 mount of sandbox.raw, holding upper/ and work/
//   e                 an empty lower dir, for a writable layer without parents (overlayfs needs one)
//   m                 the overlay union, returned as the path
//   kernel-mount.json the undo journal (see state.ts)
//
// Deep chains: Docker's driver passed absolute lower dirs and hit the one-page limit of mount
// data near 47 layers. We run mount(8) with the work folder as its cwd and pass `l/1:l/2:...`
// as overlayfs's Docker's overlay2 does, so 128 layers cost about 800 bytes of options and the
// kernel's own limit of 500 lower layers binds first. (`lowerdir+` would lift the page limit
// but needs Linux 6.8 and the new mount API, which Debian 12's util-linux 2.38 does not use.)
import { open, mkdir, readdir, realpath, rmdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { KernelMountError } from "./errors.js";
import { run, type RunOptions } from "./exec.js";
import { attachLoop, detachLoop, type LoopTools } from "./loop.js";
import { isMountPoint } from "./proc.js";
import { startExport, stopExport, type QsdTools } from "./qsd.js";
import { parseKernelMountState, readJournal, removeJournal, writeJournal, type KernelMountState, type LoopStep, type QsdStep, type Step } from "./state.js";
import type { Mounter, MountRequest, MountState } from "../types.js";

/** Options of `createKernelMounter`. */
export interface KernelMounterOptions {
  /** Milliseconds each tool invocation (and a daemon's shutdown) may take before it is killed. If not provided, 60 000. */
  timeoutMs?: number;
  /** Path or name of `losetup`. If not provided, "losetup" (searched on PATH). */
  losetup?: string;
  /** Path or name of `mount`. If not provided, "mount". */
  mount?: string;
  /** Path or name of `umount`. If not provided, "umount". */
  umount?: string;
  /** Path or name of `qemu-storage-daemon`. If not provided, "qemu-storage-daemon". */
  qemuStorageDaemon?: string;
}

/** overlayfs refuses more lower layers than this (`OVL_MAX_STACK`). */
export const MAX_LOWER_LAYERS = 500;
/** mount(2) copies one page of option data; the options and their NUL must fit. */
const MAX_MOUNT_DATA = 4096 - 1;
/** Size of the fixed VHD footer that follows the ext4 image in layer.vhd. */
const VHD_FOOTER_SIZE = 512;

const LAYER_FILE = "layer.vhd";
const SANDBOX_FILE = "sandbox.vhdx";

interface Tools extends LoopTools, QsdTools {
  mount: string;
  timeoutMs: number;
}

/** What a layer folder holds. */
async function layerKind(dir: string): Promise<"layer" | "sandbox" | undefined> {
  for (const [name, kind] of [[LAYER_FILE, "layer"], [SANDBOX_FILE, "sandbox"]] as const) {
    try {
      if ((await stat(join(dir, name))).isFile()) return kind;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" && (err as NodeJS.ErrnoException).code !== "ENOTDIR") throw err;
    }
  }
  return undefined;
}

/**
 * The size of the ext4 image inside `file` (a layer.vhd): its length less the 512-byte footer,
 * which must carry the VHD cookie; a loop device over the whole file would hand ext4 a device
 * whose size disagrees with the superblock's block count.
 */
async function ext4SizeOfVhd(file: string): Promise<number> {
  const fh = await open(file, "r");
  try {
    const { size } = await fh.stat();
    const cookie = Buffer.alloc(8);
    if (size >= VHD_FOOTER_SIZE) await fh.read(cookie, 0, 8, size - VHD_FOOTER_SIZE);
    if (size < VHD_FOOTER_SIZE * 2 || cookie.toString("latin1") !== "conectix") {
      throw new KernelMountError("FAILED_PRECONDITION", `${file} does not end with a VHD footer (cookie "conectix")`);
    }
    return size - VHD_FOOTER_SIZE;
  } finally {
    await fh.close();
  }
}

function checkRequest(request: MountRequest): void {
  const bad = (why: string): never => {
    throw new KernelMountError("INVALID_ARGUMENT", `mount request for ${JSON.stringify(request.id)}: ${why}`);
  };
  if (typeof request.id !== "string" || request.id === "") bad("empty id");
  for (const [what, p] of [["layerDir", request.layerDir], ["workDir", request.workDir], ...request.chain.map((c, i) => [`chain[${i}]`, c] as const)] as const) {
    if (typeof p !== "string" || !p.startsWith("/")) bad(`${what} ${JSON.stringify(p)} is not an absolute path`);
  }
}

/**
 * The `kernel` mounter (see the file comment). Stateless between calls: everything `unmount`
 * needs is in the state `mount` returned, so any instance, in any process, can unmount.
 */
class KernelMounter implements Mounter {
  readonly name = "kernel" as const;
  readonly #tools: Tools;

  constructor(options: KernelMounterOptions) {
    const timeoutMs = options.timeoutMs ?? 60_000;
    this.#tools = {
      timeoutMs,
      losetup: options.losetup ?? "losetup",
      mount: options.mount ?? "mount",
      umount: options.umount ?? "umount",
      qemuStorageDaemon: options.qemuStorageDaemon ?? "qemu-storage-daemon",
    };
  }

  async mount(request: MountRequest): Promise<{ path: string; state: MountState }> {
    checkRequest(request);
    await mkdir(request.workDir, { recursive: true });
    // Mount points are compared with /proc/self/mountinfo, which shows resolved paths.
    const workDir = await realpath(request.workDir);
    // A journal here means a process died while this id was mounted or being mounted, and no
    // one unmounted it; release what it recorded before reusing the folder.
    const leftover = await readJournal(workDir);
    if (leftover) await this.#undo(leftover, false);

    const kind = await layerKind(request.layerDir);
    if (!kind) throw new KernelMountError("NOT_FOUND", `${request.layerDir} holds neither ${LAYER_FILE} nor ${SANDBOX_FILE}`);
    const lowers = kind === "layer" ? [request.layerDir, ...request.chain] : [...request.chain];
    if (lowers.length > MAX_LOWER_LAYERS) {
      throw new KernelMountError("FAILED_PRECONDITION", `${request.id} has ${lowers.length} read-only layers; overlayfs stacks at most ${MAX_LOWER_LAYERS}`);
    }
    for (const dir of request.chain) {
      const k = await layerKind(dir);
      if (k !== "layer") throw new KernelMountError(k ? "FAILED_PRECONDITION" : "NOT_FOUND", `parent ${dir} of ${request.id} holds no ${LAYER_FILE}${k ? " (a writable layer cannot be a parent)" : ""}`);
    }

    const state: KernelMountState = { mounter: "kernel", version: 1, id: request.id, workDir, path: null, steps: [] };
    const record = async (step: Step): Promise<void> => {
      state.steps.push(step);
      await writeJournal(state);
    };
    try {
      await writeJournal(state);
      await mkdir(join(workDir, "l"), { recursive: true });
      for (const [i, dir] of lowers.entries()) {
        await this.#mountLayer(join(dir, LAYER_FILE), join(workDir, "l", String(i + 1)), state, record);
      }
      let path: string;
      if (kind === "sandbox") {
        await this.#mountSandbox(join(request.layerDir, SANDBOX_FILE), workDir, state, record);
        let lowerdir = lowers.map((_, i) => `l/${i + 1}`).join(":");
        if (lowers.length === 0) {
          await mkdir(join(workDir, "e"), { recursive: true });
          lowerdir = "e";
        }
        // index, redirect_dir and metacopy off: `diff` reads upper/ as a plain tree, which only
        // holds if copy-up writes whole files and renames of lower dirs copy them up whole.
        path = await this.#mountOverlay(workDir, `lowerdir=${lowerdir},upperdir=s/upper,workdir=s/work,index=off,redirect_dir=off,metacopy=off`, record);
      } else if (lowers.length === 1) {
        // A base layer alone needs no union: its ext4 mount is already read-only.
        path = join(workDir, "l", "1");
      } else {
        path = await this.#mountOverlay(workDir, `ro,lowerdir=${lowers.map((_, i) => `l/${i + 1}`).join(":")}`, record);
      }
      state.path = path;
      await writeJournal(state);
      return { path, state: state as unknown as MountState };
    } catch (err) {
      try {
        await this.#undo(state, true);
      } catch (undoErr) {
        throw new KernelMountError(
          "MOUNT_FAILED",
          `mounting ${request.id} failed (${(err as Error).message}) and so did undoing it (${(undoErr as Error).message}); the journal in ${workDir} records what is left`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  async unmount(id: string, state: MountState): Promise<void> {
    const parsed = parseKernelMountState(state);
    if (parsed.id !== id) throw new KernelMountError("INVALID_ARGUMENT", `state of ${JSON.stringify(parsed.id)} given to unmount ${JSON.stringify(id)}`);
    // The journal may know more than the caller's copy (a later mount of the same id, recorded
    // before a crash); undo it too, it is the same work folder.
    const journal = await readJournal(parsed.workDir).catch(() => undefined);
    if (journal && JSON.stringify(journal.steps) !== JSON.stringify(parsed.steps)) await this.#undo(journal, false);
    await this.#undo(parsed, false);
  }

  async #mountLayer(file: string, target: string, state: KernelMountState, record: (s: Step) => Promise<void>): Promise<void> {
    const tools = this.#tools;
    const sizeLimit = await ext4SizeOfVhd(file);
    await mkdir(target, { recursive: true });
    const loop: LoopStep = { kind: "loop", file, readOnly: true };
    await record(loop);
    const { device, backing } = await attachLoop(tools, file, { readOnly: true, sizeLimit }, async (device) => {
      loop.device = device;
      await writeJournal(state);
    });
    loop.backing = backing;
    await writeJournal(state);
    await record({ kind: "mount", target, fsType: "ext4" });
    // noload: layers have no journal, and a read-only mount must never replay one.
    await run(tools.mount, ["-t", "ext4", "-o", "ro,noload", device, target], this.#runOptions());
  }

  async #mountSandbox(vhdx: string, workDir: string, state: KernelMountState, record: (s: Step) => Promise<void>): Promise<void> {
    const tools = this.#tools;
    const qsd: QsdStep = { kind: "qsd", vhdx, exportFile: join(workDir, "sandbox.raw"), pidFile: join(workDir, "qsd.pid") };
    await record(qsd);
    qsd.pid = await startExport(tools, qsd);
    await writeJournal(state);
    const loop: LoopStep = { kind: "loop", file: qsd.exportFile, readOnly: false };
    await record(loop);
    const { device, backing } = await attachLoop(tools, qsd.exportFile, { readOnly: false }, async (device) => {
      loop.device = device;
      await writeJournal(state);
    });
    loop.backing = backing;
    await writeJournal(state);
    const target = join(workDir, "s");
    await mkdir(target, { recursive: true });
    await record({ kind: "mount", target, fsType: "ext4" });
    await run(tools.mount, ["-t", "ext4", "-o", "rw", device, target], this.#runOptions());
    // Sandboxes made by Docker's service VM, or blank ones without directories, get them now.
    await mkdir(join(target, "upper"), { recursive: true });
    await mkdir(join(target, "work"), { recursive: true });
  }

  async #mountOverlay(workDir: string, options: string, record: (s: Step) => Promise<void>): Promise<string> {
    if (options.length > MAX_MOUNT_DATA) {
      throw new KernelMountError("FAILED_PRECONDITION", `overlay options for ${workDir} are ${options.length} bytes; mount data is limited to one page`);
    }
    const target = join(workDir, "m");
    await mkdir(target, { recursive: true });
    await record({ kind: "mount", target, fsType: "overlay" });
    await run(this.#tools.mount, ["-t", "overlay", "-o", options, "overlay", target], this.#runOptions(workDir));
    return target;
  }

  /**
   * Undoes `state`'s steps, last first, each only if it is still in effect; then removes the
   * helper files and the journal. During a rollback (`rollback`), a mount that will not go is
   * detached lazily (nothing can be using a mount that was never returned); on unmount, a busy
   * mount fails the call with FAILED_PRECONDITION and leaves the rest (and the journal) for a
   * later retry.
   */
  async #undo(state: KernelMountState, rollback: boolean): Promise<void> {
    const tools = this.#tools;
    const errors: unknown[] = [];
    for (const step of [...state.steps].reverse()) {
      try {
        switch (step.kind) {
          case "mount":
            await this.#umount(step.target, rollback);
            break;
          case "loop":
            // Without a recorded device the process died inside losetup; the device (if any)
            // cannot be told apart from other mounts' devices on the same layer file.
            if (step.device && step.backing) await detachLoop(tools, step.device, step.backing);
            break;
          case "qsd":
            await stopExport(tools, step, step.pid);
            break;
        }
      } catch (err) {
        if (!rollback) throw err;
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, `undoing the mount of ${state.id}: ${errors.map((e) => (e as Error).message).join("; ")}`);
    await removeHelpers(state.workDir);
    await removeJournal(state.workDir);
  }

  async #umount(target: string, lazy: boolean): Promise<void> {
    if (!(await isMountPoint(target))) return;
    try {
      await run(this.#tools.umount, [target], this.#runOptions());
    } catch (err) {
      if (!lazy) {
        const busy = /busy/i.test((err as Error).message);
        throw busy ? new KernelMountError("FAILED_PRECONDITION", `${target} is busy: ${(err as Error).message}`, { cause: err }) : err;
      }
      await run(this.#tools.umount, ["--lazy", target], this.#runOptions());
    }
  }

  #runOptions(cwd?: string): RunOptions {
    return { timeoutMs: this.#tools.timeoutMs, cwd };
  }
}

/**
 * Removes the mount points of a work folder, with rmdir only: a directory that is still a
 * mount point (or not empty) stays, so a leftover mount can never have its contents deleted.
 */
async function removeHelpers(workDir: string): Promise<void> {
  const tryRmdir = (p: string) => rmdir(p).catch(() => {});
  const lowers = await readdir(join(workDir, "l")).catch(() => [] as string[]);
  for (const name of lowers) await tryRmdir(join(workDir, "l", name));
  for (const name of ["l", "s", "e", "m"]) await tryRmdir(join(workDir, name));
}

/** Creates the `kernel` mounter. Requires Linux, root, loop devices, overlayfs, FUSE and the tools named in the options. */
export function createKernelMounter(options: KernelMounterOptions = {}): Mounter {
  return new KernelMounter(options);
}

/**
 * Releases whatever a crashed process left mounted in `workDir` (a mount's work folder), as
 * recorded in its journal; does nothing when there is no journal. For the driver's start-up
 * sweep of `<home>/mounts/*` when it has no persisted state for an id (a crash during `mount`,
 * before the state was returned). Returns true if there was something to release.
 */
export async function recoverKernelMount(workDir: string, options: KernelMounterOptions = {}): Promise<boolean> {
  const journal = await readJournal(workDir);
  if (!journal) return false;
  await createKernelMounter(options).unmount(journal.id, journal as unknown as MountState);
  return true;
}
