// Which file a loop device reads, as a path this process can open. The kernel names a loop
// device's backing file by its path in the mount namespace the file was opened in; for a VHDX
// export that is the namespace qemu-storage-daemon runs in, where the same path names the FUSE
// export while in ours it names the empty file under it. So the name is checked against the
// device's recorded backing inode and, if it is not that file here, looked up through the root
// of each process (one of them, the daemon or the namespace's holder, lives there).
import { execFile } from "node:child_process";
import { readdir, stat } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

interface LosetupEntry {
  name: string;
  "back-file": string | null;
  "back-ino": number | string | null;
  "back-maj:min": string | null;
}

/** glibc's makedev: the st_dev of a file on device `major:minor`. */
function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

async function isFile(path: string, dev: bigint, ino: bigint): Promise<boolean> {
  const st = await stat(path, { bigint: true }).catch(() => undefined);
  return st !== undefined && st.dev === dev && st.ino === ino;
}

/** An openable path of loop device `device`'s backing file, or undefined for a device that is not a loop device in use. */
export async function loopBackingFile(device: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (!/^\/dev\/loop\d+$/.test(device)) return undefined;
  const { stdout } = await run("losetup", ["--list", "--json", "--output", "NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN", device], { env });
  const entry = (JSON.parse(stdout) as { loopdevices?: LosetupEntry[] }).loopdevices?.[0];
  const file = entry?.["back-file"]?.replace(/ \(deleted\)$/, "");
  const [major, minor] = (entry?.["back-maj:min"] ?? "").split(":").map(Number);
  if (!entry || !file || major === undefined || minor === undefined || entry["back-ino"] === null) return undefined;
  const dev = makedev(major, minor);
  const ino = BigInt(entry["back-ino"]);
  if (await isFile(file, dev, ino)) return file;
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const there = `/proc/${pid}/root${file}`;
    if (await isFile(there, dev, ino)) return there;
  }
  return undefined;
}
