// Child-process helpers for the acceptance harness. Every real tool (tar, e2fsck, qemu-img,
// mount) is run through `run`, so a failure message always carries the exact command line,
// its exit code and its output.
import { spawn } from "node:child_process";

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The command line, shell-quoted, for failure messages. */
  command: string;
}

export interface RunOptions {
  cwd?: string;
  /** Bytes written to the child's stdin, then closed. */
  input?: string | Uint8Array;
  env?: NodeJS.ProcessEnv;
  /** Keep stdout as raw bytes (latin1 string) instead of utf8. */
  binary?: boolean;
}

const quote = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** Runs `cmd args` to completion and resolves with its exit status and output; never rejects on a non-zero exit. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const command = [cmd, ...args].map(quote).join(" ");
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code, signal) =>
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString(opts.binary ? "latin1" : "utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        command,
      }),
    );
    child.stdin.on("error", () => {}); // a tool that exits early closes its stdin; its exit code tells the story
    child.stdin.end(opts.input ?? undefined);
  });
}

/** Like `run`, but rejects (with command, exit code and output in the message) unless the exit code is 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(describeFailure(r));
  return r;
}

export function describeFailure(r: RunResult): string {
  const tail = (s: string) => (s.length > 4000 ? `...${s.slice(-4000)}` : s);
  return `\`${r.command}\` exited with ${r.code ?? r.signal}\n--- stdout\n${tail(r.stdout)}\n--- stderr\n${tail(r.stderr)}`;
}
