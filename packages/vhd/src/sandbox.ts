// Blank sandboxes: the dynamic VHDX holding an empty ext4 filesystem that becomes a container's
// writable layer (`<id>/sandbox.vhdx`) or a service VM's scratch disk, and the cache the driver
// copies them from (`cache/sandbox.vhdx`, `cache/scratch.vhdx`). The seed made these by running
// mkfs.ext4 inside a utility VM; we write them directly (a 20 GiB one in tens of milliseconds).
import { randomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { copyFile, link, mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { writeBlankExt4 } from "./blank.js";
import { VhdError } from "./errors.js";
import { MAX_BLOCKS } from "./ext4/layout.js";
import { createVhdx, openVhdxSource } from "./vhdx/index.js";

/**
 * Default sandbox size: 20 GiB. Docker's `lcow.sandboxsize` is in "GB" with a default and
 * minimum of 20, and go-winio's `CreateVhdx(path, maxSizeInGb, 1)` multiplies by 1024^3, so the
 * disks Docker made were 21474836480 bytes.
 */
export const DEFAULT_SANDBOX_SIZE = 20 * 2 ** 30;
/** Smallest sandbox we make: 1 MiB (the smallest blank ext4 filesystem we write). */
export const MIN_SANDBOX_SIZE = 2 ** 20;
/** Largest sandbox we make: ext4 without the 64bit feature addresses 2^32 - 1 blocks of 4 KiB (just under 16 TiB). */
export const MAX_SANDBOX_SIZE = MAX_BLOCKS * 4096;
/** The VHDX logical sector size we write; a sandbox's size must be a multiple of it. */
const SECTOR_SIZE = 512;

/** What the cache holds: a container's writable layer, or a service VM's scratch disk. */
export type SandboxKind = "sandbox" | "scratch";

/**
 * The root directories of each kind's filesystem. A writable layer's root holds the overlay's
 * `upper/` and `work/` (the layer store's layout: `diff` reads `upper/`); a scratch disk is bare.
 */
export const SANDBOX_DIRECTORIES: Readonly<Record<SandboxKind, readonly string[]>> = { sandbox: ["upper", "work"], scratch: [] };

export interface CreateSandboxOptions {
  /** Virtual disk size in bytes: a multiple of 512 from 1 MiB to just under 16 TiB. If not provided, 20 GiB (`DEFAULT_SANDBOX_SIZE`). */
  size?: number;
  /** VHDX payload block size, a power of two from 1 MiB to 256 MiB. If not provided, 1 MiB (as Docker's driver). */
  blockSize?: number;
  /** Directories to create in the filesystem's root. If not provided, `upper` and `work` (`SANDBOX_DIRECTORIES.sandbox`). */
  directories?: readonly string[];
  /** Filesystem UUID, as 32 hex digits with or without dashes. If not provided, random. */
  uuid?: string;
  /** Superblock and directory time, in seconds since 1970. If not provided, now. */
  timestamp?: number;
  /** Seed for the VHDX GUIDs (see `CreateVhdxOptions.seed`); with `uuid` and `timestamp` too, the file is byte-identical run to run. If not provided, random GUIDs. */
  seed?: string;
  /** Flush the file to stable storage before renaming it into place. If not provided, false. */
  fsync?: boolean;
}

/** What `createSandbox` wrote. */
export interface SandboxSummary {
  /** The file written. */
  path: string;
  /** Virtual disk size in bytes. */
  virtualSize: number;
  /** Size of the ext4 filesystem (the virtual size rounded down to 4 KiB). */
  ext4Bytes: number;
  /** VHDX payload block size. */
  blockSize: number;
  /** Payload blocks allocated in the file. */
  allocatedBlocks: number;
  /** The file's length (its apparent size; unwritten parts of blocks are holes). */
  fileBytes: number;
  /** Bytes the file occupies on disk (`st_blocks * 512`). */
  diskBytes: number;
}

/** Checks a sandbox size; throws INVALID_ARGUMENT naming `what` and the rule broken. */
function checkSize(size: number, what: string): void {
  const bad = (why: string): never => {
    throw new VhdError("INVALID_ARGUMENT", `${what} ${size}: ${why}`);
  };
  if (!Number.isSafeInteger(size) || size <= 0) bad("must be a positive whole number of bytes");
  if (size % SECTOR_SIZE !== 0) bad(`must be a multiple of the ${SECTOR_SIZE}-byte sector size`);
  if (size < MIN_SANDBOX_SIZE) bad(`must be at least ${MIN_SANDBOX_SIZE} bytes (1 MiB)`);
  if (size > MAX_SANDBOX_SIZE) bad(`must be at most ${MAX_SANDBOX_SIZE} bytes (ext4 without 64bit addresses 2^32 - 1 blocks of 4 KiB)`);
}

function parseUuid(text: string): Uint8Array {
  const hex = text.replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new VhdError("INVALID_ARGUMENT", `uuid ${JSON.stringify(text)} is not 32 hex digits`);
  return new Uint8Array(Buffer.from(hex, "hex"));
}

/** A temporary name next to `path`, hidden, unique per call: `.<name>.<random>.tmp`. */
function tempNameFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
}

/** True for an errno-carrying Node error with one of `codes`. */
function isErrno(err: unknown, ...codes: string[]): boolean {
  return err instanceof Error && codes.includes((err as NodeJS.ErrnoException).code ?? "");
}

/** Wraps a foreign OS error as IO, naming the file; VhdErrors pass through. */
function ioError(err: unknown, what: string, path: string): VhdError {
  if (err instanceof VhdError) return err;
  return new VhdError("IO", `${what} ${path}: ${(err as Error).message}`, { path, cause: err });
}

/**
 * Writes the sandbox to `path` itself (no rename); removes it if anything fails. Returns the
 * summary without the on-disk sizes.
 */
async function writeSandboxFile(path: string, options: CreateSandboxOptions): Promise<Omit<SandboxSummary, "path" | "fileBytes" | "diskBytes">> {
  const size = options.size ?? DEFAULT_SANDBOX_SIZE;
  checkSize(size, "sandbox size");
  const uuid = options.uuid === undefined ? undefined : parseUuid(options.uuid);
  const sink = await createVhdx(path, { virtualSize: size, blockSize: options.blockSize, seed: options.seed, fsync: options.fsync });
  try {
    const ext4Bytes = await writeBlankExt4(sink, { size, uuid, timestamp: options.timestamp, directories: [...(options.directories ?? SANDBOX_DIRECTORIES.sandbox)] });
    await sink.close();
    return { virtualSize: size, ext4Bytes, blockSize: sink.geometry.blockSize, allocatedBlocks: sink.allocatedBlocks };
  } catch (err) {
    await sink.close().catch(() => {});
    await rm(path, { force: true }).catch(() => {});
    throw ioError(err, "writing sandbox", path);
  }
}

async function sizesOnDisk(path: string): Promise<{ fileBytes: number; diskBytes: number }> {
  const st = await stat(path);
  return { fileBytes: st.size, diskBytes: st.blocks * 512 };
}

/**
 * Creates `path` as a dynamic VHDX (1 MiB blocks unless `blockSize` says otherwise) holding a
 * blank ext4 filesystem that fills the disk, with `upper/` and `work/` in its root unless
 * `directories` says otherwise. The filesystem has no journal and leaves unused inode tables
 * unwritten, so a 20 GiB sandbox is a few MiB on disk; Linux mounts it read-write and
 * `e2fsck -fn` finds it clean. Written under a temporary name in the same folder and renamed
 * into place (replacing an existing file), so a failure leaves neither. Bad sizes and options
 * are INVALID_ARGUMENT; OS failures IO.
 */
export async function createSandbox(path: string, options: CreateSandboxOptions = {}): Promise<SandboxSummary> {
  checkSize(options.size ?? DEFAULT_SANDBOX_SIZE, "sandbox size");
  const tmp = tempNameFor(path);
  const written = await writeSandboxFile(tmp, options);
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw ioError(err, "cannot create", path);
  }
  return { path, ...written, ...(await sizesOnDisk(path)) };
}

