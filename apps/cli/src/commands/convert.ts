// `lcow convert`: a layer tar (plain, gzip or zstd; a file, stdin or the built-in sample) to an
// ext4 image with a VHD footer. Decompression, parsing and writing all happen in @lcow/vhd; this
// file only turns flags into options, feeds the input, and reports.

import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { convertTar, detectCompression, isVhdError, type ConvertOptions, type ConvertSummary } from "@lcow/vhd";
import { parseCommandArgs, parseSize, parseTimestamp, parseUuid, type OptionSpec } from "../args.js";
import { CliError, UsageError, describeSystemError } from "../errors.js";
import { formatBytes, formatDuration, formatEntries, mibPerSecond } from "../format.js";
import { ExitCode, type CliIO } from "../io.js";
import { reportFailure } from "../output.js";
import { Progress } from "../progress.js";
import { sampleLayer } from "../sample.js";
import type { Command } from "./command.js";

const OPTIONS = {
  output: { type: "string", short: "o" },
  format: { type: "string" },
  "no-vhd": { type: "boolean" },
  "keep-whiteouts": { type: "boolean" },
  "inline-data": { type: "boolean" },
  "max-size": { type: "string" },
  uuid: { type: "string" },
  timestamp: { type: "string" },
  strict: { type: "boolean" },
  fsync: { type: "boolean" },
  json: { type: "boolean" },
  sample: { type: "boolean" },
} satisfies OptionSpec;

const USAGE = `Usage: lcow convert <input.tar[.gz|.zst] | -> -o <output.vhd> [options]
       lcow convert --sample -o <output.vhd> [options]

Convert a container layer tar to an ext4 filesystem image with a fixed VHD footer
(the read-only layer.vhd of Docker's lcow driver), or inside a dynamic VHDX with
--format vhdx. The input may be plain, gzip or zstd; the compression is detected
from its first bytes. '-' reads standard input.

Options:
  -o, --output <path>    Image to write (required). Written under a temporary name
                         and renamed, so a failure leaves no file behind.
      --sample           Convert a small built-in sample layer instead of <input>.
      --format <fmt>     Container of the image: vhd (ext4 + 512-byte fixed VHD
                         footer), raw (ext4 alone) or vhdx (dynamic VHDX, 1 MiB
                         blocks, virtual size = the ext4 size). Default: vhd.
      --no-vhd           Same as --format raw.
      --keep-whiteouts   Keep OCI whiteouts (.wh.*) as plain files instead of
                         turning them into overlay whiteouts and opaque dirs.
      --inline-data      Store files of up to 60 bytes inside their inode.
      --max-size <size>  Largest the image may grow to: 128G, 512M, 1T, 2GiB or
                         bytes (powers of 1024). Default: 128G.
      --uuid <uuid>      Filesystem UUID. Default: derived from the input.
      --timestamp <sec>  Superblock and footer time, in seconds since 1970.
                         Default: the newest mtime in the input.
      --strict           Fail on input quirks that are otherwise warnings.
      --fsync            Flush the image to disk before renaming it into place.
      --json             Print one JSON object on stdout instead of the summary.
  -h, --help             Show this help.

Exit status: 0 converted, 1 failed (one 'lcow: error:' line on stderr),
2 bad command line.
`;

/** The `--json` body of a successful conversion. Field names are a stable interface (the benchmark reads them). */
export interface ConvertJson {
  ok: true;
  /** Absolute path of the image written. */
  output: string;
  /** Entries written, by type (see `ConvertSummary.entries`). */
  entries: Record<string, number>;
  /** Tar bytes consumed, after decompression. */
  bytesIn: number;
  /** Size of the ext4 filesystem. */
  ext4Bytes: number;
  /** Size of the output file (ext4 plus the VHD footer when written; a VHDX file's length). */
  imageBytes: number;
  /** Wall time of the conversion, in seconds. */
  seconds: number;
  /** `bytesIn` per second, in MiB (2^20 bytes). */
  mibPerSecond: number;
  /** Peak resident set size of the process, in bytes (`process.resourceUsage().maxRSS * 1024`). */
  peakRssBytes: number;
}

