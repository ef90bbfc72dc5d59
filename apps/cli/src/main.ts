// Process entry of the `lcow` binary: wires the real process streams and signals into `run`.

import { run } from "./cli.js";
import { describeSystemError } from "./errors.js";
import { ExitCode } from "./io.js";

// A reader that goes away (`lcow convert ... --json | head -c 10`) makes stdout writes fail with
// EPIPE asynchronously; report it like any other OS error instead of crashing with a stack.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  const message = typeof err.code === "string" ? describeSystemError(err as NodeJS.ErrnoException & { code: string }, " stdout") : err.message;
  process.stderr.write(`lcow: error: ${message}\n`);
  process.exit(ExitCode.FAILURE);
});

// On Ctrl-C, stop feeding the converter so that it removes its temporary file, then exit 130.
// A second signal exits at once.
const controller = new AbortController();
let stdinUsed = false;
// Ends a read of stdin that would otherwise wait forever for data, so the process can exit.
controller.signal.addEventListener("abort", () => {
  if (stdinUsed) process.stdin.destroy();
});
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    controller.abort();
    process.once(sig, () => process.exit(ExitCode.INTERRUPTED));
  });
}

process.exitCode = await run(process.argv.slice(2), {
  // Touch process.stdin only when a command reads `-`: creating it can hold a TTY open.
  stdin: {
    [Symbol.asyncIterator]: () => {
      stdinUsed = true;
      return process.stdin[Symbol.asyncIterator]();
    },
  },
  stdout: process.stdout,
  stdoutStream: process.stdout,
  stderr: process.stderr,
  signal: controller.signal,
});
