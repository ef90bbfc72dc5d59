// Per-disk primitives of the kernel mounter: mount one disk image's ext4 filesystem through a
// loop device (a layer.vhd read-only with the footer cut off by a size limit, a raw image, or a
// sandbox.vhdx through a qemu-storage-daemon FUSE export), mount an overlay, and undo any of it
// idempotently. The kernel mounter composes them into a union per layer id and journals every
// step; apps/guest composes them per SCSI disk and union request of the GCS bridge and keeps its
// steps in memory. Both get them from here (`@lcow/driver/kernel`), so a fix to how Linux is
// driven lands in both.
//
// Every primitive takes a `StepRecorder`: it records a step *before* the action it describes
// (so a crash in between leaves a record of what may exist) and saves again once the action has
// produced what the step needs to be undone (a pid, a device name). `undoStep` releases one
// step if it is still in effect, asking the kernel rather than trusting the record.
import { existsSync } from "node:fs";
import { mkdir, open } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { DriverError } from "../../errors.js";
import { run, type RunOptions } from "./exec.js";
import { releaseLoops, type LoopTools } from "./loop.js";
import { isMountPoint, readMounts } from "./proc.js";
import { exportPath, startExport, stopExport, type QsdTools } from "./qsd.js";
import type { MountStep, QsdStep, Step } from "./state.js";

/** The tools the primitives run, and their time bounds. Make one with `kernelTools`. */
export interface KernelTools extends LoopTools, QsdTools {
  mount: string;
  /** Bound on each tool run; 0 for none. */
  timeoutMs: number;
}

/** Options of `kernelTools`; the same names as the kernel mounter's options. */
export interface KernelToolOptions {
  /**
   * Milliseconds each tool invocation (and a daemon's shutdown) may take before it is killed.
   * 0 means no limit on tools, and 60 s for a daemon to exit after SIGTERM. If not provided, 60 000.
   */
  timeoutMs?: number;
  /** Path or name of `losetup`. If not provided, "losetup" (searched on PATH). */
  losetup?: string;
  /** Path or name of `mount`. If not provided, "mount". */
  mount?: string;
  /** Path or name of `umount`. If not provided, "umount". */
  umount?: string;
  /** Path or name of `qemu-storage-daemon`. If not provided, "qemu-storage-daemon". */
  qemuStorageDaemon?: string;
  /** Path or name of `nsenter` (for `exportNamespacePid`). If not provided, "nsenter". */
  nsenter?: string;
  /**
   * Run qemu-storage-daemon in the mount namespace of this process, not ours (see
   * `ExportNamespace` in qsd.ts: for callers in a namespace that dies with them). If not
   * provided, ours.
   */
  exportNamespacePid?: number;
}

/** The tool set for `options`, with the documented defaults. Checks nothing (cheap). */
export function kernelTools(options: KernelToolOptions = {}): KernelTools {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return {
    timeoutMs,
    waitMs: timeoutMs > 0 ? timeoutMs : 60_000,
    losetup: options.losetup ?? "losetup",
    mount: options.mount ?? "mount",
    umount: options.umount ?? "umount",
    qemuStorageDaemon: options.qemuStorageDaemon ?? "qemu-storage-daemon",
    exportNamespace: options.exportNamespacePid === undefined ? undefined : { pid: options.exportNamespacePid, nsenter: options.nsenter ?? "nsenter" },
  };
}

/**
 * Where steps go. `record` is called with a step before its action is taken (the step is then
 * the recorder's to keep, and is completed in place); `save` after the action, once the step
 * holds what it produced.
 */
export interface StepRecorder {
  record(step: Step): Promise<void>;
  save(): Promise<void>;
}

/** A recorder that keeps steps in memory, in the order taken: for callers that need no journal. */
export class StepLog implements StepRecorder {
  readonly steps: Step[] = [];

  record(step: Step): Promise<void> {
    this.steps.push(step);
    return Promise.resolve();
  }

  save(): Promise<void> {
    return Promise.resolve();
  }
}

/** Size of the fixed VHD footer that follows the ext4 image in layer.vhd. */
export const VHD_FOOTER_SIZE = 512;
/** mount(2) copies one page of option data; the options and their NUL must fit. */
export const MAX_MOUNT_DATA = 4096 - 1;

/** What a disk image file is, by its bytes. */
export type DiskImageKind = "vhd" | "vhdx" | "raw";

