import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { convertTar, SandboxCache } from "@lcow/vhd";
import { computeChanges, computeContentSize, layerKind, layerTar, REPRODUCES_EXACT_DIFFS, tarsplitOptions, type Change } from "./content.js";
import { DriverError, isErrno, toDriverError } from "./errors.js";
import { fsyncDir, listDir, lstatMaybe, removeTreeSameDevice, writeAtomic } from "./fsutil.js";
import { CHAIN_FILE, isTempName, LAYER_FILE, Layout, REMOVING_SUFFIX, RESERVED_NAMES, SANDBOX_FILE, TARSPLIT_FILE, validateId } from "./layout.js";
import { lockHeldElsewhere, ownerAlive, SELF, withLock, withLocks } from "./lock.js";
import { createMounter } from "./mounters/index.js";
import type { Mounter, MounterFactory, MountState } from "./mounters/types.js";
import { parseOptions, parseStorageOpt, type LcowOptions, type MounterName, type OptionsInput } from "./options.js";
import type { CreateOptions, LayerInfo, LayerStore } from "./types.js";

/** Programmatic options of `init` besides the `lcow.*` ones. */
export interface DriverOptions {
  /** Flush layer files and folders to stable storage before they are renamed into place. If not provided, true. */
  fsync?: boolean;
  /** Mounter factories to use instead of (or besides) the built-in ones, by name. */
  mounters?: Partial<Record<MounterName, MounterFactory>>;
}

/** What the store records about one mounted layer (`<home>/mounts/<id>.json`). */
export interface MountRecord {
  /** "mounted" when complete; "mounting"/"unmounting" while a process works on it (a crash leaves it so). */
  status: "mounting" | "mounted" | "unmounting";
  /** References held (`get` minus `put`), by any process. */
  refs: number;
  /** The union view's path ("" until mounted). */
  path: string;
  /** The mounter's own state, needed to undo the mount. */
  state: MountState;
  /** Which mounter made it (undone by the same one, whatever `lcow.mounter` says now). */
  mounter: MounterName;
  /** The process that last changed the record: pid and start time. */
  pid: number;
  start: string;
  /** The host's boot id when mounted (Linux); a mount from an earlier boot is gone. */
  bootId: string | undefined;
}

const GIB = 2 ** 30;
const bootId = (): string | undefined => {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return undefined;
  }
};
const BOOT_ID = bootId();

/**
 * Opens (creating if needed) the layer store at `home` with Docker-style options
 * (`["lcow.sandboxsize=30", ...]` or a record). Creates `home`, `cache/`, `scratch/`, `mounts/`
 * and `locks/` (0700), then repairs what a crashed process left: folders being removed,
 * temporary files and staging folders, incomplete applies, interrupted mounts and mounts of an
 * earlier boot, stale lock files and stale scratch disks. Work that a live process holds the
 * lock for is left alone, so several processes can share one store. An unknown or malformed
 * option is INVALID_ARGUMENT naming it.
 */
export async function init(home: string, options: OptionsInput = [], driverOptions: DriverOptions = {}): Promise<Driver> {
  const parsed = parseOptions(options);
  const abs = resolve(home);
  const layout = new Layout(abs);
  try {
    for (const dir of [abs, layout.cache, layout.scratch, layout.mounts, layout.locks]) await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw toDriverError(err, `init: cannot create the store in ${abs}`);
  }
  const driver = new Driver(layout, parsed, driverOptions);
  await driver.repair();
  return driver;
}

/** The lcow layer store and graph-driver operations. Build one with `init`. */
export class Driver implements LayerStore {
  readonly reproducesExactDiffs = REPRODUCES_EXACT_DIFFS;
  private readonly sandboxes: SandboxCache;
  private readonly fsync: boolean;
  private readonly mounters = new Map<MounterName, Promise<Mounter>>();

