// The `lcow` dispatcher: global flags, the command table, and usage errors.

import { createRequire } from "node:module";
import { COMMANDS, type Command } from "./commands/index.js";
import { UsageError } from "./errors.js";
import { ExitCode, type CliIO } from "./io.js";
import { reportFailure } from "./output.js";

/** The version in apps/cli/package.json (read at run time: the same path from src/ and dist/). */
export function version(): string {
  const pkg = createRequire(import.meta.url)("../package.json") as { version: string };
  return pkg.version;
}

/** `lcow --help`: the command list, generated from the command table. */
export function globalUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`);
  return `Usage: lcow <command> [options]

Linux containers on Windows storage tools: container layer tar <-> ext4 <-> VHD.

Commands:
${lines.join("\n")}

Options:
  -h, --help     Show this help (or 'lcow <command> --help' for a command's).
  -v, --version  Print the version.
  --root <dir>   The layer store for the store commands (layers, create, apply, diff,
                 changes, mount, umount, cleanup; check --root checks the store).
  --opt <k=v>    A driver option for the store, repeatable (e.g. lcow.mounter=kernel).
`;
}

/**
 * Runs one `lcow` invocation with `argv` (the words after `lcow`) and returns the exit code:
 * 0 success, 1 failure (reported by the command), 2 bad command line (message and usage on
 * stderr). Never throws, whatever a command does.
 */
export async function run(argv: string[], io: CliIO): Promise<number> {
  // Store options come before the command: `lcow --root <dir> [--opt k=v]... <command>`.
  let args = argv;
  let store: { root: string; opts: string[] } | undefined;
  for (;;) {
    const [flag, value] = args;
    const inline = flag?.match(/^--(root|opt)=(.*)$/);
    if (inline || flag === "--root" || flag === "--opt") {
      const name = inline ? inline[1] : flag!.slice(2);
      const v = inline ? inline[2] : value;
      if (v === undefined || v === "") return usageError(io, `${flag} needs a value`);
      store ??= { root: "", opts: [] };
      if (name === "root") store.root = v;
      else store.opts.push(v);
      args = args.slice(inline ? 1 : 2);
      continue;
    }
    break;
  }
  if (store) {
    if (store.root === "") return usageError(io, "--opt needs --root <dir> too");
    io = { ...io, store };
  }
  const [first, ...rest] = args;
  if (first === undefined) {
    io.stderr.write(globalUsage());
    return ExitCode.USAGE;
  }
  if (first === "-h" || first === "--help") {
    io.stdout.write(globalUsage());
    return ExitCode.OK;
  }
  if (first === "-v" || first === "--version") {
    io.stdout.write(`${version()}\n`);
    return ExitCode.OK;
  }
  if (first === "help") {
    const target = rest[0] === undefined ? undefined : COMMANDS.find((c) => c.name === rest[0]);
    if (rest[0] !== undefined && target === undefined) return usageError(io, `unknown command '${rest[0]}'`);
    io.stdout.write(target?.usage ?? globalUsage());
    return ExitCode.OK;
  }
  const command = COMMANDS.find((c) => c.name === first);
  if (command === undefined) {
    return usageError(io, first.startsWith("-") ? `unknown option '${first}'` : `unknown command '${first}'`);
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) return usageError(io, err.message, command);
    // A command reports its own failures; reaching here is a bug in it, still shown as one line.
    reportFailure(io, err, false);
    return ExitCode.FAILURE;
  }
}

function usageError(io: CliIO, message: string, command?: Command): number {
  io.stderr.write(`lcow: error: ${message}\n\n${command?.usage ?? globalUsage()}`);
  return ExitCode.USAGE;
}
