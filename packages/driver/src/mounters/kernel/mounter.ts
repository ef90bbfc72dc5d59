// The `kernel` mounter: the union view of a layer and its chain made by the host kernel, the
// way the service VM made it for Docker's lcow driver, but with loop devices instead of SCSI
// disks and a qemu-storage-daemon FUSE export standing in for Hyper-V's VHDX support.
//
// Work folder layout (`request.workDir`, ours alone):
//   l/1 .. l/N        read-only ext4 mounts of the lower layers, nearest first (l/1 is the layer
//                     itself for a read-only id, the nearest parent for a writable one)
//   x/<n>.raw, .pid   read-only FUSE export (and its daemon's pid) of a writable layer that
//                     appears in the chain (a snapshot of a container); its l/<n>/upper is the lower dir
//   sandbox.raw       FUSE export of the id's own sandbox.vhdx as a raw disk (writable ids)
//   qsd.pid           the exporting daemon's pid
//   s                 read-write ext4 mount of sandbox.raw, holding upper/ and work/
//   e1, e2            empty lower dirs, for unions with too few layers (overlayfs needs a lower
//                     layer, and two when it has no upper)
//   m                 the overlay union, returned as the path
//   kernel-mount.json the undo journal (see state.ts)
//
// Deep chains: Docker's driver passed absolute lower dirs and hit the one-page limit of mount
// data near 47 layers. Like Docker's overlay2, we run mount(8) with the work folder as its cwd
// and pass `l/1:l/2:...`, so 128 layers cost about 800 bytes of options and overlayfs's own
// limit of 500 lower layers binds first. (`lowerdir+` would lift the page limit, but needs
// Linux 6.8 and the new mount API, which Debian 12's kernel 6.1 and util-linux 2.38 lack.)
//
// Each union mounts each of its layers itself (its own mount points, no cross-id reference
// counts, locks or state files, so one id's crash can never strand another id's mounts); the
// kernel still shares the work underneath: mount(8) reuses one auto-clear loop device per layer
// file, and ext4 then one superblock per device (see loop.ts).
import { existsSync } from "node:fs";
import { mkdir, readdir, realpath, rm, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { DriverError } from "../../errors.js";
import {
  kernelTools,
  mountLayerVhd,
  mountOverlay,
  mountSandboxVhdx,
  undoStep,
  type KernelToolOptions,
  type KernelTools,
  type StepRecorder,
} from "./disk.js";
import { readMounts } from "./proc.js";
import {
  currentBootId,
  JOURNAL_NAME,
  parseKernelMountState,
  JournalWriter,
  readJournal,
  removeJournal,
  type KernelMountState,
  type Step,
} from "./state.js";
import { unionLayers } from "../layers.js";
import type { Mounter, MountRequest, MountState } from "../types.js";

/** Options of `createKernelMounter`: the tools and time bounds (see `KernelToolOptions`), and the store's home. */
export interface KernelMounterOptions extends KernelToolOptions {
  /**
   * The store's home. Lets `unmount(id, {})` (no state recorded: the core's clean-up after a
   * failed `mount`, or after a crash before `mount` returned) find `<home>/mounts/<id>/` and
   * release what its journal records. If not provided, such calls do nothing.
   */
  home?: string;
}

/** overlayfs refuses more lower layers than this (`OVL_MAX_STACK`). */
export const MAX_LOWER_LAYERS = 500;
/**
 * How many layers are mounted (or released) at once. mount, umount and losetup each take a few
 * milliseconds, mostly process start-up, so a 128-layer chain goes several times faster in
 * parallel; a small bound keeps a deep chain from starting hundreds of processes at once.
 */
const PARALLEL_LAYERS = 8;

function checkRequest(request: MountRequest): void {
  const bad = (why: string): never => {
    throw new DriverError("INVALID_ARGUMENT", `kernel mount of ${JSON.stringify(request.id)}: ${why}`, { id: request.id });
  };
  if (typeof request.id !== "string" || request.id === "") bad("empty id");
  if (!Array.isArray(request.chain)) bad("chain is not an array");
  for (const [what, p] of [["layerDir", request.layerDir], ["workDir", request.workDir], ...request.chain.map((c, i) => [`chain[${i}]`, c] as const)] as const) {
    if (typeof p !== "string" || !p.startsWith("/")) bad(`${what} ${JSON.stringify(p)} is not an absolute path`);
  }
}

/**
 * The `kernel` mounter (see the file comment). Stateless between calls: everything `unmount`
 * needs is in the state `mount` returned (and in the journal next to the mount), so any
 * instance, in any process, can unmount.
 */
class KernelMounter implements Mounter {
  readonly name = "kernel" as const;
  readonly #tools: KernelTools;
  readonly #home: string | undefined;

  constructor(options: KernelMounterOptions) {
    this.#home = options.home;
    this.#tools = kernelTools(options);
  }

  /**
   * Mounts the union of `request`: a writable layer (sandbox.vhdx) gets a read-write overlay
   * with its upper/ and work/ over the chain; a read-only layer gets a read-only overlay of
   * itself and its chain, or its own ext4 mount when it is alone. Empty layer folders are
   * skipped. On failure, everything done so far is undone before the error is thrown. A
   * journal left in `workDir` by an earlier mount that was never unmounted is released first.
   */
  async mount(request: MountRequest): Promise<{ path: string; state: MountState }> {
    checkRequest(request);
    const { id } = request;
    await mkdir(request.workDir, { recursive: true });
    // Mount points are compared with /proc/self/mountinfo, which shows resolved paths.
    const workDir = await realpath(request.workDir);
    const leftover = await readJournal(workDir);
    if (leftover) await this.#undo(leftover, false);

    const union = await unionLayers(request);
    const own = union.own?.kind;
    const lowers = union.lowers;
    if (lowers.length > MAX_LOWER_LAYERS) {
      throw new DriverError("FAILED_PRECONDITION", `${id} has ${lowers.length} non-empty lower layers; overlayfs stacks at most ${MAX_LOWER_LAYERS}`, { id });
    }

    const state: KernelMountState = { mounter: "kernel", version: 1, id, workDir, bootId: await currentBootId(), path: null, steps: [] };
    const journal = new JournalWriter(state);
    try {
      await journal.save();
      const lowerDirs = lowers.map((lower, i) => (lower.kind === "layer" ? `l/${i + 1}` : `l/${i + 1}/upper`));
      await forEachLimit(lowers, PARALLEL_LAYERS, async (lower, i) => {
        const n = String(i + 1);
        const unit = new Unit(`l/${n}`, journal);
        if (lower.kind === "layer") await mountLayerVhd(this.#tools, lower.file, join(workDir, "l", n), unit, { id });
        else await this.#mountSandbox(id, lower.file, { exportFile: join(workDir, "x", `${n}.raw`), pidFile: join(workDir, "x", `${n}.pid`), target: join(workDir, "l", n) }, false, unit);
      });
      let path: string;
      if (own === "sandbox") {
        await this.#mountSandbox(id, union.own!.file, { exportFile: join(workDir, "sandbox.raw"), pidFile: join(workDir, "qsd.pid"), target: join(workDir, "s") }, true, new Unit("s", journal));
        path = await this.#mountUnion(workDir, lowerDirs, { upperDir: "s/upper", workDir: "s/work" }, new Unit("m", journal));
      } else if (lowers.length === 1 && lowers[0]!.kind === "layer") {
        // A base layer alone needs no union: its ext4 mount is already read-only.
        path = join(workDir, "l", "1");
      } else {
        path = await this.#mountUnion(workDir, lowerDirs, undefined, new Unit("m", journal));
      }
      state.path = path;
      await journal.save();
      return { path, state: state as unknown as MountState };
    } catch (err) {
      try {
        await this.#undo(state, true);
      } catch (undoErr) {
        throw new DriverError(
          "INTERNAL",
          `mounting ${id} failed (${(err as Error).message}) and so did undoing it (${(undoErr as Error).message}); ${join(workDir, JOURNAL_NAME)} records what is left`,
          { id, cause: err },
        );
      }
      throw err;
    }
  }

  /**
   * Releases a mount: the journal in its work folder when there is one (it is at least as
   * fresh as any state handed out), else the given state if any of its mounts is still there.
   * `state` may be `{}` (nothing recorded); then the work folder is `<home>/mounts/<id>/` when
   * the mounter was given `home`. Succeeds when everything is already gone; a mount still in
   * use fails FAILED_PRECONDITION and leaves the rest for a retry.
   */
  async unmount(id: string, state: MountState): Promise<void> {
    const given = Object.keys(state).length === 0 ? undefined : parseKernelMountState(state);
    if (given && given.id !== id) throw new DriverError("INVALID_ARGUMENT", `state of ${JSON.stringify(given.id)} given to unmount ${JSON.stringify(id)}`, { id });
    let workDir = given?.workDir;
    if (!workDir) {
      if (!this.#home) return;
      workDir = join(this.#home, "mounts", id);
      workDir = await realpath(workDir).catch(() => workDir!);
    }
    const journal = await readJournal(workDir);
    if (journal) {
      if (journal.id !== id) throw new DriverError("DATA_LOSS", `${join(workDir, JOURNAL_NAME)} is for ${JSON.stringify(journal.id)}, not ${JSON.stringify(id)}`, { id });
      return this.#undo(journal, false);
    }
    // No journal: it is written before the first step and removed after the last undo, so
    // everything was released, unless someone deleted it; a mount of the state still there says so.
    if (given) {
      const mounted = new Set((await readMounts()).map((m) => m.mountPoint));
      if (given.steps.some((s) => s.kind === "mount" && mounted.has(s.target))) await this.#undo(given, false);
    }
  }

  /**
   * Mounts a sandbox.vhdx's filesystem at `where.target` (see `mountSandboxVhdx`), read-write
   * for the id's own sandbox, read-only for one in the chain, and checks its upper/.
   */
  async #mountSandbox(
    id: string,
    vhdx: string,
    where: { exportFile: string; pidFile: string; target: string },
    writable: boolean,
    unit: Unit,
  ): Promise<void> {
    await mountSandboxVhdx(this.#tools, vhdx, where, writable, unit);
    if (writable) {
      // Sandboxes made by Docker's service VM or without directories get them on first mount.
      await mkdir(join(where.target, "upper"), { recursive: true });
      await mkdir(join(where.target, "work"), { recursive: true });
    } else if (!existsSync(join(where.target, "upper"))) {
      throw new DriverError("DATA_LOSS", `${vhdx} has no upper/ directory to use as a lower layer of ${id}`, { id });
    }
  }

  /** Mounts the union at `<workDir>/m`; lower dirs are relative to `workDir`, padded with e1, e2 as overlayfs needs. */
  #mountUnion(workDir: string, lowerDirs: string[], upper: { upperDir: string; workDir: string } | undefined, unit: Unit): Promise<string> {
    return mountOverlay(this.#tools, { target: join(workDir, "m"), lowerDirs, upper, cwd: workDir, emptyDirs: ["e1", "e2"] }, unit);
  }

  /**
   * Undoes `state`'s steps, each only if it is still in effect, removing each from the journal
   * once done; then removes the helper files and the journal. The union goes first, then each
   * layer's unit (in parallel), each unit's steps last first. Steps of a mount made in another
   * boot are not looked for (loop devices, pids and FUSE exports do not survive a reboot, and
   * their names may now be someone else's). During a rollback (`rollback`), a mount that will
   * not go is detached lazily (nothing can be using a mount that was never handed out) and the
   * other steps are still tried; otherwise the first failure stops the undo, and the journal
   * keeps what is left for a retry.
   */
  async #undo(state: KernelMountState, rollback: boolean): Promise<void> {
    const journaled = existsSync(join(state.workDir, JOURNAL_NAME));
    const journal = new JournalWriter(state);
    const sameBoot = state.bootId === (await currentBootId());
    const units = new Map<string, Step[]>();
    for (const step of state.steps) {
      const key = step.unit ?? "";
      units.set(key, [...(units.get(key) ?? []), step]);
    }
    const errors: unknown[] = [];
    const undoUnit = async (steps: Step[]): Promise<void> => {
      for (const step of [...steps].reverse()) {
        try {
          await this.#undoStep(state.id, step, sameBoot, rollback);
        } catch (err) {
          if (!rollback) throw err;
          errors.push(err);
          continue;
        }
        state.steps.splice(state.steps.indexOf(step), 1);
        if (journaled) await journal.save();
      }
    };
    await undoUnit(units.get("m") ?? []);
    const layers = [...units].filter(([key]) => key !== "m" && key !== "").map(([, steps]) => steps);
    await forEachLimit(layers, PARALLEL_LAYERS, undoUnit);
    await undoUnit(units.get("") ?? []);
    if (errors.length > 0) {
      throw new DriverError("INTERNAL", `releasing the mount of ${state.id}: ${errors.map((e) => (e as Error).message).join("; ")}`, { id: state.id, cause: new AggregateError(errors) });
    }
    await removeHelpers(state.workDir);
    await removeJournal(state.workDir);
  }

  #undoStep(id: string, step: Step, sameBoot: boolean, rollback: boolean): Promise<void> {
    return undoStep(this.#tools, step, { sameBoot, lazy: rollback, id });
  }
}

/** One layer's (or the union's) share of the state: its steps carry its name, and are journaled as recorded. */
class Unit implements StepRecorder {
  constructor(
    readonly name: string,
    readonly journal: JournalWriter,
  ) {}

  /** Adds `step` to the state and journals it; called before the action the step describes. */
  record(step: Step): Promise<void> {
    step.unit = this.name;
    this.journal.state.steps.push(step);
    return this.journal.save();
  }

  /** Journals the state after a recorded step was completed (a device name, a pid). */
  save(): Promise<void> {
    return this.journal.save();
  }
}

/**
 * Runs `fn` over `items`, at most `limit` at a time. On the first failure no new item starts;
 * the ones running are awaited (so the caller can undo everything they did), and the first
 * error is thrown.
 */
async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  let first: unknown;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (err) {
        if (!failed) first = err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed) throw first;
}

/**
 * Removes the mount points and helper folders of a work folder, with rmdir only: a directory
 * that is still a mount point (or not empty) stays, so a leftover mount can never have its
 * contents deleted. The work folder itself is the core's to remove.
 */
async function removeHelpers(workDir: string): Promise<void> {
  const tryRmdir = (p: string) => rmdir(p).catch(() => {});
  for (const name of await readdir(join(workDir, "l")).catch(() => [] as string[])) await tryRmdir(join(workDir, "l", name));
  for (const name of ["l", "x", "s", "e1", "e2", "m"]) await tryRmdir(join(workDir, name));
  // A journal write cut short by a crash leaves its temporary file.
  for (const name of await readdir(workDir).catch(() => [] as string[])) {
    if (name.startsWith(`${JOURNAL_NAME}.`) && name.endsWith(".tmp")) await rm(join(workDir, name), { force: true });
  }
}

/**
 * Creates the `kernel` mounter. Requires Linux, root, loop devices, overlayfs, FUSE, util-linux
 * and qemu-storage-daemon (or the tools named in the options). Cheap: nothing is checked or
 * started until the first `mount`.
 */
export function createKernelMounter(options: KernelMounterOptions = {}): Mounter {
  return new KernelMounter(options);
}

/**
 * Releases whatever a crashed process left mounted in `workDir` (a mount's work folder), as
 * recorded in its journal; does nothing when there is no journal. Returns true if there was
 * something to release. (The driver can equally call `unmount(id, {})` on a mounter made with
 * `home`.)
 */
export async function recoverKernelMount(workDir: string, options: KernelMounterOptions = {}): Promise<boolean> {
  const journal = await readJournal(workDir);
  if (!journal) return false;
  await createKernelMounter(options).unmount(journal.id, journal as unknown as MountState);
  return true;
}