/**
 * Looks at a disk image file: a VHDX starts with the file identifier `vhdxfile`; a fixed VHD
 * ends with a 512-byte footer whose cookie is `conectix` (`size` is then the disk without the
 * footer); anything else is a raw image (`size` is the file's). A missing file rejects with the
 * OS error (ENOENT).
 */
export async function inspectDiskImage(file: string): Promise<{ kind: DiskImageKind; size: number }> {
  const fh = await open(file, "r");
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(8);
    if (size >= 8) await fh.read(head, 0, 8, 0);
    if (head.toString("latin1") === "vhdxfile") return { kind: "vhdx", size };
    const cookie = Buffer.alloc(8);
    if (size >= VHD_FOOTER_SIZE * 2) await fh.read(cookie, 0, 8, size - VHD_FOOTER_SIZE);
    if (cookie.toString("latin1") === "conectix") return { kind: "vhd", size: size - VHD_FOOTER_SIZE };
    return { kind: "raw", size };
  } finally {
    await fh.close();
  }
}

/**
 * The size of the ext4 image inside `file` (a layer.vhd): its length less the 512-byte footer,
 * which must carry the VHD cookie; a loop device over the whole file would hand ext4 a device
 * whose size disagrees with the superblock's block count. Anything else is DATA_LOSS.
 */
export async function ext4SizeOfVhd(file: string, id?: string): Promise<number> {
  const { kind, size } = await inspectDiskImage(file);
  if (kind !== "vhd") throw new DriverError("DATA_LOSS", `${file} does not end with a VHD footer (cookie "conectix")`, { id });
  return size;
}

/** How `mountImage` mounts a filesystem image. */
export interface ImageMountOptions {
  /** Mount read-only, with `noload` (a read-only mount must never replay a journal). */
  readOnly: boolean;
  /** Bytes of the file the loop device covers, from its start (a VHD without its footer). If not provided, all of it. */
  sizeLimit?: number;
  /**
   * True when `file` belongs to this mount alone (a FUSE export): undoing the mount then also
   * detaches any loop device still bound to it. If not provided, false.
   */
  privateFile?: boolean;
}

/**
 * Mounts the ext4 filesystem in `file` on `target` (made if missing) through a loop device that
 * mount(8) binds with auto-clear (see loop.ts): the kernel frees it when the filesystem is
 * unmounted, also when the mount namespace holding it dies. Records the step first and the
 * device after. Returns the step.
 */
export async function mountImage(tools: KernelTools, file: string, target: string, options: ImageMountOptions, recorder: StepRecorder): Promise<MountStep> {
  await mkdir(target, { recursive: true });
  const step: MountStep = { kind: "mount", target, fsType: "ext4", loop: { file, private: options.privateFile ?? false } };
  await recorder.record(step);
  const flags = ["loop", options.readOnly ? "ro" : "rw"];
  if (options.sizeLimit !== undefined) flags.push(`sizelimit=${options.sizeLimit}`);
  if (options.readOnly) flags.push("noload");
  // A file reached through /proc/<pid>/root (a FUSE export in the daemons' namespace) must be
  // opened by that name, not canonicalized (see exportPath in qsd.ts). Targets are canonical
  // already (callers resolve them).
  const noCanonicalize = file.startsWith("/proc/") ? ["--no-canonicalize"] : [];
  await run(tools.mount, [...noCanonicalize, "-t", "ext4", "-o", flags.join(","), file, target], { timeoutMs: tools.timeoutMs });
  const source = (await readMounts()).find((m) => m.mountPoint === target)?.source;
  if (source && /^\/dev\/loop\d+$/.test(source)) {
    step.loop!.device = source;
    await recorder.save();
  }
  return step;
}

/**
 * Mounts a layer.vhd (ext4 + fixed VHD footer) on `target` through a loop device limited to
 * the ext4 part: read-only unless `readOnly` is false. A file without the footer is DATA_LOSS.
 */
export async function mountLayerVhd(tools: KernelTools, file: string, target: string, recorder: StepRecorder, options: { readOnly?: boolean; id?: string } = {}): Promise<MountStep> {
  const sizeLimit = await ext4SizeOfVhd(file, options.id);
  return mountImage(tools, file, target, { readOnly: options.readOnly ?? true, sizeLimit }, recorder);
}