  /** Use `init`. */
  constructor(
    private readonly layout: Layout,
    /** The parsed `lcow.*` options. */
    readonly options: LcowOptions,
    private readonly driverOptions: DriverOptions = {},
  ) {
    this.sandboxes = new SandboxCache(layout.cache);
    this.fsync = driverOptions.fsync ?? true;
  }

  get home(): string {
    return this.layout.home;
  }

  /** The registered name, as the seed's `String()`. */
  toString(): string {
    return "lcow";
  }

  // ---- creation -------------------------------------------------------------------------------

  async create(id: string, parent = "", options: CreateOptions = {}): Promise<void> {
    await this.createLayer(id, parent, options, false);
  }

  async createReadWrite(id: string, parent = "", options: CreateOptions = {}): Promise<void> {
    await this.createLayer(id, parent, options, true);
  }

  /**
   * Builds the whole layer folder under a temporary name in `home` (chain file, and for a
   * writable layer the sandbox copy), then renames it into place: the rename is the commit, so a
   * crash leaves either no layer or a complete one.
   */
  private async createLayer(id: string, parent: string, options: CreateOptions, writable: boolean): Promise<void> {
    validateId(id);
    if (parent) validateId(parent, "parent id");
    if (parent === id) throw new DriverError("INVALID_ARGUMENT", `layer ${id} cannot be its own parent`, { id });
    const sizeGB = writable ? (parseStorageOpt(options.storageOpt).sandboxSizeGB ?? this.options.sandboxSizeGB) : 0;
    if (!writable) parseStorageOpt(options.storageOpt); // validates: only lcow.sandboxsize is known
    const what = `${writable ? "createReadWrite" : "create"} ${id}`;
    const locks = [this.layout.lockFile(id), ...(parent ? [this.layout.lockFile(parent)] : [])];
    await withLocks(locks, async () => {
      if (await lstatMaybe(this.layout.dir(id))) throw new DriverError("ALREADY_EXISTS", `${what}: layer ${id} exists`, { id });
      let chain: string[] = [];
      if (parent) {
        if (!(await lstatMaybe(this.layout.dir(parent)))) throw new DriverError("NOT_FOUND", `${what}: parent layer ${parent} does not exist`, { id });
        chain = [this.layout.dir(parent), ...(await this.readChain(parent))];
      }
      const staging = join(this.home, `.${id}.${randomBytes(6).toString("hex")}.tmp`);
      try {
        await mkdir(staging, { mode: 0o700 });
        // A base layer has no chain file (DESIGN.md); the seed wrote `null`, which we read too.
        if (chain.length > 0) await writeAtomic(join(staging, CHAIN_FILE), JSON.stringify(chain), this.fsync);
        if (writable) await this.provisionSandbox(join(staging, SANDBOX_FILE), sizeGB);
        if (this.fsync) await fsyncDir(staging);
        await rename(staging, this.layout.dir(id));
        if (this.fsync) await fsyncDir(this.home);
      } catch (err) {
        await rm(staging, { recursive: true, force: true }).catch(() => {});
        throw toDriverError(err, what, id);
      }
    });
  }

  /**
   * Writes a blank sandbox of `sizeGB` GiB at `dest`: a copy (a reflink where possible) of the
   * cached blank in `cache/`, built on first use. The one place that knows how sandboxes are
   * made, so another source (a service VM) can be swapped in.
   */
  private async provisionSandbox(dest: string, sizeGB: number): Promise<void> {
    await this.sandboxes.copyTo("sandbox", sizeGB * GIB, dest);
  }

  // ---- removal --------------------------------------------------------------------------------

