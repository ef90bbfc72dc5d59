// What a command may touch of the outside world, passed in rather than taken from `process`, so
// tests run commands in-process with fake streams and a fake terminal.

import type { ProgressSink } from "./progress.js";

/** Text output stream (stdout). */
export interface TextSink {
  write(text: string): unknown;
}

/** The process surroundings of one CLI invocation. */
export interface CliIO {
  /** Standard input, read only when a command is given `-`. */
  stdin: AsyncIterable<Uint8Array>;
  /** Results: the summary or the `--json` object. */
  stdout: TextSink;
  /** The layer store named by the global `--root` (and `--opt k=v` driver options), if given. */
  store?: { root: string; opts: string[] };
  /** Standard output as a byte stream, for commands that write data there (`lcow export -o -`). */
  stdoutStream?: NodeJS.WritableStream;
  /** Diagnostics: errors, warnings and the progress bar (drawn only when `isTTY`). */
  stderr: ProgressSink;
  /** Directory that relative paths are resolved against. If not provided, `process.cwd()`. */
  cwd?: string;
  /** Aborted on SIGINT/SIGTERM: the command stops reading input so the converter can clean up. */
  signal?: AbortSignal;
}

/** Process exit codes of `lcow`, the same for every command. */
export const ExitCode = {
  /** The command did what was asked. */
  OK: 0,
  /** The command failed: bad input, bad flag value, I/O error. One `lcow: error:` line on stderr. */
  FAILURE: 1,
  /** The command line itself is wrong: unknown command or flag, missing operand. Usage on stderr. */
  USAGE: 2,
  /** Interrupted by SIGINT (128 + 2, as shells report it). */
  INTERRUPTED: 130,
} as const;
