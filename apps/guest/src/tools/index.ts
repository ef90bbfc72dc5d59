// `lcow-guest tool <name> [flags]`: the 2017 opengcs in-VM tools (spec opengcs-client-2017
// §3.3), run by the guest as child processes when ExecuteProcess names one of them, with the
// relayed stdin/stdout as fd 0/1. They stream: the tar, VHD and VHDX work is @lcow/vhd's, and a
// temporary file (in -tmpdir, which the guest points at its state dir) is used only where the
// format needs a seekable file, deleted before the tool exits. Exit 0 on success, 1 with one
// line on stderr on failure, 127 for an unknown tool.
import { tmpdir } from "node:os";
import { createSandboxTool } from "./create-sandbox.js";
import { ToolError } from "./errors.js";
import { exportSandboxTool } from "./export-sandbox.js";
import { parseFlags, type ParsedFlags } from "./flags.js";
import { tar2vhdTool } from "./tar2vhd.js";
import { TOOL_NAMES, UNKNOWN_TOOL_EXIT, type ToolName } from "./names.js";
import { vhd2tarTool } from "./vhd2tar.js";

export { TOOL_NAMES, UNKNOWN_TOOL_EXIT, type ToolName };

/** Flags every tool takes, with the 2017 defaults (tmpdir: ours is the system's). */
const COMMON_FLAGS = { fs: "ext4", whiteout: "overlay", vhd: "fixed", tmpdir: tmpdir(), logfile: "", loglevel: "info" };
/** Each tool's own flags. `-size` and `-file` of createSandbox are taken as the 2017 tool took them. */
const TOOL_FLAGS: Record<ToolName, Record<string, string>> = {
  tar2vhd: {},
  vhd2tar: {},
  exportSandbox: { path: "" },
  createSandbox: { size: "", file: "" },
};

/** What a tool gets: its parsed flags and the streams to use. */
export interface ToolContext {
  flags: ParsedFlags;
  stdin: NodeJS.ReadableStream & AsyncIterable<Buffer>;
  stdout: NodeJS.WritableStream;
}

const RUNNERS: Record<ToolName, (tool: string, ctx: ToolContext) => Promise<void>> = {
  tar2vhd: tar2vhdTool,
  vhd2tar: vhd2tarTool,
  exportSandbox: exportSandboxTool,
  createSandbox: createSandboxTool,
};

/** Checks the flags all tools share: only the values the 2017 tools supported work. */
function checkCommon(tool: string, flags: ParsedFlags): void {
  const only = (name: string, value: string) => {
    if (flags.values[name] !== value) throw new ToolError(`${tool}: -${name} ${JSON.stringify(flags.values[name])} is not supported (only ${value})`);
  };
  only("fs", "ext4");
  only("whiteout", "overlay");
  only("vhd", "fixed");
  if (flags.rest.length > 0) throw new ToolError(`${tool}: unexpected arguments ${JSON.stringify(flags.rest)}`);
}

/** Runs tool `name` with `argv` on this process's stdin/stdout; resolves with the exit status. Errors go to stderr. */
export async function runTool(name: string, argv: readonly string[]): Promise<number> {
  if (!(TOOL_NAMES as readonly string[]).includes(name)) {
    process.stderr.write(`lcow-guest: unknown tool ${JSON.stringify(name)} (tools: ${TOOL_NAMES.join(", ")})\n`);
    return UNKNOWN_TOOL_EXIT;
  }
  const tool = name as ToolName;
  try {
    const flags = parseFlags(tool, argv, { values: { ...COMMON_FLAGS, ...TOOL_FLAGS[tool] } });
    checkCommon(tool, flags);
    await RUNNERS[tool](tool, { flags, stdin: process.stdin, stdout: process.stdout });
    return 0;
  } catch (err) {
    const message = err instanceof ToolError ? err.message : `${tool}: ${err instanceof Error ? err.message : String(err)}`;
    process.stderr.write(`${message}\n`);
    return 1;
  }
}
