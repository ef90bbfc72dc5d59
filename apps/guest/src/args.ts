// `lcow-guest serve` flags: the contract with the host-side launcher
// (packages/gcs-client/src/uvm/linux-launcher.ts), see README.md.
import { isAbsolute } from "node:path";
import { parseEndpoint, parseStdioBase, type Endpoint, type StdioBase } from "./endpoint.js";
import { GuestError } from "./errors.js";
import { DEFAULT_LOG_LEVEL, LogLevel } from "./log.js";

export interface ServeOptions {
  bridge: Endpoint;
  stdio: StdioBase;
  scsiDir: string;
  stateDir: string;
  isolated: boolean;
  logLevel: LogLevel;
}

export const SERVE_USAGE = `usage: lcow-guest serve --bridge unix:/path.sock|tcp:HOST:PORT --stdio unix:/dir|tcp:HOST
                        --scsi-dir DIR --state-dir DIR [--isolated] [--log-level error|warn|info|debug]
       lcow-guest tool tar2vhd|vhd2tar|exportSandbox|createSandbox [flags]`;

function bad(why: string): never {
  throw new GuestError("INVALID_ARGUMENT", why);
}

/** Parses `serve`'s arguments (`--flag value` or `--flag=value`); anything unknown or missing is INVALID_ARGUMENT. */
export function parseServeArgs(argv: readonly string[]): ServeOptions {
  const values = new Map<string, string>();
  let isolated = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--isolated") {
      isolated = true;
      continue;
    }
    const m = /^--(bridge|stdio|scsi-dir|state-dir|log-level)(?:=(.*))?$/.exec(arg);
    if (!m) bad(`unknown argument ${JSON.stringify(arg)}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) bad(`--${m[1]} needs a value`);
    values.set(m[1]!, value);
  }
  const need = (name: string): string => values.get(name) ?? bad(`--${name} is required`);
  const dir = (name: string): string => {
    const d = need(name);
    return isAbsolute(d) ? d : bad(`--${name} ${JSON.stringify(d)} must be an absolute path`);
  };
  const level = values.get("log-level") ?? DEFAULT_LOG_LEVEL;
  if (!Object.hasOwn(LogLevel, level)) bad(`--log-level ${JSON.stringify(level)}: expected one of ${Object.keys(LogLevel).join(", ")}`);
  return {
    bridge: parseEndpoint(need("bridge")),
    stdio: parseStdioBase(need("stdio")),
    scsiDir: dir("scsi-dir"),
    stateDir: dir("state-dir"),
    isolated,
    logLevel: level as LogLevel,
  };
}
