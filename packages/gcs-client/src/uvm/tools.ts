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

async function spawnTool(uvm: UtilityVM, args: string[]): Promise<GuestProcess> {
  return uvm.spawn({ CommandArgs: args, WorkingDirectory: TOOL_CWD, Environment: TOOL_ENV, CreateStdInPipe: true, CreateStdOutPipe: true, CreateStdErrPipe: true });
}

/** Collects a little of stderr for the error message of a failed tool. */
function stderrTail(proc: GuestProcess): () => string {
  let text = "";
  proc.stderr?.setEncoding("utf8");
  proc.stderr?.on("data", (s: string) => (text = (text + s).slice(-4000)));
  return () => text.trim();
}

async function checkExit(proc: GuestProcess, tool: string, tail: () => string): Promise<void> {
  const code = await proc.wait();
  if (code !== 0) throw new GcsError("RPC_FAILED", `${tool} in the utility VM exited with ${code}${tail() ? `: ${tail()}` : ""}`, { operation: tool });
}

/**
 * `tar2vhd`: converts a layer tar into a VHD (ext4 + fixed footer) inside the VM and writes it to
 * `targetVhdFile`. Returns the bytes written.
 */
export async function tarToVhd(uvm: UtilityVM, targetVhdFile: string, tar: Readable): Promise<number> {
  const tmp = tempName(targetVhdFile);
  const proc = await spawnTool(uvm, ["tar2vhd"]);
  const tail = stderrTail(proc);
  try {
    await Promise.all([pipeline(tar, proc.stdin!), pipeline(proc.stdout!, createWriteStream(tmp, { flags: "wx" })), checkExit(proc, "tar2vhd", tail)]);
    const { size } = await stat(tmp);
    await rename(tmp, targetVhdFile);
    return size;
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  } finally {
    await proc.close();
  }
}

/**
 * `vhd2tar` for a read-only layer (its VHD streamed in), or `exportSandbox -path <mountPath>`
 * for a writable layer already mounted in the VM: the layer's contents as a tar stream. The
 * stream errors if the tool fails.
 */
export async function vhdToTar(uvm: UtilityVM, vhdFile: string, uvmMountPath: string, isSandbox: boolean): Promise<Readable> {
  const args = isSandbox ? ["exportSandbox", "-path", uvmMountPath] : ["vhd2tar"];
  const proc = await spawnTool(uvm, args);
  const tail = stderrTail(proc);
  const out = new PassThrough();
  const input = isSandbox ? (proc.stdin!.end(), Promise.resolve()) : pipeline(createReadStream(vhdFile), proc.stdin!);
  Promise.all([input, pipeline(proc.stdout!, out, { end: false }), checkExit(proc, args[0]!, tail)]).then(
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
  const tmp = tempName(destFile);
  const proc = await spawnTool(uvm, ["createSandbox", "-size", String(sizeGB * 1024 ** 3)]);
  const tail = stderrTail(proc);
  try {
    proc.stdin?.end();
    await Promise.all([pipeline(proc.stdout!, createWriteStream(tmp, { flags: "wx" })), checkExit(proc, "createSandbox", tail)]);
    await rename(tmp, destFile);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  } finally {
    await proc.close();
  }
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
