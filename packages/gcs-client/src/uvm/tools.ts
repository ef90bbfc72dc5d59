// The 2017 opengcs tool calls the seed's driver made through its utility VM (opengcs
// gogcs/client: TarToVhd, VhdToTar, CreateSandbox), over our bridge. Unlike that client we
// stream both ways at once (it copied all of stdin, then all of stdout), check the exit code
// (it never did: a failing tool gave a short file and no error), and write files under a
// temporary name, renamed into place only on success.
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, rename, rm, stat, constants as fsConstants } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { GcsError } from "../errors.js";
import type { GuestProcess } from "../bridge.js";
import type { UtilityVM } from "./utility-vm.js";

/** The tools' PATH and working directory, as the 2017 client set them. */
const TOOL_ENV = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:" };
const TOOL_CWD = "/bin";
/** The seed's default sandbox size (opengcs DefaultVhdxSizeGB). */
export const DEFAULT_SANDBOX_GB = 20;

function tempName(file: string): string {
  return join(dirname(file), `.${basename(file)}.${process.pid}.${Date.now().toString(36)}.tmp`);
}

/** A tool running in the VM, and its exit: rejects, with the end of its stderr, unless it exits 0. */
interface Tool {
  proc: GuestProcess;
  exit: Promise<void>;
}

async function startTool(uvm: UtilityVM, args: string[]): Promise<Tool> {
  const proc = await uvm.spawn({ CommandArgs: args, WorkingDirectory: TOOL_CWD, Environment: TOOL_ENV, CreateStdInPipe: true, CreateStdOutPipe: true, CreateStdErrPipe: true });
  let tail = "";
  proc.stderr?.setEncoding("utf8");
  proc.stderr?.on("data", (s: string) => (tail = (tail + s).slice(-4000)));
  const exit = proc.wait().then((code) => {
    if (code !== 0) throw new GcsError("RPC_FAILED", `${args[0]} in the utility VM exited with ${code}${tail.trim() ? `: ${tail.trim()}` : ""}`, { operation: args[0] });
  });
  exit.catch(() => {}); // awaited by the caller; never an unhandled rejection
  return { proc, exit };
}

/**
 * Runs a tool with `input` (or nothing) on stdin and its stdout written to `dest` under a
 * temporary name, renamed into place once the tool exited 0. Returns the bytes written.
 */
async function toolToFile(uvm: UtilityVM, args: string[], dest: string, input?: Readable): Promise<number> {
  const tmp = tempName(dest);
  const { proc, exit } = await startTool(uvm, args);
  try {
    const feed = input ? pipeline(input, proc.stdin!) : (proc.stdin!.end(), Promise.resolve());
    await Promise.all([feed, pipeline(proc.stdout!, createWriteStream(tmp, { flags: "wx" })), exit]);
    const { size } = await stat(tmp);
    await rename(tmp, dest);
    return size;
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  } finally {
    await proc.close();
  }
}

/**
 * `tar2vhd`: converts a layer tar into a VHD (ext4 + fixed footer) inside the VM and writes it to
 * `targetVhdFile`. Returns the bytes written.
 */
export function tarToVhd(uvm: UtilityVM, targetVhdFile: string, tar: Readable): Promise<number> {
  return toolToFile(uvm, ["tar2vhd"], targetVhdFile, tar);
}

/**
 * `vhd2tar` for a read-only layer (its VHD streamed in), or `exportSandbox -path <mountPath>`
 * for a writable layer already mounted in the VM: the layer's contents as a tar stream. The
 * stream errors if the tool fails.
 */
export async function vhdToTar(uvm: UtilityVM, vhdFile: string, uvmMountPath: string, isSandbox: boolean): Promise<Readable> {
  const args = isSandbox ? ["exportSandbox", "-path", uvmMountPath] : ["vhd2tar"];
  const { proc, exit } = await startTool(uvm, args);
  const out = new PassThrough();
  const input = isSandbox ? (proc.stdin!.end(), Promise.resolve()) : pipeline(createReadStream(vhdFile), proc.stdin!);
  Promise.all([input, pipeline(proc.stdout!, out, { end: false }), exit]).then(
    () => out.end(),
    (err: unknown) => out.destroy(err as Error),
  ).finally(() => void proc.close());
  return out;
}

/**
 * `createSandbox`: a blank, formatted sandbox VHDX of `sizeGB` made in the VM and written to
 * `destFile`. With `cacheFile`, a default-sized sandbox is copied from the cache when it exists
 * (fail if `destFile` exists), and the cache is seeded after a fresh one is made.
 */
export async function createSandbox(uvm: UtilityVM, destFile: string, sizeGB = DEFAULT_SANDBOX_GB, cacheFile?: string): Promise<void> {
  if (!Number.isInteger(sizeGB) || sizeGB < DEFAULT_SANDBOX_GB) sizeGB = Math.max(DEFAULT_SANDBOX_GB, Math.ceil(sizeGB || 0));
  const cacheable = cacheFile !== undefined && sizeGB === DEFAULT_SANDBOX_GB;
  if (cacheable) {
    try {
      await copyFile(cacheFile, destFile, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || (await exists(destFile))) throw err;
    }
  }
  await toolToFile(uvm, ["createSandbox", "-size", String(sizeGB * 1024 ** 3)], destFile);
  if (cacheable && !(await exists(cacheFile))) {
    const cacheTmp = tempName(cacheFile);
    await copyFile(destFile, cacheTmp, fsConstants.COPYFILE_FICLONE);
    await rename(cacheTmp, cacheFile);
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
