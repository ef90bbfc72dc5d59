// The kernel mounter's state: an undo log. Each step is recorded (in memory and in a journal
// file in the work folder) *before* the action it describes is taken, and completed with what
// the action produced (a loop device name, a pid) right after. Undo walks the log backwards and
// asks the kernel whether each thing is still there before releasing it, so the same code
// rolls back a failed mount, unmounts a finished one, and cleans up after a process that died
// at any point in between.
import { randomBytes } from "node:crypto";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { DriverError } from "../../errors.js";

/**
 * What every step has: the unit it belongs to. A unit is one layer's resources (`l/3`: its
 * loop device and ext4 mount; `s`: the sandbox's daemon, loop device and mount) or the union
 * (`m`). Steps of one unit are undone in reverse order; the union first, then the other units
 * in parallel. A step without a unit is undone after all others, in reverse order.
 */
interface StepBase {
  unit?: string;
}

/** A filesystem mounted on `target` (absolute, symlink-free; unique to this mount's work folder). */
export interface MountStep extends StepBase {
  kind: "mount";
  target: string;
  fsType: "ext4" | "overlay";
  /** For a filesystem on a file, the auto-clear loop device mount(8) bound to it. */
  loop?: {
    file: string;
    /** True when `file` is private to this mount (a FUSE export), so its devices may be detached by force. */
    private: boolean;
    /** The device, once mounted (for diagnostics; the kernel frees it on unmount). */
    device?: string;
  };
}

/** A qemu-storage-daemon exporting `vhdx` onto `exportFile`; `pid` is absent until it has started. */
export interface QsdStep extends StepBase {
  kind: "qsd";
  vhdx: string;
  exportFile: string;
  pidFile: string;
  /** False for a writable layer's snapshot exported read-only as a lower layer. */
  writable: boolean;
  pid?: number;
}

export type Step = MountStep | QsdStep;

/**
 * What `mount` returns as `state`, JSON as is. Version 1:
 *
 * ```json
 * { "mounter": "kernel", "version": 1, "id": "abc", "workDir": "/home/mounts/abc",
 *   "bootId": "0f1e...", "path": "/home/mounts/abc/m", "steps": [
 *     { "unit": "l/1", "kind": "mount", "target": "/home/mounts/abc/l/1", "fsType": "ext4",
 *       "loop": { "file": "/home/p/layer.vhd", "private": false, "device": "/dev/loop3" } },
 *     { "unit": "s", "kind": "qsd", "vhdx": "/home/abc/sandbox.vhdx", "exportFile": "/home/mounts/abc/sandbox.raw", "pidFile": "/home/mounts/abc/qsd.pid", "writable": true, "pid": 4242 },
 *     { "unit": "s", "kind": "mount", "target": "/home/mounts/abc/s", "fsType": "ext4",
 *       "loop": { "file": "/home/mounts/abc/sandbox.raw", "private": true, "device": "/dev/loop4" } },
 *     { "unit": "m", "kind": "mount", "target": "/home/mounts/abc/m", "fsType": "overlay" } ] }
 * ```
 *
 * `path` is null while a mount is in progress (only the journal file ever holds such a state).
 * Undo removes each step from the journal once it is undone, so after a crash in the middle
 * of an unmount the journal holds exactly what is left.
 */
export interface KernelMountState {
  mounter: "kernel";
  version: 1;
  id: string;
  workDir: string;
  /** The kernel's boot id when the mount was made; nothing of a mount from another boot is still attached. */
  bootId: string;
  path: string | null;
  steps: Step[];
}

/** The journal file in a mount's work folder: the state as last recorded, removed once everything is undone. */
export const JOURNAL_NAME = "kernel-mount.json";