  /**
   * Removes a layer: releases its mount (all references: Docker's driver did `Put` first, and
   * overlay2 unmounts too), refuses with FAILED_PRECONDITION while other layers have it in their
   * chain, renames the folder to `<id>-removing` and deletes it. A missing layer is not an
   * error (the seed ignored it), so removing twice is fine. A crash mid-way leaves
   * `<id>-removing`, which `init` and `cleanup` delete.
   */
  async remove(id: string): Promise<void> {
    validateId(id);
    await withLock(this.layout.lockFile(id), async () => {
      try {
        const record = await this.readRecord(id);
        if (record) await this.release(id, record);
        const dir = this.layout.dir(id);
        if (!(await lstatMaybe(dir))) {
          await this.removeFolder(this.layout.removing(id));
          return;
        }
        const children = await this.childrenOf(id);
        if (children.length > 0) {
          throw new DriverError("FAILED_PRECONDITION", `remove ${id}: layer has children (${children.slice(0, 5).join(", ")}${children.length > 5 ? ", ..." : ""})`, { id });
        }
        await this.removeFolder(this.layout.removing(id)); // a leftover of an earlier attempt
        await rename(dir, this.layout.removing(id));
        if (this.fsync) await fsyncDir(this.home);
        await this.removeFolder(this.layout.removing(id));
      } catch (err) {
        throw toDriverError(err, `remove ${id}`, id);
      }
    });
  }

  private async removeFolder(path: string): Promise<void> {
    await removeTreeSameDevice(path);
  }

  /** Layers whose chain names `id` (scans every chain file; `-removing` folders excluded). */
  private async childrenOf(id: string): Promise<string[]> {
    const target = this.layout.dir(id);
    const out: string[] = [];
    for (const name of await listDir(this.home)) {
      if (name === id || !this.isLayerName(name)) continue;
      const chain = await this.readChain(name).catch((): string[] => []);
      if (chain.includes(target)) out.push(name);
    }
    return out;
  }

  private isLayerName(name: string): boolean {
    return !RESERVED_NAMES.has(name) && !name.startsWith(".") && !name.endsWith(REMOVING_SUFFIX);
  }

  // ---- queries --------------------------------------------------------------------------------

  async exists(id: string): Promise<boolean> {
    validateId(id);
    return (await lstatMaybe(this.layout.dir(id))) !== undefined;
  }

  async status(): Promise<Array<[string, string]>> {
    const layers = (await listDir(this.home)).filter((n) => this.isLayerName(n));
    const mounts = (await listDir(this.layout.mounts)).filter((n) => n.endsWith(".json") && !n.startsWith("."));
    return [
      ["LCOW", ""],
      ["Home", this.home],
      ["Mounter", this.options.mounter],
      ["Global mode", String(this.options.globalMode)],
      ["Sandbox size (GB)", String(this.options.sandboxSizeGB)],
      ["Exact diffs", String(this.reproducesExactDiffs)],
      ["Layers", String(layers.length)],
      ["Mounted", String(mounts.length)],
    ];
  }

  /** `dir` (as the seed), plus `type` (layer, sandbox or empty), `file` and `size` (bytes) of the image, and `parent`. */
  async getMetadata(id: string): Promise<Record<string, string>> {
    validateId(id);
    const dir = await this.requireLayer(id, "getMetadata");
    const kind = await layerKind(dir);
    const out: Record<string, string> = { dir, type: kind };
    if (kind !== "empty") {
      const file = join(dir, kind === "layer" ? LAYER_FILE : SANDBOX_FILE);
      out["file"] = file;
      out["size"] = String((await stat(file)).size);
    }
    const chain = await this.readChain(id);
    if (chain[0]) out["parent"] = basename(chain[0]);
    return out;
  }

  /** Every layer in the store, sorted by id (for `lcow layers ls`). */
  async layers(): Promise<LayerInfo[]> {
    const out: LayerInfo[] = [];
    for (const name of (await listDir(this.home)).sort()) {
      if (!this.isLayerName(name)) continue;
      const dir = this.layout.dir(name);
      const st = await lstatMaybe(dir);
      if (!st?.isDirectory()) continue;
      const kind = await layerKind(dir);
      const chain = (await this.readChain(name).catch(() => [])).map((d) => basename(d));
      const file = kind === "empty" ? undefined : join(dir, kind === "layer" ? LAYER_FILE : SANDBOX_FILE);
      const fileBytes = file ? ((await lstatMaybe(file))?.size ?? 0) : 0;
      const mounted = (await lstatMaybe(this.layout.mountRecord(name))) !== undefined;
      out.push({ id: name, kind, parent: chain[0], chain, fileBytes, mounted });
    }
    return out;
  }

