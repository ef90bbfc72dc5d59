// How every command reports a failure: one line on stderr, plus one JSON object on stdout with
// --json. Kept in one place so scripts can rely on the shape whatever the command.

import { toFailure, type CliFailure } from "./errors.js";
import type { CliIO } from "./io.js";

/** The `--json` body of a failed command. */
export interface JsonFailure {
  ok: false;
  code: string;
  message: string;
  path: string | null;
  offset: number | null;
}

/**
 * Prints `lcow: error: <message>` on stderr and, when `json`, the `JsonFailure` object on stdout.
 * Returns the normalised failure so the caller can pick an exit code.
 */
export function reportFailure(io: CliIO, err: unknown, json: boolean): CliFailure {
  const failure = toFailure(err);
  // One line, whatever the message holds, so `2>err.txt; wc -l` and log scrapers see one event.
  io.stderr.write(`lcow: error: ${failure.message.replace(/\s*\n\s*/g, " ")}\n`);
  if (json) {
    const body: JsonFailure = {
      ok: false,
      code: failure.code,
      message: failure.message,
      path: failure.path ?? null,
      offset: failure.offset ?? null,
    };
    io.stdout.write(`${JSON.stringify(body)}\n`);
  }
  return failure;
}
