// Flags of the 2017 in-VM tools, parsed as Go's `flag` package does: `-name value`,
// `-name=value`, `--name` the same as `-name`, boolean flags alone, `--` or the first
// non-flag word ends the flags.
import { ToolError } from "./errors.js";

export interface FlagSpec {
  /** Flags that take a value, with their defaults. */
  values: Record<string, string>;
  /** Flags that are booleans. */
  booleans?: readonly string[];
}

export interface ParsedFlags {
  values: Record<string, string>;
  booleans: Set<string>;
  rest: string[];
}

export function parseFlags(tool: string, argv: readonly string[], spec: FlagSpec): ParsedFlags {
  const values = { ...spec.values };
  const booleans = new Set<string>();
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      i++;
      break;
    }
    if (!arg.startsWith("-") || arg === "-") break;
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    if (spec.booleans?.includes(name)) {
      booleans.add(name);
      continue;
    }
    if (!Object.hasOwn(spec.values, name)) throw new ToolError(`${tool}: flag provided but not defined: -${name}`);
    if (eq >= 0) values[name] = body.slice(eq + 1);
    else {
      const value = argv[++i];
      if (value === undefined) throw new ToolError(`${tool}: flag needs an argument: -${name}`);
      values[name] = value;
    }
  }
  return { values, booleans, rest: argv.slice(i) };
}