/** Where a VHDX's FUSE export and its daemon's pid file go (both must be unique to the user). */
export interface VhdxExportPaths {
  /** Regular file the virtual disk is exported onto as a raw image (made, or emptied). */
  exportFile: string;
  /** File the daemon writes its pid to. */
  pidFile: string;
}

/**
 * Exports `vhdx`'s virtual disk as a raw image on `where.exportFile` with qemu-storage-daemon
 * (see qsd.ts): writable, or read-only with `force-share` (so it works while another daemon
 * holds the VHDX writable). Records the step first and the pid after. Returns the step; the
 * raw image, from our mount namespace, is `exportImagePath(tools, step)`.
 */
export async function startVhdxExport(tools: KernelTools, vhdx: string, where: VhdxExportPaths, writable: boolean, recorder: StepRecorder): Promise<QsdStep> {
  await mkdir(resolve(where.exportFile, ".."), { recursive: true });
  const step: QsdStep = { kind: "qsd", vhdx, exportFile: where.exportFile, pidFile: where.pidFile, writable };
  await recorder.record(step);
  step.pid = await startExport(tools, step);
  await recorder.save();
  return step;
}

/** The raw image of a VHDX export, as a path in our mount namespace (the daemons' may be another). */
export function exportImagePath(tools: KernelTools, step: QsdStep): string {
  return exportPath(tools, step.exportFile);
}

/**
 * Mounts a sandbox.vhdx's filesystem on `where.target`: a FUSE export of its virtual disk
 * (`startVhdxExport`) and a loop device on that, read-write when `writable`, else read-only.
 * Records both steps; undoing them in reverse releases the mount, the device and the daemon.
 */
export async function mountSandboxVhdx(
  tools: KernelTools,
  vhdx: string,
  where: VhdxExportPaths & { target: string },
  writable: boolean,
  recorder: StepRecorder,
): Promise<void> {
  const step = await startVhdxExport(tools, vhdx, where, writable, recorder);
  await mountImage(tools, exportImagePath(tools, step), where.target, { readOnly: !writable, privateFile: true }, recorder);
}

/** An overlay union to mount. */
export interface OverlaySpec {
  /** Mount point (made if missing). */
  target: string;
  /** Lower directories, top-most first; relative ones are relative to `cwd`. */
  lowerDirs: readonly string[];
  /**
   * The writable layer: `upperDir` and `workDir` on one filesystem. The union is then mounted
   * read-write with index, redirect_dir and metacopy off: a diff reads the upper dir as a plain
   * tree, which only holds if copy-up writes whole files and renamed lower dirs are copied up
   * whole. Without it the union is read-only.
   */
  upper?: { upperDir: string; workDir: string };
  /**
   * Working directory of mount(8). Deep chains pass short relative lower dirs and run mount in
   * the folder holding them, since the options must fit in one page. If not provided, ours.
   */
  cwd?: string;
  /**
   * Empty directories (made as needed; relative to `cwd`) to pad `lowerDirs` with: overlayfs
   * needs a lower dir, and two when it has no upper (Linux before 6.6 refuses one). Two are
   * enough. If not provided, too few lower dirs is INVALID_ARGUMENT.
   */
  emptyDirs?: readonly string[];
}

/** Characters that the overlay option string cannot carry in a path without escapes. */
const OVERLAY_UNSAFE = /[,:\\\n]/;

/**
 * Mounts the overlay `spec` describes, recording the step first. Paths that the option string
 * cannot carry (`,`, `:`, `\`) are INVALID_ARGUMENT; options over a page FAILED_PRECONDITION.
 * Returns the mount point.
 */