/** How `SandboxCache.copyTo` copied: a reflink (shared extents, copy-on-write) or a byte copy. */
export type CopyMethod = "reflink" | "copy";

export interface SandboxCacheOptions {
  /** VHDX payload block size of the blanks the cache builds. If not provided, 1 MiB. */
  blockSize?: number;
  /**
   * A build lock older than this (milliseconds) is taken to be left by a crashed process and is
   * removed. If not provided, 30 000 (building a blank takes well under a second).
   */
  staleLockMs?: number;
  /** Called each time this cache object builds a blank (not when it finds one); for logs and tests. */
  onBuild?: (kind: SandboxKind, size: number, path: string) => void;
}

/** What `SandboxCache.copyTo` did. */
export interface SandboxCopy {
  /** The destination written. */
  path: string;
  /** The cached blank it was copied from. */
  source: string;
  /** "reflink" when the filesystem shared the blank's extents (Btrfs, XFS, ReFS via copy-on-write), else "copy". */
  method: CopyMethod;
  /** True when this call had to build the cached blank first. */
  built: boolean;
}

const LOCK_POLL_MS = 10;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The blank sandbox/scratch cache of a layer store (`<home>/cache`): one blank VHDX per kind
 * and size, built on first use and then copied per writable layer or service VM.
 *
 * Files: `sandbox.vhdx` and `scratch.vhdx` for the default 20 GiB, `sandbox-<bytes>.vhdx` and
 * `scratch-<bytes>.vhdx` for other sizes.
 *
 * Concurrency: within a process, concurrent first uses of a key share one build. Across
 * processes, a lock file (`.<name>.lock`, created with O_EXCL, holding the owner's pid) lets one
 * process build while the others wait for the blank to appear. Correctness does not rest on the
 * lock: a blank is written under a temporary name and published with `link()` (which fails if
 * the name exists), so no reader ever sees a half-written file and the first published blank
 * wins. The lock only avoids duplicate work; it is removed in a `finally`, and a lock left by a
 * crashed process is removed once older than `staleLockMs`, at the cost of at most one extra
 * build.
 *
 * A blank found on disk that this object has not yet seen is opened once and checked (a valid
 * VHDX of the expected size); a bad one (an old or foreign file) is rebuilt and replaced.
 */
export class SandboxCache {
  private readonly inflight = new Map<string, Promise<{ path: string; built: boolean }>>();
  private readonly verified = new Set<string>();
  private readonly blockSize: number | undefined;
  private readonly staleLockMs: number;
  private readonly onBuild: SandboxCacheOptions["onBuild"];

  /** A cache in `dir` (created on first use). */
  constructor(
    readonly dir: string,
    options: SandboxCacheOptions = {},
  ) {
    this.blockSize = options.blockSize;
    this.staleLockMs = options.staleLockMs ?? 30_000;
    this.onBuild = options.onBuild;
  }

  /** The file name of a kind and size: `sandbox.vhdx` for the default size, `sandbox-<bytes>.vhdx` otherwise. */
  static fileName(kind: SandboxKind, size: number = DEFAULT_SANDBOX_SIZE): string {
    if (kind !== "sandbox" && kind !== "scratch") throw new VhdError("INVALID_ARGUMENT", `cache kind ${JSON.stringify(kind)}: expected "sandbox" or "scratch"`);
    return size === DEFAULT_SANDBOX_SIZE ? `${kind}.vhdx` : `${kind}-${size}.vhdx`;
  }

  /** Where the blank of `kind` and `size` lives (whether or not it exists yet). */
  pathOf(kind: SandboxKind, size: number = DEFAULT_SANDBOX_SIZE): string {
    return join(this.dir, SandboxCache.fileName(kind, size));
  }

  /**
   * The path of the cached blank of `kind` and `size` (default 20 GiB), building it first if
   * it does not exist. Never returns a path to a partly written file. Bad sizes are
   * INVALID_ARGUMENT (see `createSandbox`); OS failures IO.
   */
  async get(kind: SandboxKind, size: number = DEFAULT_SANDBOX_SIZE): Promise<string> {
    return (await this.ensure(kind, size)).path;
  }

  /** As `get`, and says whether this call built the blank (all callers sharing one build see `built: true`). */
  ensure(kind: SandboxKind, size: number = DEFAULT_SANDBOX_SIZE): Promise<{ path: string; built: boolean }> {
    let path: string;
    try {
      path = this.pathOf(kind, size);
      checkSize(size, `${kind} size`);
    } catch (err) {
      return Promise.reject(err);
    }
    const pending = this.inflight.get(path);
    if (pending) return pending;
    const p = this.ensureOnce(kind, size, path).finally(() => this.inflight.delete(path));
    this.inflight.set(path, p);
    return p;
  }

  /**
   * Copies the cached blank of `kind` and `size` to `dest` (building it first if needed), as a
   * reflink where the filesystem supports one (`COPYFILE_FICLONE_FORCE`), else as a byte copy.
   * The copy is written under a temporary name next to `dest` and renamed into place, replacing
   * an existing file. Each copy is an independent file: writing to it never changes the cache.
   *
   * Copies share the blank's filesystem UUID and VHDX Virtual Disk ID, as the seed's copies did.
   */
  async copyTo(kind: SandboxKind, size: number, dest: string): Promise<SandboxCopy> {
    for (let attempt = 0; ; attempt++) {
      const { path: source, built } = await this.ensure(kind, size);
      const tmp = tempNameFor(dest);
      try {
        const method = await cloneOrCopy(source, tmp);
        await rename(tmp, dest);
        return { path: dest, source, method, built };
      } catch (err) {
        await rm(tmp, { force: true }).catch(() => {});
        // The blank was removed under us (a cache purge): build it again, once.
        if (attempt === 0 && isErrno(err, "ENOENT") && !(await exists(source))) {
          this.verified.delete(source);
          continue;
        }
        throw ioError(err, "cannot copy the cached blank to", dest);
      }
    }
  }

  private async ensureOnce(kind: SandboxKind, size: number, path: string): Promise<{ path: string; built: boolean }> {
    try {
      await mkdir(this.dir, { recursive: true });
    } catch (err) {
      throw ioError(err, "cannot create the cache folder", this.dir);
    }
    let replace = false;
    if (await exists(path)) {
      if (this.verified.has(path) || (await isBlank(path, size))) {
        this.verified.add(path);
        return { path, built: false };
      }
      replace = true;
    }
    const lock = join(this.dir, `.${basename(path)}.lock`);
    const token = `${process.pid} ${randomBytes(8).toString("hex")}\n`;
    // Take the lock, or wait for whoever holds it to publish the blank.
    for (;;) {
      try {
        const fh = await open(lock, "wx");
        try {
          await fh.writeFile(token);
        } finally {
          await fh.close();
        }
        break;
      } catch (err) {
        if (!isErrno(err, "EEXIST")) throw ioError(err, "cannot create the cache lock", lock);
      }
      if (!replace && (await exists(path))) {
        this.verified.add(path);
        return { path, built: false };
      }
      const st = await stat(lock).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > this.staleLockMs) await rm(lock, { force: true });
      else await sleep(LOCK_POLL_MS);
    }
    try {
      // Someone may have published (or replaced a bad blank) between our first look and taking the lock.
      if ((await exists(path)) && (!replace || (await isBlank(path, size)))) {
        this.verified.add(path);
        return { path, built: false };
      }
      const tmp = tempNameFor(path);
      await writeSandboxFile(tmp, { size, blockSize: this.blockSize, directories: SANDBOX_DIRECTORIES[kind] });
      try {
        await publish(tmp, path, replace);
      } finally {
        await rm(tmp, { force: true }).catch(() => {});
      }
      this.verified.add(path);
      this.onBuild?.(kind, size, path);
      return { path, built: true };
    } finally {
      // Remove the lock only if it is still ours (a stale-lock sweep may have handed it on).
      const held = await readFile(lock, "utf8").catch(() => undefined);
      if (held === token) await rm(lock, { force: true }).catch(() => {});
    }
  }
}