/** The input named on the command line: a stream (stdin, sample) or a file path. */
interface Input {
  /** A file path lets the library read with large, overlapped, recycled reads. */
  source: string | AsyncIterable<Uint8Array>;
  /** Tar bytes to expect, for the progress bar; unknown for stdin and compressed files. */
  size: number | undefined;
  label: string;
}

/** Opens the input named on the command line; learns its size when it is a plain tar file. */
async function openInput(arg: string, io: CliIO, cwd: string): Promise<Input> {
  if (arg === "-") return { source: io.stdin, size: undefined, label: "<stdin>" };
  const path = resolve(cwd, arg);
  try {
    const st = await stat(path);
    if (st.isDirectory()) throw new CliError("IO", `cannot read '${arg}': is a directory (EISDIR)`, arg);
    // Only a regular file's size says how much there is to read; a fifo or /dev/stdin says 0.
    // Progress counts tar bytes, so a compressed file's size is no total for it.
    if (!st.isFile()) return { source: createReadStream(path, { highWaterMark: 1 << 20 }), size: undefined, label: arg };
    const head = new Uint8Array(4);
    const fh = await open(path, "r");
    try {
      await fh.read(head, 0, 4, 0);
    } finally {
      await fh.close();
    }
    return { source: path, size: detectCompression(head) === "none" ? st.size : undefined, label: arg };
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError("IO", describeSystemError(err as NodeJS.ErrnoException & { code: string }, ` '${arg}'`).replace("cannot stat", "cannot open"), arg);
  }
}

/** Refuses an output whose directory is missing before any input is read (stdin cannot be re-read). */
async function checkOutput(out: string, arg: string): Promise<void> {
  const dir = dirname(out);
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw new CliError("IO", `cannot create '${arg}': '${dir}' is not a directory (ENOTDIR)`, arg);
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError("IO", `cannot create '${arg}': directory '${dir}' does not exist (ENOENT)`, arg);
  }
  const existing = await stat(out).catch(() => undefined);
  if (existing?.isDirectory()) throw new CliError("IO", `cannot create '${arg}': is a directory (EISDIR)`, arg);
}

/**
 * Counts the bytes the converter pulls (compressed bytes, so a percentage against the file size
 * is right for .tar.gz too) and stops at the next chunk boundary, or at once while waiting on a
 * slow stdin, when `signal` aborts.
 */
async function* metered(
  source: AsyncIterable<Uint8Array>,
  onBytes: (total: number) => void,
  signal: AbortSignal | undefined,
): AsyncGenerator<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  let total = 0;
  const aborted = new Promise<never>((_, reject) => {
    const stop = (): void => reject(new CliError("INTERRUPTED", "interrupted"));
    if (signal?.aborted) stop();
    else signal?.addEventListener("abort", stop, { once: true });
  });
  aborted.catch(() => {}); // observed below; this only keeps an unraced rejection from being "unhandled"
  try {
    for (;;) {
      const r = signal === undefined ? await it.next() : await Promise.race([it.next(), aborted]);
      if (r.done) return;
      total += r.value.length;
      onBytes(total);
      yield r.value;
    }
  } finally {
    const closing = it.return?.();
    // A pending read (stdin with no data coming) holds the source's return() back until the read
    // settles, so after an abort we do not wait for it; the owner of the source unblocks it
    // (main.ts destroys stdin on a signal).
    if (signal?.aborted) closing?.catch(() => {});
    else await closing;
  }
}

