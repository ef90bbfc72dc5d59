import { randomBytes } from "node:crypto";
import { lstat, open, readdir, rename, rm, rmdir, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { DriverError, isErrno } from "./errors.js";

/** A temporary name next to `path`: `.<name>.<random>.tmp` (swept at `init`). */
export function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
}

/** Flushes a folder's entries (renames into it) to stable storage; a no-op where folders cannot be opened (Windows). */
export async function fsyncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, "r");
    await fh.sync();
  } catch {
    // Windows cannot fsync a directory handle; NTFS journals the rename itself.
  } finally {
    await fh?.close();
  }
}

/** Writes `data` to `path` through a temporary file and a rename, so readers see the old or the new content, never a part. */
export async function writeAtomic(path: string, data: string | Uint8Array, fsync: boolean): Promise<void> {
  const tmp = tempName(path);
  try {
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(data);
      if (fsync) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
  if (fsync) await fsyncDir(dirname(path));
}

/** `writeFile` that fails with EEXIST rather than replacing. */
export const writeNew = (path: string, data: string): Promise<void> => writeFile(path, data, { flag: "wx", mode: 0o600 });

/**
 * Removes a tree without ever crossing into another filesystem: an entry on a different device
 * than `dir` itself is a mount point left behind, and deleting through it would delete the
 * contents of a mounted layer. Such a tree is FAILED_PRECONDITION and left in place. A missing
 * `dir` is fine.
 */
export async function removeTreeSameDevice(dir: string): Promise<void> {
  let top;
  try {
    top = await lstat(dir);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return;
    throw err;
  }
  const walk = async (path: string, isDir: boolean): Promise<void> => {
    if (!isDir) {
      await unlink(path).catch((err) => {
        if (!isErrno(err, "ENOENT")) throw err;
      });
      return;
    }
    const st = await lstat(path).catch(() => undefined);
    if (!st) return;
    if (st.dev !== top.dev) throw new DriverError("FAILED_PRECONDITION", `${path} is still a mount point; not removing through it`);
    for (const entry of await readdir(path, { withFileTypes: true }).catch(() => [])) {
      await walk(join(path, entry.name), entry.isDirectory());
    }
    await rmdir(path).catch((err) => {
      if (!isErrno(err, "ENOENT")) throw err;
    });
  };
  await walk(dir, top.isDirectory());
}

/** `readdir` that treats a missing folder as empty. */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (isErrno(err, "ENOENT", "ENOTDIR")) return [];
    throw err;
  }
}

/** `lstat` that returns undefined for a missing path. */
export async function lstatMaybe(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if (isErrno(err, "ENOENT", "ENOTDIR")) return undefined;
    throw err;
  }
}