/**
 * Makes the complete file `tmp` visible as `path`. `link()` fails if `path` exists, so a blank
 * published meanwhile by another process stays (both are equally blank). `replace` swaps out a
 * bad file with `rename()`; so does a filesystem without hard links.
 */
async function publish(tmp: string, path: string, replace: boolean): Promise<void> {
  try {
    if (replace) await rename(tmp, path);
    else await link(tmp, path);
  } catch (err) {
    if (isErrno(err, "EEXIST")) return;
    if (isErrno(err, "EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS")) {
      try {
        await rename(tmp, path);
        return;
      } catch (err2) {
        throw ioError(err2, "cannot publish the cached blank", path);
      }
    }
    throw ioError(err, "cannot publish the cached blank", path);
  }
}

/** Copies `src` to `dest` (a new file): a reflink if the filesystem can, else a byte copy. */
async function cloneOrCopy(src: string, dest: string): Promise<CopyMethod> {
  try {
    await copyFile(src, dest, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE_FORCE);
    return "reflink";
  } catch (err) {
    // No reflinks here (ext4, tmpfs, NTFS, across filesystems): ENOTSUP/EOPNOTSUPP/EXDEV/EINVAL/ENOSYS.
    if (isErrno(err, "ENOENT", "EEXIST", "EACCES", "ENOSPC", "EROFS", "EISDIR")) throw err;
    await rm(dest, { force: true });
  }
  await copyFile(src, dest, fsConstants.COPYFILE_EXCL);
  return "copy";
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** True when `path` opens as a VHDX of virtual size `size`. */
async function isBlank(path: string, size: number): Promise<boolean> {
  try {
    const { source } = await openVhdxSource(path);
    await source.close();
    return source.size === size;
  } catch {
    return false;
  }
}
