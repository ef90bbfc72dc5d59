// The virtual SCSI bus and its disks. On a real LCOW VM the host hot-adds a disk through HCS,
// the guest finds it under /sys/bus/scsi and mounts it. Here the host's "attach" is a file
// `<scsi-dir>/<controller>-<lun>.json` = {"path": <host file>, "readOnly": bool}, written under
// a temporary name and renamed, and the guest turns the file into a filesystem with the
// driver's kernel primitives (@lcow/driver/kernel): a layer.vhd through a loop device that
// leaves out the footer, a VHDX through qemu-storage-daemon's FUSE export and a loop device, a
// raw image through a loop device.
//
// A disk is attached (its VHDX export started) when the first MappedVirtualDisk Add for its
// controller and LUN arrives, and each Add with a MountPath mounts it once more. Loop devices
// belong to mounts (auto-clear: the kernel frees them with the mount, also when the guest's
// mount namespace dies), so an Add without a MountPath binds none: the attached disk is then
// its image (a VHDX's raw export). Remove unmounts and, once nothing is mounted, releases the
// export; SCSIDevice Remove forgets the disk, detaching lazily whatever is still mounted, as
// deleting a SCSI device under a mounted filesystem would.
import { readFile, mkdir, realpath } from "node:fs/promises";
import { join } from "node:path";
import {
  exportImagePath,
  inspectDiskImage,
  mountImage,
  startVhdxExport,
  StepLog,
  undoSteps,
  type DiskImageKind,
  type KernelTools,
} from "@lcow/driver/kernel";
import { SCSI_CONTROLLER_GUIDS, SCSI_LUNS_PER_CONTROLLER } from "@lcow/gcs-client/protocol";
import { GuestError, toGuestError } from "./errors.js";
import { absolutePath, bool, isObject, str, uint, U64, U8, type JsonObject } from "./fields.js";
import { KeyedMutex } from "@lcow/gcs-client";
import type { Logger } from "./log.js";

/** How often the bus is polled for an attachment, as the real guest polls /sys/bus/scsi. */
export const SCSI_POLL_MS = 10;

/** What the host's attach file says. */
export interface ScsiAttachment {
  path: string;
  readOnly: boolean;
}

/** `LCOWMappedVirtualDisk`, read from a request. */
export interface MappedDiskSettings {
  mountPath: string;
  controller: number;
  lun: number;
  readOnly: boolean;
}

interface Mount {
  readOnly: boolean;
  steps: StepLog;
}

interface Disk {
  controller: number;
  lun: number;
  file: string;
  /** The attachment is read-only: nothing may mount it read-write. */
  readOnly: boolean;
  kind: DiskImageKind;
  /** Bytes of the image that hold the filesystem (a VHD without its footer). */
  size: number;
  /** A VHDX's FUSE export, while something needs it. */
  device: StepLog | undefined;
  /** Mounts by their (resolved) path. */
  mounts: Map<string, Mount>;
}

const controllerCount = Object.keys(SCSI_CONTROLLER_GUIDS).length;