  // ---- content --------------------------------------------------------------------------------

  /**
   * Converts the tar (a file path or a stream of chunks; plain, gzip or zstd) into the layer's
   * `layer.vhd` (OCI whiteouts become overlay whiteouts) and, when supported, `layer.tarsplit`.
   * Both are written in a staging folder inside the layer and renamed into place, layer.vhd
   * last: its presence is the commit. Returns the size of the content (what `diffSize` reports;
   * Docker's lcow driver returned the VHD file's size). The layer must exist and be empty
   * (NOT_FOUND, FAILED_PRECONDITION); `parent` must be "" or its parent (INVALID_ARGUMENT).
   * A bad tar is INVALID_ARGUMENT and leaves the layer empty.
   */
  async applyDiff(id: string, parent: string | undefined, tar: string | AsyncIterable<Uint8Array>): Promise<number> {
    validateId(id);
    return withLock(this.layout.lockFile(id), async () => {
      const dir = await this.requireLayer(id, "applyDiff");
      await this.checkParent(id, parent, "applyDiff");
      const kind = await layerKind(dir);
      if (kind !== "empty") throw new DriverError("FAILED_PRECONDITION", `applyDiff ${id}: layer already has content (${kind === "layer" ? LAYER_FILE : SANDBOX_FILE})`, { id });
      const staging = join(dir, `.apply.${randomBytes(6).toString("hex")}.tmp`);
      try {
        await mkdir(staging, { mode: 0o700 });
        const stagedVhd = join(staging, LAYER_FILE);
        const stagedSplit = join(staging, TARSPLIT_FILE);
        await convertTar(tar, stagedVhd, { fsync: this.fsync, ...tarsplitOptions(stagedSplit) });
        if (await lstatMaybe(stagedSplit)) await rename(stagedSplit, join(dir, TARSPLIT_FILE));
        await rename(stagedVhd, join(dir, LAYER_FILE));
        if (this.fsync) await fsyncDir(dir);
      } catch (err) {
        await rm(join(dir, TARSPLIT_FILE), { force: true }).catch(() => {});
        throw toDriverError(err, `applyDiff ${id}`, id);
      } finally {
        await rm(staging, { recursive: true, force: true }).catch(() => {});
      }
      try {
        return await computeContentSize(dir);
      } catch (err) {
        throw toDriverError(err, `applyDiff ${id}: reading back the layer`, id);
      }
    });
  }

  async diff(id: string, parent?: string): Promise<AsyncIterable<Uint8Array>> {
    validateId(id);
    const dir = await this.requireLayer(id, "diff");
    await this.checkParent(id, parent, "diff");
    try {
      return (await layerTar(dir)).stream;
    } catch (err) {
      throw toDriverError(err, `diff ${id}`, id);
    }
  }

  async changes(id: string, parent?: string): Promise<Change[]> {
    validateId(id);
    const dir = await this.requireLayer(id, "changes");
    await this.checkParent(id, parent, "changes");
    try {
      return await computeChanges(dir, await this.readChain(id));
    } catch (err) {
      throw toDriverError(err, `changes ${id}`, id);
    }
  }

  async diffSize(id: string, parent?: string): Promise<number> {
    validateId(id);
    const dir = await this.requireLayer(id, "diffSize");
    await this.checkParent(id, parent, "diffSize");
    try {
      return await computeContentSize(dir);
    } catch (err) {
      throw toDriverError(err, `diffSize ${id}`, id);
    }
  }

  // ---- mounts ---------------------------------------------------------------------------------

