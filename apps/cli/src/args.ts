// Argument parsing helpers shared by every command. node:util's parseArgs keeps the CLI
// dependency-free; these wrappers turn its errors into our two failure classes.

import { parseArgs, type ParseArgsConfig } from "node:util";
import { CliError, UsageError } from "./errors.js";

/** Option table in node:util's `parseArgs` shape, plus a `--help` every command gets. */
export type OptionSpec = NonNullable<ParseArgsConfig["options"]>;

/** Parsed flags and positionals of one command line. */
export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/**
 * Parses `argv` (without the command name) against `options`. Unknown flags, a missing flag
 * value or a value given to a boolean flag throw a `UsageError` (exit 2). `--no-<flag>` for a
 * boolean flag declared as `no-<flag>` works as any other flag. A lone `-` is a positional
 * (stdin), as Unix tools treat it.
 */
export function parseCommandArgs(argv: string[], options: OptionSpec): ParsedArgs {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    return { values: values as ParsedArgs["values"], positionals };
  } catch (err) {
    // parseArgs' messages are good ("Unknown option '--frob'") but long-winded about `--`; keep the first sentence.
    const message = err instanceof Error ? (err.message.split(". ")[0] ?? err.message) : String(err);
    throw new UsageError(message.replace(/\.$/, ""));
  }
}

// Binary multiples, as Docker's `lcow.sandboxsize` and hcsshim's MaximumDiskSize mean them:
// "128G" is 128 GiB. Decimal SI units are not offered, so there is no GB/GiB ambiguity to get wrong.
const UNITS: Record<string, number> = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 };

/**
 * Parses a size such as `128G`, `512M`, `1T`, `2GiB`, `1.5g`, `64KiB` or plain bytes `4096`
 * (K, M, G, T, P are powers of 1024, with an optional `B`/`iB` suffix, case-insensitive).
 * Throws a `CliError` with code `INVALID_ARGUMENT` naming `flag` for anything else, for zero,
 * for a fraction of a byte and for sizes beyond 2^53 bytes.
 */
export function parseSize(text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(text);
  const bad = (why: string): never => {
    throw new CliError("INVALID_ARGUMENT", `invalid ${flag} '${text}': ${why}`);
  };
  if (m === null) return bad("expected a size like 128G, 512M, 1T, 2GiB or a number of bytes");
  const [, num = "", unit = ""] = m;
  const bytes = Number(num) * (UNITS[unit.toUpperCase()] as number);
  if (!Number.isSafeInteger(bytes)) return bad(Number.isInteger(bytes) ? "too large" : "not a whole number of bytes");
  if (bytes <= 0) return bad("must be greater than zero");
  return bytes;
}

/**
 * Parses a non-negative whole number of seconds since the epoch for `flag`; throws
 * `INVALID_ARGUMENT` otherwise. The ext4 superblock and VHD footer hold 32-bit times, so larger
 * values are refused here rather than silently wrapped.
 */
export function parseTimestamp(text: string, flag: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 0xffff_ffff) {
    throw new CliError("INVALID_ARGUMENT", `invalid ${flag} '${text}': expected whole seconds since 1970 (0 to 4294967295)`);
  }
  return Number(text);
}

/** Accepts an RFC 4122 textual UUID for `flag` (any case), returned lower-case; throws `INVALID_ARGUMENT` otherwise. */
export function parseUuid(text: string, flag: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text)) {
    throw new CliError("INVALID_ARGUMENT", `invalid ${flag} '${text}': expected a UUID like 0f8fad5b-d9cb-469f-a165-70867728950e`);
  }
  return text.toLowerCase();
}
