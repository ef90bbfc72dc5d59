// Running the tools the kernel mounter drives. Every call has a timeout (a wedged FUSE daemon
// can hang `mount` or `umount` forever) and turns failures into coded errors that carry the
// command line and the tool's stderr, since that is where losetup and mount explain themselves.
import { execFile } from "node:child_process";
import { DriverError } from "../../errors.js";

export interface RunOptions {
  /** Milliseconds before the tool is killed (SIGKILL) and the call fails UNAVAILABLE; 0 waits forever (`lcow.timeout=0`). */
  timeoutMs: number;
  /** Working directory; overlay mounts run in the mount's work folder so lower dirs can be short relative paths. */
  cwd?: string;
}

/** What a tool printed. */
export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Quotes an argument for an error message only (never for a shell). */
function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg);
}

/** The command line as text, for messages. */
export function commandLine(file: string, args: readonly string[]): string {
  return [file, ...args].map(quote).join(" ");
}

/**
 * Runs `file` with `args` (no shell) and resolves with its output when it exits 0. A missing
 * tool or a timeout rejects UNAVAILABLE; a non-zero exit rejects INTERNAL with the command line
 * and the tool's stderr (the exec error, with its exit code, is the `cause`).
 */
export function run(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: options.timeoutMs, killSignal: "SIGKILL", cwd: options.cwd, encoding: "utf8", maxBuffer: 16 * 1024 * 1024, env: { ...process.env, LC_ALL: "C" } },
      (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr });
        const cmd = commandLine(file, args);
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: string | number; signal?: string };
        if (e.code === "ENOENT") {
          return reject(new DriverError("UNAVAILABLE", `${file} not found (is it installed and on PATH?): ${cmd}`, { cause: err }));
        }
        if (e.killed && e.signal === "SIGKILL") {
          return reject(new DriverError("UNAVAILABLE", `${cmd} timed out after ${options.timeoutMs} ms`, { cause: err }));
        }
        const why = stderr.trim() || stdout.trim() || e.message;
        reject(new DriverError("INTERNAL", `${cmd} failed (exit ${String(e.code ?? e.signal)}): ${why}`, { cause: err }));
      },
    );
  });
}