export async function mountOverlay(tools: KernelTools, spec: OverlaySpec, recorder: StepRecorder): Promise<string> {
  const lowerDirs = [...spec.lowerDirs];
  const needed = spec.upper ? 1 : 2;
  for (const dir of spec.emptyDirs ?? []) {
    if (lowerDirs.length >= needed) break;
    await mkdir(resolve(spec.cwd ?? ".", dir), { recursive: true });
    lowerDirs.push(dir);
  }
  if (lowerDirs.length < needed) throw new DriverError("INVALID_ARGUMENT", `overlay on ${spec.target}: ${lowerDirs.length} lower dirs; it needs ${needed}${spec.upper ? "" : " without an upper dir"}`);
  const paths = [...lowerDirs, ...(spec.upper ? [spec.upper.upperDir, spec.upper.workDir] : [])];
  const unsafe = paths.find((p) => OVERLAY_UNSAFE.test(p));
  if (unsafe !== undefined) throw new DriverError("INVALID_ARGUMENT", `overlay on ${spec.target}: path ${JSON.stringify(unsafe)} holds a character overlay options cannot carry (, : \\ or newline)`);
  const options = spec.upper
    ? `lowerdir=${lowerDirs.join(":")},upperdir=${spec.upper.upperDir},workdir=${spec.upper.workDir},index=off,redirect_dir=off,metacopy=off`
    : `ro,lowerdir=${lowerDirs.join(":")}`;
  if (options.length > MAX_MOUNT_DATA) {
    throw new DriverError("FAILED_PRECONDITION", `overlay options for ${spec.target} are ${options.length} bytes; mount data is limited to one page`);
  }
  await mkdir(spec.target, { recursive: true });
  await recorder.record({ kind: "mount", target: spec.target, fsType: "overlay" });
  await run(tools.mount, ["-t", "overlay", "-o", options, "overlay", spec.target], runOptions(tools, spec.cwd));
  return spec.target;
}

/**
 * Unmounts `target` if something is mounted there (absolute, symlink-free); nothing mounted is
 * success. A busy mount is FAILED_PRECONDITION, unless `lazy`: then it is detached lazily (for
 * rollbacks and teardown, where nobody may keep using it).
 */
export async function unmount(tools: KernelTools, target: string, options: { lazy?: boolean; id?: string } = {}): Promise<void> {
  if (!isAbsolute(target) || !(await isMountPoint(target))) return;
  try {
    await run(tools.umount, [target], runOptions(tools));
  } catch (err) {
    if (!options.lazy) {
      const busy = /busy/i.test((err as Error).message);
      throw busy ? new DriverError("FAILED_PRECONDITION", `${target} is in use: ${(err as Error).message}`, { id: options.id, cause: err }) : err;
    }
    await run(tools.umount, ["--lazy", target], runOptions(tools));
  }
}

/** How `undoStep` treats a step. */
export interface UndoOptions {
  /**
   * The step was recorded in this boot. Loop devices, pids and FUSE exports do not survive a
   * reboot and their names may now be someone else's, so other boots' daemons are not looked for.
   * If not provided, true.
   */
  sameBoot?: boolean;
  /** Detach a busy mount lazily instead of failing (see `unmount`). If not provided, false. */
  lazy?: boolean;
  /** Layer id for error details. */
  id?: string;
}

/**
 * Undoes one step if it is still in effect: unmounts a mount (then, for a private file, makes
 * sure no loop device still holds it), or stops a VHDX export's daemon (after detaching any
 * loop device left on its export: a daemon must not go while a device still reads through it).
 * Succeeds when the thing is already gone.
 */
export async function undoStep(tools: KernelTools, step: Step, options: UndoOptions = {}): Promise<void> {
  const sameBoot = options.sameBoot ?? true;
  switch (step.kind) {
    case "mount":
      await unmount(tools, step.target, options);
      // A private file's device must be gone before its FUSE daemon is stopped (next step).
      if (sameBoot && step.loop?.private && existsSync(step.loop.file)) await releaseLoops(tools, step.loop.file);
      return;
    case "qsd":
      if (!sameBoot) return;
      if (existsSync(exportImagePath(tools, step))) await releaseLoops(tools, exportImagePath(tools, step));
      await stopExport(tools, step, step.pid);
      return;
  }
}

/**
 * Undoes `steps` last first, removing each from the array once undone (so the array always
 * holds what is left). Stops at the first failure unless `lazy`: then every step is tried and
 * the failures are thrown together (INTERNAL, naming each).
 */
export async function undoSteps(tools: KernelTools, steps: Step[], options: UndoOptions = {}): Promise<void> {
  const errors: unknown[] = [];
  for (const step of [...steps].reverse()) {
    try {
      await undoStep(tools, step, options);
    } catch (err) {
      if (!options.lazy) throw err;
      errors.push(err);
      continue;
    }
    steps.splice(steps.indexOf(step), 1);
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new DriverError("INTERNAL", errors.map((e) => (e as Error).message).join("; "), { id: options.id, cause: new AggregateError(errors) });
}

function runOptions(tools: KernelTools, cwd?: string): RunOptions {
  return { timeoutMs: tools.timeoutMs, cwd };
}