  async get(id: string, _mountLabel = ""): Promise<string> {
    validateId(id);
    return withLock(this.layout.lockFile(id), async () => {
      let record = await this.readRecord(id);
      if (record?.status === "mounted") {
        record.refs++;
        await this.writeRecord(id, record);
        return record.path;
      }
      // Under the lock, a record that is not "mounted" was left by a crashed process.
      if (record) await this.release(id, record);
      const dir = await this.requireLayer(id, "get");
      const chain = await this.readChain(id);
      const name = this.options.mounter;
      const mounter = await this.mounter(name);
      record = { status: "mounting", refs: 0, path: "", state: {}, mounter: name, pid: SELF.pid, start: SELF.start, bootId: BOOT_ID };
      const workDir = this.layout.mountWork(id);
      try {
        await this.writeRecord(id, record);
        await mkdir(workDir, { recursive: true, mode: 0o700 });
        const { path, state } = await mounter.mount({ id, layerDir: dir, chain, workDir });
        await this.writeRecord(id, { ...record, status: "mounted", refs: 1, path, state });
        return path;
      } catch (err) {
        await mounter.unmount(id, {}).catch(() => {});
        await removeTreeSameDevice(workDir).catch(() => {});
        await rm(this.layout.mountRecord(id), { force: true }).catch(() => {});
        throw toDriverError(err, `get ${id}: mounter ${name}`, id);
      }
    });
  }

  async put(id: string): Promise<void> {
    validateId(id);
    await withLock(this.layout.lockFile(id), async () => {
      const record = await this.readRecord(id);
      if (!record || record.status !== "mounted") {
        if (record) await this.release(id, record);
        await this.requireLayer(id, "put");
        throw new DriverError("FAILED_PRECONDITION", `put ${id}: layer is not mounted (a put without a matching get)`, { id });
      }
      if (record.refs > 1) {
        record.refs--;
        record.pid = SELF.pid;
        record.start = SELF.start;
        await this.writeRecord(id, record);
        return;
      }
      await this.release(id, record);
    });
  }

  /** Undoes a mount whatever its references (caller holds the id's lock) and deletes its record and work folder. */
  private async release(id: string, record: MountRecord): Promise<void> {
    try {
      await this.writeRecord(id, { ...record, status: "unmounting", pid: SELF.pid, start: SELF.start });
      const mounter = await this.mounter(record.mounter);
      await mounter.unmount(id, record.state ?? {});
      await removeTreeSameDevice(this.layout.mountWork(id));
      await rm(this.layout.mountRecord(id), { force: true });
    } catch (err) {
      throw toDriverError(err, `unmounting ${id} (mounter ${record.mounter})`, id);
    }
  }

  private mounter(name: MounterName): Promise<Mounter> {
    let m = this.mounters.get(name);
    if (!m) {
      m = createMounter(name, { home: this.home, options: this.options }, this.driverOptions.mounters);
      m.catch(() => this.mounters.delete(name));
      this.mounters.set(name, m);
    }
    return m;
  }

