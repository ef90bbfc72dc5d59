// exportSandbox -path P: the tar of a mounted sandbox's writable layer, `P/upper` (or P itself
// when it has no upper/), with overlay whiteouts (0/0 character devices, the opaque xattr)
// turned into `.wh.` entries. Node cannot read xattrs from a directory tree, so rather than
// walk the mounted tree we read the filesystem under it the way @lcow/driver's diff of a
// writable layer does: P must be on an ext4 filesystem mounted from a loop device (as every
// disk this guest mounts is); after a syncfs, so that what the kernel caches is on the device,
// the loop device's backing file (a layer.vhd, a raw image, or a VHDX's FUSE export) is
// exported from the directory's path inside that filesystem (see backing.ts for finding it).
import { execFile } from "node:child_process";
import { realpath, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { promisify } from "node:util";
import { readMounts } from "@lcow/driver/kernel";
import { exportImage } from "@lcow/vhd";
import { loopBackingFile } from "./backing.js";
import { ToolError } from "./errors.js";
import type { ToolContext } from "./index.js";

const run = promisify(execFile);
/** Where sync(1) and losetup(8) are looked for: the tool's own environment may be empty. */
const TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

async function isDir(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

export async function exportSandboxTool(tool: string, ctx: ToolContext): Promise<void> {
  const given = ctx.flags.values.path ?? "";
  if (given === "") throw new ToolError(`${tool}: -path is required`);
  const path = await realpath(given).catch((err: Error) => {
    throw new ToolError(`${tool}: -path ${given}: ${err.message}`);
  });
  const dir = (await isDir(join(path, "upper"))) ? join(path, "upper") : path;
  if (!(await isDir(dir))) throw new ToolError(`${tool}: -path ${given} is not a directory`);
  // The filesystem holding `dir`: the last-listed mount on the longest mount point above it.
  let holder: { mountPoint: string; fsType: string; source: string } | undefined;
  for (const m of await readMounts()) {
    const above = m.mountPoint === "/" || dir === m.mountPoint || dir.startsWith(`${m.mountPoint}${sep}`);
    if (above && (!holder || m.mountPoint.length >= holder.mountPoint.length)) holder = m;
  }
  const env = { ...process.env, PATH: `${process.env.PATH ?? ""}:${TOOL_PATH}` };
  const file = holder?.fsType === "ext4" ? await loopBackingFile(holder.source, env) : undefined;
  if (!holder || !file) {
    throw new ToolError(`${tool}: ${dir} is on ${holder ? `${holder.fsType} from ${holder.source}` : "no mount"}, not on an ext4 filesystem mounted from a loop device; only mounted disks can be exported`);
  }
  await run("sync", ["-f", dir], { env }).catch((err: Error) => {
    throw new ToolError(`${tool}: syncing ${dir}: ${err.message}`);
  });
  const inside = relative(holder.mountPoint, dir);
  await exportImage(file, ctx.stdout as NodeJS.WritableStream & import("node:stream").Writable, { path: inside === "" ? undefined : inside, rootEntry: false });
}
