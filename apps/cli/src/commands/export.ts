// `lcow export`: the filesystem in an image (raw, VHD, VHDX) as a tar, to a file or stdout.
import { resolve } from "node:path";
import type { Writable } from "node:stream";
import { exportImage, type ExportImageOptions } from "@lcow/vhd";
import { parseCommandArgs, type OptionSpec } from "../args.js";
import { UsageError } from "../errors.js";
import { formatBytes, formatDuration, formatEntries } from "../format.js";
import { ExitCode, type CliIO } from "../io.js";
import { reportFailure } from "../output.js";
import type { Command } from "./command.js";

const OPTIONS = {
  output: { type: "string", short: "o" },
  gzip: { type: "boolean", short: "z" },
  path: { type: "string" },
  "keep-whiteouts": { type: "boolean" },
  "keep-lost-found": { type: "boolean" },
  "no-root-entry": { type: "boolean" },
  json: { type: "boolean" },
} satisfies OptionSpec;

const USAGE = `Usage: lcow export <image> [-o <out.tar> | -o -] [options]

Write the ext4 filesystem inside <image> (raw, fixed VHD or VHDX, detected) as a pax tar:
a deterministic order, hard links as link entries, devices, fifos, xattrs, nanosecond
mtimes, holes as sparse entries. Overlay whiteouts become OCI '.wh.' entries again.

Options:
  -o, --output <path>  Tar to write (default: standard output, also with '-').
                       A file is written under a temporary name and renamed.
  -z, --gzip           Compress with gzip.
      --path <dir>     Export only this directory's contents (e.g. 'upper').
      --keep-whiteouts Keep overlay whiteouts (0/0 devices, trusted.overlay.opaque) raw.
      --keep-lost-found Include an empty /lost+found.
      --no-root-entry  Do not start with a './' entry for the root directory.
      --json           Print a JSON summary (on stderr when the tar goes to stdout).
  -h, --help           Show this help.
`;

async function runExport(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, OPTIONS);
  if (values.help === true) {
    io.stdout.write(USAGE);
    return ExitCode.OK;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? "missing <image>" : `unexpected argument '${positionals[1]}'`);
  const json = values.json === true;
  const cwd = io.cwd ?? process.cwd();
  const toStdout = values.output === undefined || values.output === "-";
  try {
    const options: ExportImageOptions = {
      gzip: values.gzip === true,
      keepWhiteouts: values["keep-whiteouts"] === true,
      keepLostFound: values["keep-lost-found"] === true,
      rootEntry: values["no-root-entry"] !== true,
    };
    if (typeof values.path === "string") options.path = values.path;
    const start = performance.now();
    let target: string | Writable;
    if (toStdout) {
      if (!io.stdoutStream) throw new UsageError("no standard output stream to write the tar to");
      target = io.stdoutStream as Writable;
    } else {
      target = resolve(cwd, values.output as string);
    }
    const summary = await exportImage(resolve(cwd, positionals[0]!), target, options);
    const seconds = (performance.now() - start) / 1000;
    // With the tar on stdout, the summary goes to stderr so it never mixes with the data.
    const report = toStdout ? io.stderr : io.stdout;
    if (json) report.write(`${JSON.stringify({ ok: true, output: toStdout ? "-" : target, entries: summary.entries, bytesOut: summary.bytesOut, seconds, peakRssBytes: process.resourceUsage().maxRSS * 1024 })}\n`);
    else if (!toStdout) report.write(`exported ${positionals[0]} -> ${values.output}\n  entries   ${formatEntries(summary.entries)}\n  tar out   ${formatBytes(summary.bytesOut)}\n  time      ${formatDuration(seconds)}\n`);
    return ExitCode.OK;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    reportFailure(io, err, json && !toStdout);
    return ExitCode.FAILURE;
  }
}

export const exportCommand: Command = { name: "export", summary: "write the filesystem in an image as a tar", usage: USAGE, run: runExport };
