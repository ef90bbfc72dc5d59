// The CLI's one boundary for errors: every failure, whatever threw it, is turned into a
// `CliFailure` here, and only here, so exit codes and messages are uniform across commands.

import { isDriverError } from "@lcow/driver";
import { isVhdError } from "@lcow/vhd";

/** A bad command line: unknown command or flag, missing operand. Exits 2 with usage. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** A failure the CLI itself detects (bad flag value, unreadable input), with a stable code like the library's. */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    readonly code: string,
    message: string,
    readonly path?: string,
  ) {
    super(message);
  }
}

/** What the user is told about a failed command: on stderr as one line, with `--json` also on stdout. */
export interface CliFailure {
  code: string;
  message: string;
  path: string | undefined;
  offset: number | undefined;
}

// Node's system errors carry errno names; spell the common ones as the C library does so the
// message reads like other Unix tools' ("No such file or directory").
const ERRNO_TEXT: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EISDIR: "is a directory",
  ENOTDIR: "not a directory",
  ENOSPC: "no space left on device",
  EROFS: "read-only file system",
  EPIPE: "broken pipe",
  EEXIST: "file exists",
  EIO: "input/output error",
  EMFILE: "too many open files",
};

/** A Node system error (`fs`, `net`, streams): has an errno `code` and a `syscall`. */
function isSystemError(err: unknown): err is NodeJS.ErrnoException & { code: string } {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === "string" && typeof (err as NodeJS.ErrnoException).syscall === "string";
}

/**
 * Normalises anything a command threw. `VhdError`/`CliError` keep their code, message, path and
 * offset; OS errors become code `IO` with the operation, the file and the reason
 * (`cannot open 'x.tar': no such file or directory (ENOENT)`); anything else is `INTERNAL`
 * with its message, because it is a bug we want reported verbatim.
 */
export function toFailure(err: unknown): CliFailure {
  if (isVhdError(err)) return { code: err.code, message: err.message, path: err.path, offset: err.offset };
  if (isDriverError(err)) return { code: err.code, message: err.message, path: undefined, offset: undefined };
  if (err instanceof CliError) return { code: err.code, message: err.message, path: err.path, offset: undefined };
  if (isSystemError(err)) return { code: "IO", message: describeSystemError(err), path: err.path, offset: undefined };
  const message = err instanceof Error ? err.message : String(err);
  return { code: "INTERNAL", message, path: undefined, offset: undefined };
}

/** `cannot <verb> '<path>': <reason> (<ERRNO>)`, from a Node system error. */
export function describeSystemError(err: NodeJS.ErrnoException & { code: string }, what?: string): string {
  const reason = ERRNO_TEXT[err.code] ?? err.message.replace(/^[A-Z]+: /, "").replace(/, \w+ '.*'$/, "");
  const verb = { open: "open", read: "read", write: "write", rename: "rename", mkdir: "create", unlink: "remove", stat: "stat" }[err.syscall ?? ""] ?? err.syscall;
  const target = what ?? (err.path === undefined ? "" : ` '${err.path}'`);
  return `cannot ${verb}${target}: ${reason} (${err.code})`;
}
