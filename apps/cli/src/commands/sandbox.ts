// `lcow sandbox create`: a blank writable layer (a dynamic VHDX holding an empty ext4
// filesystem with upper/ and work/), made in-process by @lcow/vhd. This file only turns flags
// into options and reports.
import { resolve } from "node:path";
import { createSandbox, DEFAULT_SANDBOX_SIZE, type CreateSandboxOptions, type SandboxSummary } from "@lcow/vhd";
import { parseCommandArgs, parseSize, parseTimestamp, parseUuid, type OptionSpec } from "../args.js";
import { UsageError } from "../errors.js";
import { formatBytes, formatDuration } from "../format.js";
import { ExitCode, type CliIO } from "../io.js";
import { reportFailure } from "../output.js";
import type { Command } from "./command.js";

const OPTIONS = {
  size: { type: "string" },
  "block-size": { type: "string" },
  scratch: { type: "boolean" },
  uuid: { type: "string" },
  timestamp: { type: "string" },
  fsync: { type: "boolean" },
  json: { type: "boolean" },
} satisfies OptionSpec;

const USAGE = `Usage: lcow sandbox create <out.vhdx> [--size 20G] [options]

Create a blank sandbox: a dynamically expanding VHDX (the writable layer of Docker's
lcow driver) holding an empty ext4 filesystem that fills the disk, with upper/ and
work/ in its root for an overlay mount. No VM, mkfs or root is needed; a 20G sandbox
takes a few MiB on disk.

Options:
      --size <size>        Virtual disk size: 20G, 512M, 1T, 2GiB or bytes (powers of
                           1024); a multiple of 512 bytes, from 1M to just under 16T.
                           Default: 20G (Docker's lcow.sandboxsize default of 20 GB).
      --block-size <size>  VHDX block size, a power of two from 1M to 256M. Default: 1M.
      --scratch            A bare filesystem (no upper/ or work/), as a service VM's
                           scratch disk.
      --uuid <uuid>        Filesystem UUID. Default: random.
      --timestamp <sec>    Filesystem time, in seconds since 1970. Default: now.
      --fsync              Flush the file to disk before renaming it into place.
      --json               Print one JSON object on stdout instead of the summary.
  -h, --help               Show this help.

The file is written under a temporary name and renamed, replacing <out.vhdx>;
a failure leaves no file behind.

Exit status: 0 created, 1 failed (one 'lcow: error:' line on stderr),
2 bad command line.
`;

/** The `--json` body of `lcow sandbox create`. Field names are a stable interface. */
export interface SandboxCreateJson extends Omit<SandboxSummary, "path"> {
  ok: true;
  /** Absolute path of the file written. */
  output: string;
  /** Wall time, in seconds. */
  seconds: number;
}

async function runSandbox(argv: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "--help" || sub === "-h" || sub === undefined) {
    if (sub === undefined) throw new UsageError("missing subcommand (create)");
    io.stdout.write(USAGE);
    return ExitCode.OK;
  }
  if (sub !== "create") throw new UsageError(`unknown subcommand '${sub}' (expected create)`);
  const { values, positionals } = parseCommandArgs(rest, OPTIONS);
  if (values.help === true) {
    io.stdout.write(USAGE);
    return ExitCode.OK;
  }
  if (positionals.length === 0) throw new UsageError("missing <out.vhdx>");
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`);
  const json = values.json === true;
  const out = resolve(io.cwd ?? process.cwd(), positionals[0]!);
  try {
    const options: CreateSandboxOptions = { size: DEFAULT_SANDBOX_SIZE, fsync: values.fsync === true };
    if (typeof values.size === "string") options.size = parseSize(values.size, "--size");
    if (typeof values["block-size"] === "string") options.blockSize = parseSize(values["block-size"], "--block-size");
    if (values.scratch === true) options.directories = [];
    if (typeof values.uuid === "string") options.uuid = parseUuid(values.uuid, "--uuid");
    if (typeof values.timestamp === "string") options.timestamp = parseTimestamp(values.timestamp, "--timestamp");
    const start = performance.now();
    const summary = await createSandbox(out, options);
    const seconds = (performance.now() - start) / 1000;
    if (json) {
      const { path: _path, ...rest } = summary;
      const body: SandboxCreateJson = { ok: true, output: out, ...rest, seconds: Math.round(seconds * 1e6) / 1e6 };
      io.stdout.write(`${JSON.stringify(body)}\n`);
    } else {
      io.stdout.write(
        [
          `created ${positionals[0]}`,
          `  disk      ${formatBytes(summary.virtualSize)} dynamic VHDX, ${formatBytes(summary.blockSize)} blocks (${summary.allocatedBlocks} allocated)`,
          `  ext4      ${formatBytes(summary.ext4Bytes)}, blank${values.scratch === true ? "" : ", upper/ and work/ in its root"}`,
          `  file      ${formatBytes(summary.fileBytes)} (${formatBytes(summary.diskBytes)} on disk)`,
          `  time      ${formatDuration(seconds)}`,
          "",
        ].join("\n"),
      );
    }
    return ExitCode.OK;
  } catch (err) {
    reportFailure(io, err, json);
    return ExitCode.FAILURE;
  }
}

/** The `sandbox` entry of the command table. */
export const sandboxCommand: Command = {
  name: "sandbox",
  summary: "Create a blank sandbox (dynamic VHDX with an empty ext4) for a writable layer",
  usage: USAGE,
  run: runSandbox,
};
