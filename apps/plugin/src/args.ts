// Command-line flags of `lcow-plugin`.

import { parseArgs } from "node:util";
import { isAbsolute, join, resolve } from "node:path";
import { PluginError } from "./errors.js";
import type { LogLevel } from "./log.js";

/** The parsed command line. */
export interface PluginArgs {
  /** Layer store home; if not provided, `GraphDriver.Init`'s `Home` (and a plugin restart needs Init again, which dockerd never sends). */
  root: string | undefined;
  /** Where to listen. If not provided, `/run/docker/plugins/lcow.sock` (`\\.\pipe\lcow` on Windows). */
  socket: string;
  /** A spec file to write (and remove at exit) pointing at the socket, e.g. `/etc/docker/plugins/lcow.spec`. */
  specFile: string | undefined;
  /** `lcow.*` options (`--storage-opt` and `--mounter`), applied before Init's. */
  options: string[];
  logLevel: LogLevel;
  help: boolean;
  version: boolean;
}

export const USAGE = `Usage: lcow-plugin [--root DIR] [--mounter none|kernel|uvm] [options]

Serves lcow as a Docker graphdriver plugin (run dockerd --experimental -s lcow).

Options:
  --root DIR             layer store home (recommended; without it the home comes from
                         GraphDriver.Init, which dockerd does not resend after a plugin restart)
  --mounter NAME         what Get mounts with: none (layer folder), kernel (loop + overlayfs, Linux, root)
  --storage-opt K=V      an lcow.* option, as dockerd's --storage-opt (repeatable)
  --socket PATH          listen here (default /run/docker/plugins/lcow.sock; \\\\.\\pipe\\lcow on Windows)
  --spec-file PATH       also write a plugin spec file pointing at the socket
                         (e.g. /etc/docker/plugins/lcow.spec); removed at exit
  --log-level LEVEL      debug, info, warn or error (default info); logs are JSON lines on stderr
  -h, --help             this text
  --version              print the version
`;

export function defaultSocket(platform: NodeJS.Platform = process.platform): string {
  return platform === "win32" ? "\\\\.\\pipe\\lcow" : "/run/docker/plugins/lcow.sock";
}

/** Parses argv (without node and the script); throws `INVALID_ARGUMENT` naming the bad flag. */
export function parsePluginArgs(argv: readonly string[], platform: NodeJS.Platform = process.platform): PluginArgs {
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        root: { type: "string" },
        mounter: { type: "string" },
        "storage-opt": { type: "string", multiple: true },
        socket: { type: "string" },
        "spec-file": { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new PluginError("INVALID_ARGUMENT", err instanceof Error ? err.message : String(err));
  }
  const options = [...((values["storage-opt"] as string[] | undefined) ?? [])];
  for (const opt of options) {
    if (!/^lcow\.[a-z]+=/i.test(opt)) throw new PluginError("INVALID_ARGUMENT", `--storage-opt ${opt}: expected lcow.<name>=<value>`);
  }
  const mounter = values.mounter as string | undefined;
  if (mounter !== undefined) options.push(`lcow.mounter=${mounter}`);
  const logLevel = (values["log-level"] as string | undefined) ?? "info";
  if (!["debug", "info", "warn", "error"].includes(logLevel)) throw new PluginError("INVALID_ARGUMENT", `--log-level ${logLevel}: expected debug, info, warn or error`);
  const root = values.root as string | undefined;
  return {
    root: root === undefined ? undefined : resolve(root),
    socket: (values.socket as string | undefined) ?? defaultSocket(platform),
    specFile: values["spec-file"] as string | undefined,
    options,
    logLevel: logLevel as LogLevel,
    help: values.help === true,
    version: values.version === true,
  };
}

/**
 * The text of a plugin spec file for `socket`: `unix://<abs path>` on Unix, `npipe://<pipe>` for
 * a Windows named pipe (go-plugins-helpers writes the same), which dockerd parses as a URL.
 */
export function specFileText(socket: string): string {
  if (socket.startsWith("\\\\.\\pipe\\") || socket.startsWith("//./pipe/")) return `npipe://${socket.replaceAll("\\", "/")}\n`;
  return `unix://${isAbsolute(socket) ? socket : join(process.cwd(), socket)}\n`;
}