/** Reads a MappedVirtualDisk's settings, checking what this guest can do with them. */
export function parseMappedDisk(s: JsonObject): MappedDiskSettings {
  const what = "MappedVirtualDisk";
  const controller = uint(s, "Controller", U8, `${what}.Controller`);
  const lun = uint(s, "Lun", U8, `${what}.Lun`);
  if (controller >= controllerCount) throw new GuestError("INVALID_ARGUMENT", `${what}.Controller ${controller}: there are ${controllerCount} SCSI controllers (0..${controllerCount - 1})`);
  if (lun >= SCSI_LUNS_PER_CONTROLLER) throw new GuestError("INVALID_ARGUMENT", `${what}.Lun ${lun}: a controller has LUNs 0..${SCSI_LUNS_PER_CONTROLLER - 1}`);
  const unsupported = (name: string) => new GuestError("NOT_IMPLEMENTED", `${what}.${name} is not supported by this guest`);
  if (uint(s, "Partition", U64, `${what}.Partition`) !== 0) throw unsupported("Partition");
  if (bool(s, "Encrypted", `${what}.Encrypted`)) throw unsupported("Encrypted");
  if (bool(s, "BlockDev", `${what}.BlockDev`)) throw unsupported("BlockDev");
  if (bool(s, "EnsureFilesystem", `${what}.EnsureFilesystem`)) throw unsupported("EnsureFilesystem");
  const fs = str(s, "Filesystem", `${what}.Filesystem`);
  if (fs !== "" && fs !== "ext4") throw new GuestError("NOT_IMPLEMENTED", `${what}.Filesystem ${JSON.stringify(fs)}: this guest mounts ext4 only`);
  return { mountPath: absolutePath(s, "MountPath", `${what}.MountPath`, { optional: true }), controller, lun, readOnly: bool(s, "ReadOnly", `${what}.ReadOnly`) };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class ScsiBus {
  readonly #disks = new Map<string, Disk>();
  readonly #locks = new KeyedMutex();

  constructor(
    readonly scsiDir: string,
    readonly stateDir: string,
    readonly tools: KernelTools,
    readonly log: Logger,
  ) {}

  /**
   * Waits for the host's attach file of `controller`/`lun`, polling every 10 ms with no
   * deadline of its own (as the real guest waits for the device), until `signal` aborts (the
   * bridge connection closed): then CLOSED. A file that does not say where the disk is FAILED.
   */
  async waitAttachment(controller: number, lun: number, signal: AbortSignal): Promise<ScsiAttachment> {
    const file = join(this.scsiDir, `${controller}-${lun}.json`);
    for (;;) {
      if (signal.aborted) throw new GuestError("CLOSED", `SCSI ${controller}:${lun}: the bridge closed while waiting for the disk to be attached (${file})`);
      let text: string | undefined;
      try {
        text = await readFile(file, "utf8");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw toGuestError(err, `reading SCSI attachment ${file}`);
      }
      if (text !== undefined) return parseAttachment(text, file);
      await sleep(SCSI_POLL_MS);
    }
  }

  /** MappedVirtualDisk Add: attaches the disk (first time) and mounts it at MountPath, if any. */
  add(settings: MappedDiskSettings, signal: AbortSignal): Promise<void> {
    const key = `${settings.controller}-${settings.lun}`;
    return this.#locks.run(key, async () => {
      const attachment = await this.waitAttachment(settings.controller, settings.lun, signal);
      const disk = await this.#attach(key, settings, attachment);
      if (settings.mountPath === "") {
        await this.#ensureDevice(disk).catch((err) => this.#failAdd(disk, key, err));
        return;
      }
      if (disk.readOnly && !settings.readOnly) {
        throw new GuestError("INVALID_ARGUMENT", `SCSI ${key}: ${disk.file} is attached read-only and cannot be mounted read-write at ${settings.mountPath}`);
      }
      await mkdir(settings.mountPath, { recursive: true }).catch((err) => {
        throw toGuestError(err, `creating mount path ${settings.mountPath}`);
      });
      // mountinfo shows resolved paths; mounts are kept and compared by them.
      const target = await realpath(settings.mountPath);
      if (this.#mountOwner(target)) throw new GuestError("ALREADY_EXISTS", `${settings.mountPath} already has a disk mounted on it`);
      const mount: Mount = { readOnly: settings.readOnly, steps: new StepLog() };
      disk.mounts.set(target, mount);
      try {
        const device = await this.#ensureDevice(disk);
        const source = device ?? disk.file;
        const sizeLimit = disk.kind === "vhd" ? disk.size : undefined;
        await mountImage(this.tools, source, target, { readOnly: settings.readOnly, sizeLimit }, mount.steps);
        this.log.info("disk mounted", { scsi: key, file: disk.file, kind: disk.kind, mountPath: target, readOnly: settings.readOnly });
      } catch (err) {
        await undoSteps(this.tools, mount.steps.steps, { lazy: true }).catch((undoErr: unknown) => this.log.error("undoing a failed disk mount", { scsi: key, err: undoErr }));
        disk.mounts.delete(target);
        await this.#failAdd(disk, key, err);
      }
    });
  }

  /** MappedVirtualDisk Remove: unmounts MountPath (if mounted), then releases the disk's export if nothing else is mounted. */
  remove(settings: MappedDiskSettings): Promise<void> {
    const key = `${settings.controller}-${settings.lun}`;
    return this.#locks.run(key, async () => {
      const disk = this.#disks.get(key);
      if (!disk) return;
      if (settings.mountPath !== "") {
        const target = await realpath(settings.mountPath).catch(() => settings.mountPath);
        const mount = disk.mounts.get(target);
        if (mount) {
          await undoSteps(this.tools, mount.steps.steps).catch((err) => {
            throw toGuestError(err, `unmounting ${settings.mountPath}`);
          });
          disk.mounts.delete(target);
          this.log.info("disk unmounted", { scsi: key, mountPath: target });
        }
      }
      if (disk.mounts.size === 0) await this.#releaseDevice(disk, false);
    });
  }

  /** SCSIDevice Remove: forgets the disk at `controller`/`lun`, detaching lazily whatever of it is still mounted. */
  unplug(controller: number, lun: number): Promise<void> {
    const key = `${controller}-${lun}`;
    return this.#locks.run(key, async () => {
      const disk = this.#disks.get(key);
      if (!disk) return;
      await this.#release(disk);
      this.#disks.delete(key);
      this.log.info("disk unplugged", { scsi: key });
    });
  }

  /** Releases every disk (teardown): mounts lazily, then exports. Collects failures instead of stopping at one. */
  async releaseAll(): Promise<unknown[]> {
    const errors: unknown[] = [];
    for (const [key, disk] of [...this.#disks]) {
      await this.#locks.run(key, () => this.#release(disk)).catch((err: unknown) => errors.push(err));
      this.#disks.delete(key);
    }
    return errors;
  }

  /** What the bus holds, one line per disk and mount, for DumpStacks. */
  describe(): string[] {
    const lines: string[] = [];
    for (const [key, d] of this.#disks) {
      lines.push(`scsi ${key}: ${d.file} (${d.kind}, ${d.readOnly ? "ro" : "rw"} attachment${d.device ? `, exported at ${exportFileOf(d.device)}` : ""})`);
      for (const [path, m] of d.mounts) lines.push(`  mounted ${m.readOnly ? "ro" : "rw"} at ${path}`);
    }
    return lines;
  }

  /** The disk of `key`, attached from `attachment`: the known one if it is the same file, else a fresh one. */
  async #attach(key: string, settings: MappedDiskSettings, attachment: ScsiAttachment): Promise<Disk> {
    const known = this.#disks.get(key);
    if (known && known.file === attachment.path && known.readOnly === attachment.readOnly) return known;
    if (known) {
      // The host detached and re-attached the LUN without an unplug: a different disk now.
      if (known.mounts.size > 0) throw new GuestError("ALREADY_EXISTS", `SCSI ${key} still has ${known.file} mounted; ${attachment.path} cannot take its LUN`);
      await this.#releaseDevice(known, false);
      this.#disks.delete(key);
    }
    let image: { kind: DiskImageKind; size: number };
    try {
      image = await inspectDiskImage(attachment.path);
    } catch (err) {
      throw toGuestError(err, `SCSI ${key}: opening ${attachment.path}`);
    }
    const disk: Disk = { controller: settings.controller, lun: settings.lun, file: attachment.path, readOnly: attachment.readOnly, ...image, device: undefined, mounts: new Map() };
    this.#disks.set(key, disk);
    return disk;
  }

  /** Starts a VHDX's export if it is not running; returns the raw image to mount (undefined: mount the file itself). */
  async #ensureDevice(disk: Disk): Promise<string | undefined> {
    if (disk.kind !== "vhdx") return undefined;
    const running = disk.device?.steps.find((s) => s.kind === "qsd");
    if (running?.kind === "qsd") return exportImagePath(this.tools, running);
    const name = `${disk.controller}-${disk.lun}`;
    const steps = new StepLog();
    disk.device = steps;
    try {
      const where = { exportFile: join(this.stateDir, "exports", `${name}.raw`), pidFile: join(this.stateDir, "scsi", `${name}.pid`) };
      const step = await startVhdxExport(this.tools, disk.file, where, !disk.readOnly, steps);
      return exportImagePath(this.tools, step);
    } catch (err) {
      await this.#releaseDevice(disk, true).catch(() => {});
      throw err;
    }
  }

  async #releaseDevice(disk: Disk, lazy: boolean): Promise<void> {
    if (!disk.device) return;
    await undoSteps(this.tools, disk.device.steps, { lazy });
    disk.device = undefined;
  }

  /** After a failed Add: a disk with nothing mounted gives its export back; then the error is thrown. */
  async #failAdd(disk: Disk, key: string, err: unknown): Promise<never> {
    if (disk.mounts.size === 0) {
      await this.#releaseDevice(disk, true).catch((releaseErr: unknown) => this.log.error("releasing a disk after a failed add", { scsi: key, err: releaseErr }));
    }
    throw toGuestError(err, `SCSI ${key}: ${disk.file}`);
  }

  async #release(disk: Disk): Promise<void> {
    const errors: unknown[] = [];
    for (const [path, mount] of disk.mounts) {
      try {
        await undoSteps(this.tools, mount.steps.steps, { lazy: true });
        disk.mounts.delete(path);
      } catch (err) {
        errors.push(err);
      }
    }
    await this.#releaseDevice(disk, true).catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw toGuestError(errors[0], `releasing SCSI ${disk.controller}:${disk.lun} (${disk.file})`);
  }

  #mountOwner(target: string): Disk | undefined {
    for (const d of this.#disks.values()) if (d.mounts.has(target)) return d;
    return undefined;
  }
}

function exportFileOf(device: StepLog): string {
  const step = device.steps.find((s) => s.kind === "qsd");
  return step?.kind === "qsd" ? step.exportFile : "";
}

function parseAttachment(text: string, file: string): ScsiAttachment {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new GuestError("FAILED", `SCSI attachment ${file} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isObject(raw) || typeof raw.path !== "string" || !raw.path.startsWith("/")) {
    throw new GuestError("FAILED", `SCSI attachment ${file} must be {"path": <absolute host path>, "readOnly": <bool>}`);
  }
  return { path: raw.path, readOnly: raw.readOnly === true };
}
