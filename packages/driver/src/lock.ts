// Per-id locks: an async mutex per (store, id) inside the process, then a lock file created
// with O_EXCL so that other processes sharing the store (the CLI next to the plugin) wait too.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { isErrno, toDriverError } from "./errors.js";

const POLL_MS = 5;
const POLL_MAX_MS = 50;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The tail of each in-process queue, keyed by absolute lock path (module-wide, so two Driver objects on one store exclude each other). */
const queues = new Map<string, Promise<void>>();

/** Start time of a process in clock ticks since boot (Linux), so a recycled pid is not taken for the lock's owner. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** Our identity in lock files and mount records: pid and start time. */
export const SELF = { pid: process.pid, start: startTime(process.pid) ?? "" };

/** True when the process that wrote `owner` (`pid start`) still runs. */
export function ownerAlive(pid: number, start: string | undefined): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (isErrno(err, "ESRCH")) return false;
    // EPERM: it exists, owned by someone else.
  }
  if (start) {
    const now = startTime(pid);
    if (now !== undefined && now !== start) return false;
  }
  return true;
}

/** Parses a lock file's `pid start token` line. */
function parseOwner(text: string): { pid: number; start: string | undefined } {
  const [pid, start] = text.trim().split(" ");
  return { pid: Number(pid), start: start || undefined };
}

/** True when the lock file at `path` is held by a live process other than this one. */
export async function lockHeldElsewhere(path: string): Promise<boolean> {
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (text === undefined) return false;
  const owner = parseOwner(text);
  return owner.pid !== SELF.pid && ownerAlive(owner.pid, owner.start);
}

/**
 * Takes the lock file `path` (creating its folder), waiting while a live process holds it.
 * A lock whose owner is dead (killed with SIGKILL), or is this process without holding it
 * in-process (impossible unless leaked), is broken: renamed aside and checked, so that two
 * waiters breaking the same stale lock cannot both win. Returns the release function.
 */
async function takeFileLock(path: string): Promise<() => Promise<void>> {
  const token = `${SELF.pid} ${SELF.start} ${randomBytes(6).toString("hex")}\n`;
  let wait = POLL_MS;
  for (;;) {
    try {
      await writeFile(path, token, { flag: "wx", mode: 0o600 });
      return async () => {
        // Remove only our own lock (a bug elsewhere must not release someone else's).
        const text = await readFile(path, "utf8").catch(() => undefined);
        if (text === token) await rm(path, { force: true });
      };
    } catch (err) {
      if (isErrno(err, "ENOENT")) {
        await mkdir(dirname(path), { recursive: true });
        continue;
      }
      if (!isErrno(err, "EEXIST")) throw err;
    }
    const text = await readFile(path, "utf8").catch(() => undefined);
    if (text === undefined) continue;
    const owner = parseOwner(text);
    // Our own pid: this process holds the in-process mutex for this path, so the file is a leak.
    if (owner.pid === SELF.pid || !ownerAlive(owner.pid, owner.start)) {
      const aside = `${path}.${randomBytes(6).toString("hex")}.stale`;
      try {
        await rename(path, aside);
      } catch (err) {
        if (isErrno(err, "ENOENT")) continue; // someone else broke it first
        throw err;
      }
      const moved = await readFile(aside, "utf8").catch(() => "");
      await rm(aside, { force: true });
      // If the file changed between our read and the rename we moved a fresh lock of a live
      // waiter that had just broken the stale one; it still believes it holds the lock, so
      // put it back where it was (the exclusive create fails only if yet another lock appeared meanwhile).
      if (moved !== text && moved !== "") await writeFile(path, moved, { flag: "wx" }).catch(() => {});
      continue;
    }
    await sleep(wait);
    wait = Math.min(POLL_MAX_MS, wait * 2);
  }
}

/**
 * Runs `fn` holding the lock `path`: first the in-process queue (FIFO), then the lock file.
 * Calls on different paths run in parallel.
 */
export async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const previous = queues.get(path) ?? Promise.resolve();
  let done!: () => void;
  const mine = new Promise<void>((r) => (done = r));
  const tail = previous.then(() => mine);
  queues.set(path, tail);
  await previous;
  try {
    let release: () => Promise<void>;
    try {
      release = await takeFileLock(path);
    } catch (err) {
      throw toDriverError(err, `cannot take the lock ${path}`);
    }
    try {
      return await fn();
    } finally {
      await release().catch(() => {});
    }
  } finally {
    done();
    if (queues.get(path) === tail) queues.delete(path);
  }
}

/** Runs `fn` holding several locks, taken in sorted order so that two callers cannot deadlock. */
export async function withLocks<T>(paths: string[], fn: () => Promise<T>): Promise<T> {
  const sorted = [...new Set(paths)].sort();
  const run = (i: number): Promise<T> => (i === sorted.length ? fn() : withLock(sorted[i]!, () => run(i + 1)));
  return run(0);
}
