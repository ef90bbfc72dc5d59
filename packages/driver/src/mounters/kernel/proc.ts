// What the kernel says is there right now. Unmounting after a crash cannot trust the recorded
// state alone (a loop device may have been freed and reused, a pid recycled), so every undo
// step first asks /proc and sysfs whether the thing it is about to release is still ours.
import { readdir, readFile } from "node:fs/promises";

/** Decodes the octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash) of /proc mount tables. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** One line of /proc/self/mountinfo, the fields we use. */
export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
}

/** The current mount table of this process's mount namespace, or of process `pid`'s. */
export async function readMounts(pid?: number): Promise<MountEntry[]> {
  const text = await readFile(`/proc/${pid ?? "self"}/mountinfo`, "utf8");
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    // "id parent maj:min root mountpoint options [optional...] - fstype source superoptions"
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    const mountPoint = fields[4];
    if (mountPoint === undefined || dash < 0) continue;
    out.push({ mountPoint: unescapeMountField(mountPoint), fsType: fields[dash + 1] ?? "", source: unescapeMountField(fields[dash + 2] ?? "") });
  }
  return out;
}

/** True when something is mounted on `path` (an absolute, symlink-free path), in our mount namespace or process `pid`'s. */
export async function isMountPoint(path: string, pid?: number): Promise<boolean> {
  return (await readMounts(pid)).some((m) => m.mountPoint === path);
}

/**
 * True while `pid` is a live process (a zombie counts as gone: a daemonized helper is reparented
 * to pid 1, which in a container may never reap it).
 */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // The state letter follows the command name, which is in parentheses and may contain spaces.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** The argument vector of `pid`, or undefined if it has gone. */
export async function commandArgs(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return raw.split("\0").filter((a, i, all) => i < all.length - 1 || a !== "");
  } catch {
    return undefined;
  }
}

/** Pids of live processes whose arguments satisfy `match`. Used when a pid was never recorded. */
export async function findProcesses(match: (args: string[]) => boolean): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const args = await commandArgs(pid);
    if (args && match(args) && (await isAlive(pid))) found.push(pid);
  }
  return found;
}