/** Runs `lcow convert` with `argv` (the words after `convert`); returns the exit code. */
export async function runConvert(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, OPTIONS);
  if (values.help === true) {
    io.stdout.write(USAGE);
    return ExitCode.OK;
  }
  const json = values.json === true;
  const sample = values.sample === true;
  if (sample && positionals.length > 0) throw new UsageError("give either <input> or --sample, not both");
  if (!sample && positionals.length === 0) throw new UsageError("missing <input> (a tar file, or - for stdin)");
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`);
  const outArg = values.output;
  if (typeof outArg !== "string" || outArg === "") throw new UsageError("missing -o <output>");

  if (values["no-vhd"] === true && typeof values.format === "string" && values.format.toLowerCase() !== "raw") throw new UsageError(`--no-vhd contradicts --format ${values.format}`);

  const cwd = io.cwd ?? process.cwd();
  const out = resolve(cwd, outArg);
  let progress: Progress | undefined;
  try {
    const options: ConvertOptions = {
      vhd: values["no-vhd"] !== true,
      keepWhiteouts: values["keep-whiteouts"] === true,
      inlineData: values["inline-data"] === true,
      strict: values.strict === true,
      fsync: values.fsync === true,
    };
    // Only an explicit --format is passed on; without it `vhd` says vhd or raw, as before.
    if (typeof values.format === "string") options.format = parseFormat(values.format);
    if (typeof values["max-size"] === "string") options.maxDiskSize = parseSize(values["max-size"], "--max-size");
    if (typeof values.uuid === "string") options.uuid = parseUuid(values.uuid, "--uuid");
    if (typeof values.timestamp === "string") options.timestamp = parseTimestamp(values.timestamp, "--timestamp");

    await checkOutput(out, outArg);
    const input: Input = sample
      ? { source: sampleLayer(), size: undefined, label: "<sample>" }
      : await openInput(positionals[0] as string, io, cwd);

    const bar = new Progress(io.stderr, { total: input.size });
    progress = bar;
    options.onWarning = (w) => {
      bar.clear();
      io.stderr.write(`warning: ${w.code}: ${w.message}\n`);
    };
    const start = performance.now();
    let source: string | AsyncIterable<Uint8Array>;
    if (typeof input.source === "string") {
      source = input.source;
      options.signal = io.signal;
      options.onProgress = (n) => bar.update(n);
    } else {
      source = metered(input.source, (n) => bar.update(n), io.signal);
    }
    const summary = await convertTar(source, out, options);
    const seconds = (performance.now() - start) / 1000;
    bar.done();
    const done = { ...summary, format: summary.format ?? options.format ?? (options.vhd === false ? "raw" : "vhd") };
    if (json) io.stdout.write(`${JSON.stringify(toJson(done, out, seconds))}\n`);
    else io.stdout.write(humanSummary(done, input.label, outArg, seconds));
    return ExitCode.OK;
  } catch (err) {
    progress?.done();
    // The library's ABORTED is our Ctrl-C: same exit status as an interrupted stream.
    const failure = reportFailure(io, isVhdError(err) && err.code === "ABORTED" ? new CliError("INTERRUPTED", "interrupted") : err, json);
    return failure.code === "INTERRUPTED" ? ExitCode.INTERRUPTED : ExitCode.FAILURE;
  }
}

function toJson(s: Required<ConvertSummary>, output: string, seconds: number): ConvertJson {
  return {
    ok: true,
    output,
    entries: s.entries,
    bytesIn: s.bytesIn,
    ext4Bytes: s.ext4Bytes,
    imageBytes: s.imageBytes,
    seconds: round(seconds, 6),
    mibPerSecond: round(mibPerSecond(s.bytesIn, seconds), 3),
    // maxRSS is in KiB on every platform Node supports.
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** `--format` (vhd, raw, vhdx, any case). */
function parseFormat(text: string): "vhd" | "raw" | "vhdx" {
  const format = text.toLowerCase();
  if (format !== "vhd" && format !== "raw" && format !== "vhdx") throw new CliError("INVALID_ARGUMENT", `invalid --format '${text}': expected vhd, raw or vhdx`);
  return format;
}

function humanSummary(s: Required<ConvertSummary>, input: string, output: string, seconds: number): string {
  const rate = mibPerSecond(s.bytesIn, seconds);
  const layout =
    s.format === "vhd" ? `ext4 ${formatBytes(s.ext4Bytes)} + 512-byte VHD footer` : s.format === "vhdx" ? `dynamic VHDX holding ext4 ${formatBytes(s.ext4Bytes)}` : "raw ext4, no VHD footer";
  return [
    `converted ${input} -> ${output}`,
    `  entries   ${formatEntries(s.entries)}`,
    `  tar in    ${formatBytes(s.bytesIn)}`,
    `  image     ${formatBytes(s.imageBytes)} (${layout})`,
    `  time      ${formatDuration(seconds)} (${rate.toFixed(1)} MiB/s)`,
    "",
  ].join("\n");
}

/** The `convert` entry of the command table. */
export const convertCommand: Command = {
  name: "convert",
  summary: "Convert a layer tar (plain, gzip or zstd) to an ext4 VHD (or VHDX) image",
  usage: USAGE,
  run: runConvert,
};