  private async readRecord(id: string): Promise<MountRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.layout.mountRecord(id), "utf8");
    } catch (err) {
      if (isErrno(err, "ENOENT")) return undefined;
      throw toDriverError(err, `reading the mount record of ${id}`, id);
    }
    try {
      const r = JSON.parse(text) as MountRecord;
      if (typeof r !== "object" || r === null || typeof r.refs !== "number" || typeof r.mounter !== "string") throw new Error("not a mount record");
      return r;
    } catch (err) {
      throw new DriverError("DATA_LOSS", `mount record ${this.layout.mountRecord(id)} is damaged: ${(err as Error).message}`, { id, cause: err });
    }
  }

  private async writeRecord(id: string, record: MountRecord): Promise<void> {
    await writeAtomic(this.layout.mountRecord(id), JSON.stringify(record, null, 2) + "\n", false);
  }

  // ---- store-wide -----------------------------------------------------------------------------

  /**
   * Releases every mount (all references, whichever process made them), then deletes
   * `-removing` folders, as the seed's Cleanup did at daemon shutdown. The store stays usable;
   * calling it again is fine. Failures to release are collected and thrown together
   * (FAILED_PRECONDITION) after trying every mount.
   */
  async cleanup(): Promise<void> {
    const errors: unknown[] = [];
    for (const name of await listDir(this.layout.mounts)) {
      if (!name.endsWith(".json") || name.startsWith(".")) continue;
      const id = name.slice(0, -".json".length);
      await withLock(this.layout.lockFile(id), async () => {
        const record = await this.readRecord(id).catch(() => undefined);
        if (record) await this.release(id, record);
        else await rm(this.layout.mountRecord(id), { force: true });
      }).catch((err: unknown) => errors.push(err));
    }
    await this.sweepRemoving().catch((err: unknown) => errors.push(err));
    // Mounters let go of what they hold between mounts (the uvm mounter's service VMs).
    for (const pending of this.mounters.values()) {
      const mounter = await pending.catch(() => undefined);
      await mounter?.close?.().catch((err: unknown) => errors.push(err));
    }
    if (errors.length > 0) {
      throw new DriverError("FAILED_PRECONDITION", `cleanup: ${errors.length} problem(s): ${errors.map((e) => (e as Error).message).join("; ")}`, { cause: errors[0] });
    }
  }

  private async sweepRemoving(): Promise<void> {
    for (const name of await listDir(this.home)) {
      if (!name.endsWith(REMOVING_SUFFIX)) continue;
      const id = name.slice(0, -REMOVING_SUFFIX.length);
      await withLock(this.layout.lockFile(id), () => removeTreeSameDevice(join(this.home, name)));
    }
  }

  /**
   * What `init` repairs (see there). Each layer is repaired under its lock, and skipped when a
   * live process holds it.
   */
  async repair(): Promise<void> {
    const idle = async (id: string) => !(await lockHeldElsewhere(this.layout.lockFile(id)));
    // Stale lock files first, so that the sweeps below do not wait for dead owners.
    for (const name of await listDir(this.layout.locks)) {
      const path = join(this.layout.locks, name);
      if (name.endsWith(".stale") || isTempName(name)) await rm(path, { force: true });
      else if (name.endsWith(".lock")) {
        const text = await readFile(path, "utf8").catch(() => undefined);
        if (text === undefined) continue;
        const [pid, start] = text.trim().split(" ");
        if (!ownerAlive(Number(pid), start || undefined)) await rm(path, { force: true });
      }
    }
    for (const name of await listDir(this.home)) {
      const path = join(this.home, name);
      if (name.endsWith(REMOVING_SUFFIX)) {
        const id = name.slice(0, -REMOVING_SUFFIX.length);
        if (await idle(id)) await withLock(this.layout.lockFile(id), () => removeTreeSameDevice(path));
      } else if (isTempName(name)) {
        // `.<id>.<hex>.tmp`: a layer folder being created.
        const id = name.slice(1, -".tmp".length).replace(/\.[0-9a-f]{12}$/, "");
        if (id && (await idle(id))) await withLock(this.layout.lockFile(id), () => rm(path, { recursive: true, force: true }));
      } else if (this.isLayerName(name) && (await lstatMaybe(path))?.isDirectory()) {
        if (!(await idle(name))) continue;
        await withLock(this.layout.lockFile(name), async () => {
          for (const entry of await listDir(path)) {
            if (isTempName(entry)) await rm(join(path, entry), { recursive: true, force: true });
          }
          // layer.tarsplit without layer.vhd: an apply that did not commit.
          if ((await lstatMaybe(join(path, TARSPLIT_FILE))) && !(await lstatMaybe(join(path, LAYER_FILE)))) await rm(join(path, TARSPLIT_FILE), { force: true });
        });
      }
    }
    // Interrupted mounts, mounts of an earlier boot, orphaned work folders and record temporaries.
    for (const name of await listDir(this.layout.mounts)) {
      const path = join(this.layout.mounts, name);
      if (isTempName(name)) {
        const id = name.slice(1).replace(/\.json\.[0-9a-f]{12}\.tmp$/, "");
        if (await idle(id)) await withLock(this.layout.lockFile(id), () => rm(path, { force: true }));
        continue;
      }
      const id = name.endsWith(".json") ? name.slice(0, -".json".length) : name;
      if (!(await idle(id))) continue;
      await withLock(this.layout.lockFile(id), async () => {
        const record = await this.readRecord(id).catch(() => undefined);
        if (name.endsWith(".json")) {
          if (!record) await rm(path, { force: true });
          else if (record.status !== "mounted" || (record.bootId !== undefined && record.bootId !== BOOT_ID)) await this.release(id, record);
        } else if (!record) {
          await removeTreeSameDevice(path);
        }
      });
    }
    // The seed deleted every scratch disk at start; we spare one whose service VM holds `locks/scratch-<name>.lock`.
    for (const name of await listDir(this.layout.scratch)) {
      if (!name.endsWith(".vhdx") && !isTempName(name)) continue;
      if (await lockHeldElsewhere(join(this.layout.locks, `scratch-${name.replace(/\.vhdx$/, "")}.lock`))) continue;
      await rm(join(this.layout.scratch, name), { force: true });
    }
    // The sandbox cache's own temporaries, when no live process is building a blank.
    const cacheNames = await listDir(this.layout.cache);
    const building = cacheNames.filter((n) => n.endsWith(".lock"));
    let busy = false;
    for (const lock of building) {
      const text = await readFile(join(this.layout.cache, lock), "utf8").catch(() => "");
      const pid = Number(text.trim().split(" ")[0]);
      if (pid !== SELF.pid && ownerAlive(pid, undefined)) busy = true;
      else await rm(join(this.layout.cache, lock), { force: true });
    }
    if (!busy) for (const name of cacheNames) if (isTempName(name)) await rm(join(this.layout.cache, name), { force: true });
  }

  // ---- helpers --------------------------------------------------------------------------------

  /** The layer's folder, or NOT_FOUND. */
  private async requireLayer(id: string, op: string): Promise<string> {
    const dir = this.layout.dir(id);
    const st = await lstatMaybe(dir);
    if (!st?.isDirectory()) throw new DriverError("NOT_FOUND", `${op} ${id}: layer does not exist`, { id });
    return dir;
  }

  /** Docker passes the layer's parent (or "" for a base layer); diffs against any other layer are not supported. */
  private async checkParent(id: string, parent: string | undefined, op: string): Promise<void> {
    if (!parent) return;
    validateId(parent, "parent id");
    const chain = await this.readChain(id);
    if (chain[0] !== this.layout.dir(parent)) {
      throw new DriverError("INVALID_ARGUMENT", `${op} ${id}: ${parent} is not its parent (${chain[0] ? basename(chain[0]) : "it is a base layer"})`, { id });
    }
  }

  /** The layer's ancestor folders, nearest first ([] for a base layer; the seed's `null` too). */
  async readChain(id: string): Promise<string[]> {
    let text: string;
    try {
      text = await readFile(this.layout.chainFile(id), "utf8");
    } catch (err) {
      if (isErrno(err, "ENOENT")) return [];
      throw toDriverError(err, `reading the chain of ${id}`, id);
    }
    let chain: unknown;
    try {
      chain = JSON.parse(text);
    } catch (err) {
      throw new DriverError("DATA_LOSS", `${this.layout.chainFile(id)}: not JSON: ${(err as Error).message}`, { id, cause: err });
    }
    if (chain === null) return [];
    if (!Array.isArray(chain) || !chain.every((d) => typeof d === "string")) throw new DriverError("DATA_LOSS", `${this.layout.chainFile(id)}: not an array of folders`, { id });
    return chain as string[];
  }
}

