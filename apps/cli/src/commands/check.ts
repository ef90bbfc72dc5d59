// `lcow check`: the VHD footer and an ext4 structural check that needs no e2fsprogs.
import { resolve } from "node:path";
import { checkStore } from "@lcow/driver";
import { checkImage, type ImageCheckReport } from "@lcow/vhd";
import { parseCommandArgs, type OptionSpec } from "../args.js";
import { UsageError } from "../errors.js";
import { ExitCode, type CliIO } from "../io.js";
import { reportFailure } from "../output.js";
import type { Command } from "./command.js";

const OPTIONS = {
  json: { type: "boolean" },
  root: { type: "string" },
  "max-findings": { type: "string" },
} satisfies OptionSpec;

const USAGE = `Usage: lcow check <image> [--json] [--max-findings N]
       lcow check --root <dir> [--json]

Check a disk image (raw ext4, fixed VHD or VHDX) without e2fsprogs: the VHD footer's
checksum and size; the ext4 superblock and group descriptors (and their checksums with
metadata_csum), block and inode bitmaps against what the inodes use, free counts, extent
trees and block maps, directory entries, link counts, reachability and the orphan list.

Exit status: 0 clean (warnings allowed), 1 problems found (listed) or the image could not
be read, 2 bad command line.

With --root, checks a layer store instead: every layer's image, chains resolvable, no orphans
or leftovers of interrupted operations.

Options:
      --root <dir>        Check the layer store at <dir>.
      --json              Print the report as one JSON object.
      --max-findings N    Stop listing after N findings (default 1000).
  -h, --help              Show this help.
`;

async function runCheck(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, OPTIONS);
  if (values.help === true) {
    io.stdout.write(USAGE);
    return ExitCode.OK;
  }
  const storeRoot = typeof values.root === "string" ? values.root : io.store?.root;
  if (storeRoot !== undefined && positionals.length === 0) return checkStoreCommand(resolve(io.cwd ?? process.cwd(), storeRoot), io, values.json === true);
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? "missing <image>" : `unexpected argument '${positionals[1]}'`);
  const maxFindings = values["max-findings"] === undefined ? undefined : Number(values["max-findings"]);
  if (maxFindings !== undefined && (!Number.isInteger(maxFindings) || maxFindings < 1)) throw new UsageError(`--max-findings: '${values["max-findings"]}' is not a positive whole number`);
  const json = values.json === true;
  try {
    const report = await checkImage(resolve(io.cwd ?? process.cwd(), positionals[0]!), maxFindings === undefined ? {} : { maxFindings });
    io.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : human(positionals[0]!, report));
    return report.ok ? ExitCode.OK : ExitCode.FAILURE;
  } catch (err) {
    reportFailure(io, err, json);
    return ExitCode.FAILURE;
  }
}

async function checkStoreCommand(root: string, io: CliIO, json: boolean): Promise<number> {
  try {
    const report = await checkStore(root);
    if (json) io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else {
      const lines = [`${root}: ${report.ok ? "clean" : `${report.problems.length} problem(s)`} (${report.layers.layer} layers, ${report.layers.sandbox} sandboxes, ${report.layers.empty} empty)`];
      for (const p of report.problems) lines.push(`  ${p.code}: ${p.path}: ${p.message}`);
      io.stdout.write(`${lines.join("\n")}\n`);
    }
    return report.ok ? ExitCode.OK : ExitCode.FAILURE;
  } catch (err) {
    reportFailure(io, err, json);
    return ExitCode.FAILURE;
  }
}

function human(name: string, r: ImageCheckReport): string {
  const errors = r.findings.filter((f) => f.severity === "error").length;
  const warnings = r.findings.length - errors;
  const lines = [`${name}: ${r.format}, ${r.ok ? "clean" : `${errors} problem(s)`}${warnings ? `, ${warnings} warning(s)` : ""}`];
  for (const f of r.findings) lines.push(`  ${f.severity === "error" ? "error  " : "warning"} ${f.code}: ${f.structure}${f.offset === undefined ? "" : ` @${f.offset}`}: ${f.message}`);
  return `${lines.join("\n")}\n`;
}

export const checkCommand: Command = { name: "check", summary: "check an image's VHD footer and ext4 structures (no e2fsprogs needed)", usage: USAGE, run: runCheck };
