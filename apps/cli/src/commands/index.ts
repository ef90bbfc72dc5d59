import type { Command } from "./command.js";
import { convertCommand } from "./convert.js";
import { checkCommand } from "./check.js";
import { exportCommand } from "./export.js";
import { inspectCommand } from "./inspect.js";
import { STORE_COMMANDS } from "./store.js";
import { sandboxCommand } from "./sandbox.js";

export type { Command } from "./command.js";

/**
 * Every `lcow` subcommand, in the order `lcow --help` lists them. A new command (`export`,
 * `inspect`, `check`, `sandbox`, ...) is one module exporting a `Command` plus one line here.
 */
export const COMMANDS: readonly Command[] = [convertCommand, exportCommand, inspectCommand, checkCommand, sandboxCommand, ...STORE_COMMANDS];