function bad(why: string): never {
  throw new DriverError("DATA_LOSS", `not a kernel mounter state: ${why}`);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const absolute = (v: unknown, what: string): string => (typeof v === "string" && isAbsolute(v) ? v : bad(`${what} is not an absolute path`));

function parseStep(raw: unknown, i: number): Step {
  if (!isObject(raw)) bad(`step ${i} is not an object`);
  if (raw.unit !== undefined && typeof raw.unit !== "string") bad(`step ${i} unit ${JSON.stringify(raw.unit)}`);
  const step = parseStepKind(raw, i);
  if (typeof raw.unit === "string") step.unit = raw.unit;
  return step;
}

function parseStepKind(raw: Record<string, unknown>, i: number): Step {
  switch (raw.kind) {
    case "mount": {
      if (raw.fsType !== "ext4" && raw.fsType !== "overlay") bad(`step ${i} fsType ${JSON.stringify(raw.fsType)}`);
      const step: MountStep = { kind: "mount", target: absolute(raw.target, `step ${i} target`), fsType: raw.fsType };
      if (raw.loop !== undefined) {
        const l = raw.loop;
        if (!isObject(l) || (l.device !== undefined && (typeof l.device !== "string" || !/^\/dev\/loop\d+$/.test(l.device)))) bad(`step ${i} loop`);
        step.loop = { file: absolute(l.file, `step ${i} loop file`), private: l.private === true };
        if (typeof l.device === "string") step.loop.device = l.device;
      }
      return step;
    }
    case "qsd": {
      const step: QsdStep = {
        kind: "qsd",
        vhdx: absolute(raw.vhdx, `step ${i} vhdx`),
        exportFile: absolute(raw.exportFile, `step ${i} exportFile`),
        pidFile: absolute(raw.pidFile, `step ${i} pidFile`),
        writable: raw.writable !== false,
      };
      if (raw.pid !== undefined) {
        if (!Number.isSafeInteger(raw.pid) || (raw.pid as number) <= 1) bad(`step ${i} pid ${JSON.stringify(raw.pid)}`);
        step.pid = raw.pid as number;
      }
      return step;
    }
    default:
      return bad(`step ${i} has unknown kind ${JSON.stringify(raw.kind)}`);
  }
}

/**
 * Checks that `raw` (a state as persisted, possibly by another version or process) is a kernel
 * mounter state and returns it typed. Another mounter's state is INVALID_ARGUMENT; a damaged
 * one DATA_LOSS, naming what is wrong.
 */
export function parseKernelMountState(raw: unknown): KernelMountState {
  if (!isObject(raw)) bad("not an object");
  if (raw.mounter !== "kernel") throw new DriverError("INVALID_ARGUMENT", `not a kernel mounter state: mounter is ${JSON.stringify(raw.mounter)}`);
  if (raw.version !== 1) bad(`unsupported version ${JSON.stringify(raw.version)}`);
  if (typeof raw.id !== "string" || raw.id === "") bad("id is missing");
  if (raw.path !== null && typeof raw.path !== "string") bad("path is not a string");
  if (typeof raw.bootId !== "string") bad("bootId is missing");
  if (!Array.isArray(raw.steps)) bad("steps is not an array");
  return {
    mounter: "kernel",
    version: 1,
    id: raw.id,
    workDir: absolute(raw.workDir, "workDir"),
    bootId: raw.bootId,
    path: raw.path as string | null,
    steps: raw.steps.map(parseStep),
  };
}

/**
 * Saves a state to its journal, one write at a time in call order (steps are recorded from
 * parallel work), each write taking the state as it is when the write starts, so the last
 * write always holds the latest state.
 */
export class JournalWriter {
  #tail: Promise<void> = Promise.resolve();

  constructor(readonly state: KernelMountState) {}

  save(): Promise<void> {
    const next = this.#tail.then(() => writeJournal(this.state));
    this.#tail = next.catch(() => {});
    return next;
  }
}

/** Writes `state` to the journal of its work folder atomically (temporary name, rename). */
export async function writeJournal(state: KernelMountState): Promise<void> {
  const path = join(state.workDir, JOURNAL_NAME);
  const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  await writeFile(tmp, JSON.stringify(state));
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** The journal left in `workDir`, or undefined if there is none (or no such folder). A damaged journal throws DATA_LOSS. */
export async function readJournal(workDir: string): Promise<KernelMountState | undefined> {
  let text: string;
  try {
    text = await readFile(join(workDir, JOURNAL_NAME), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw err;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new DriverError("DATA_LOSS", `journal ${join(workDir, JOURNAL_NAME)} is not JSON`, { cause: err });
  }
  return parseKernelMountState(raw);
}

/** Removes the journal of `workDir` (done last, once everything it records is undone). */
export async function removeJournal(workDir: string): Promise<void> {
  await rm(join(workDir, JOURNAL_NAME), { force: true });
}

/** The kernel's boot id (changes at every boot). */
export async function currentBootId(): Promise<string> {
  return (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
}
