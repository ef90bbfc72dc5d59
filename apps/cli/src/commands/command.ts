import type { CliIO } from "../io.js";

/**
 * One `lcow` subcommand. `run` gets the words after the command name and returns the exit code;
 * it reports its own failures (so it can honour its `--json`) and throws only `UsageError`,
 * which the dispatcher prints with the command's usage and turns into exit code 2.
 */
export interface Command {
  /** The word that selects it: `lcow <name>`. */
  name: string;
  /** One line for `lcow --help`. */
  summary: string;
  /** Full help, printed by `lcow <name> --help` and after a usage error. */
  usage: string;
  run(argv: string[], io: CliIO): Promise<number>;
}
