// `lcow inspect`: container, ext4 geometry and features, usage, entries by type, largest files.
import { resolve } from "node:path";
import { inspectImage, type ImageInspection } from "@lcow/vhd";
import { parseCommandArgs, type OptionSpec } from "../args.js";
import { UsageError } from "../errors.js";
import { formatBytes, formatEntries } from "../format.js";
import { ExitCode, type CliIO } from "../io.js";
import { reportFailure } from "../output.js";
import type { Command } from "./command.js";

const OPTIONS = {
  json: { type: "boolean" },
  largest: { type: "string" },
} satisfies OptionSpec;

const USAGE = `Usage: lcow inspect <image> [--json] [--largest N]

Describe a disk image (raw ext4, fixed VHD or VHDX): the container's fields, the ext4
filesystem's geometry, features and usage, entries by type and the largest files.

Options:
      --json        Print one JSON object.
      --largest N   How many of the largest files to list (default 10).
  -h, --help        Show this help.
`;

async function runInspect(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, OPTIONS);
  if (values.help === true) {
    io.stdout.write(USAGE);
    return ExitCode.OK;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? "missing <image>" : `unexpected argument '${positionals[1]}'`);
  const largest = values.largest === undefined ? 10 : Number(values.largest);
  if (!Number.isInteger(largest) || largest < 0) throw new UsageError(`--largest: '${values.largest}' is not a whole number`);
  const json = values.json === true;
  try {
    const info = await inspectImage(resolve(io.cwd ?? process.cwd(), positionals[0]!), { largest });
    io.stdout.write(json ? `${JSON.stringify(info, null, 2)}\n` : human(info));
    return ExitCode.OK;
  } catch (err) {
    reportFailure(io, err, json);
    return ExitCode.FAILURE;
  }
}

function human(i: ImageInspection): string {
  const c = i.container;
  const e = i.ext4;
  const used = (e.blocksCount - e.freeBlocks) * e.blockSize;
  const lines = [
    `${i.path}`,
    `  container  ${c.format}, file ${formatBytes(c.fileSize)}, disk ${formatBytes(c.diskSize)}`,
  ];
  if (c.vhd) lines.push(`  vhd        creator '${c.vhd.creatorApplication}' on '${c.vhd.creatorHostOs}', created ${c.vhd.created}, CHS ${c.vhd.geometry.cylinders}/${c.vhd.geometry.heads}/${c.vhd.geometry.sectorsPerTrack}`);
  if (c.vhdx) lines.push(`  vhdx       ${formatBytes(c.vhdx.blockSize)} blocks, ${c.vhdx.allocatedBlocks} of ${c.vhdx.totalBlocks} allocated, ${c.vhdx.logicalSectorSize}/${c.vhdx.physicalSectorSize}-byte sectors, disk id ${c.vhdx.diskId ?? "(none)"}, creator '${c.vhdx.creator}'${c.vhdx.replayedLogEntries > 0 ? `, ${c.vhdx.replayedLogEntries} log entries replayed` : ""}`);
  for (const n of c.notes) lines.push(`  note       ${n}`);
  lines.push(
    `  ext4       uuid ${e.uuid}${e.volumeName ? `, label '${e.volumeName}'` : ""}, ${e.blockSize}-byte blocks, ${e.inodeSize}-byte inodes, ${e.groups} group(s)`,
    `  features   ${e.features.join(" ")}`,
    `  blocks     ${e.blocksCount - e.freeBlocks} used of ${e.blocksCount} (${formatBytes(used)} of ${formatBytes(e.blocksCount * e.blockSize)})`,
    `  inodes     ${e.inodesCount - e.freeInodes} used of ${e.inodesCount}`,
    `  entries    ${formatEntries(i.entries)}`,
    `  content    ${formatBytes(i.contentBytes)} in regular files`,
  );
  if (i.largest.length > 0) {
    lines.push("  largest");
    for (const f of i.largest) lines.push(`    ${formatBytes(f.size).padStart(10)}  ${f.path}`);
  }
  return `${lines.join("\n")}\n`;
}

export const inspectCommand: Command = { name: "inspect", summary: "describe an image: container, ext4 features, usage, largest files", usage: USAGE, run: runInspect };
