// The `lcow-guest` executable: `serve` runs the guest agent; `tool <name>` runs one of the 2017
// in-VM tools (also when invoked through a link named after the tool, like gcstools).
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { parseServeArgs, SERVE_USAGE } from "./args.js";
import { isGuestError } from "./errors.js";
import { serve } from "./serve.js";
import { TOOL_NAMES } from "./tools/names.js";

const mainScript = fileURLToPath(import.meta.url);

/** Waits until everything written to stdout has been handed to the kernel. */
function flushStdout(): Promise<void> {
  return new Promise((resolve) => process.stdout.write("", () => resolve()));
}

async function runTool(name: string, argv: readonly string[]): Promise<number> {
  // Loaded on demand: the tools pull in the image formats, which `serve` does not need.
  const { runTool } = await import("./tools/index.js");
  const code = await runTool(name, argv);
  await flushStdout();
  return code;
}

async function main(argv: readonly string[]): Promise<number> {
  const invokedAs = basename(process.argv[1] ?? "");
  if ((TOOL_NAMES as readonly string[]).includes(invokedAs)) return runTool(invokedAs, argv);
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      try {
        return await serve(parseServeArgs(rest), mainScript);
      } catch (err) {
        if (!isGuestError(err) || err.code !== "INVALID_ARGUMENT") throw err;
        process.stderr.write(`lcow-guest: ${err.message}\n${SERVE_USAGE}\n`);
        return 2;
      }
    case "tool":
      return runTool(rest[0] ?? "", rest.slice(1));
    case "--help":
    case "-h":
    case "help":
      process.stdout.write(`${SERVE_USAGE}\n`);
      return 0;
    default:
      process.stderr.write(`lcow-guest: unknown command ${JSON.stringify(command ?? "")}\n${SERVE_USAGE}\n`);
      return 2;
  }
}

// Exit explicitly: a released guest may still hold handles (a paused socket, signal listeners).
process.exit(await main(process.argv.slice(2)));
