import { DriverError } from "./errors.js";

/** The mounters `lcow.mounter` can name. */
export type MounterName = "none" | "kernel" | "uvm";

/** The driver's parsed `lcow.*` options (Docker's `--storage-opt`). */
export interface LcowOptions {
  /** `lcow.globalmode`: one shared service VM (true) or one per operation/id (false). If not provided, false. */
  globalMode: boolean;
  /** `lcow.sandboxsize`: default size of every writable layer, in GiB (minimum 20). If not provided, 20. */
  sandboxSizeGB: number;
  /** `lcow.kirdpath`: folder holding the utility VM's kernel and initrd. If not provided, `%ProgramFiles%\Linux Containers`. */
  kirdPath: string | undefined;
  /** `lcow.kernel`: kernel file name in `kirdPath`. If not provided, `kernel`. */
  kernel: string;
  /** `lcow.initrd`: initrd file name in `kirdPath`. If not provided, `initrd.img`. */
  initrd: string;
  /** `lcow.bootparameters`: extra kernel command line. If not provided, empty. */
  bootParameters: string;
  /** `lcow.timeout`: utility VM operation timeout in seconds (>= 0). If not provided, 300. */
  timeoutSeconds: number;
  /** `lcow.mounter`: what `get` uses to build the union view. If not provided, `none` (see README). */
  mounter: MounterName;
  /**
   * `lcow.guest` (ours): on Linux, the guest agent the `uvm` mounter starts as its utility VM, a
   * path to apps/guest's `main.js` (run with this Node) or to an executable. If not provided, the
   * environment variable `LCOW_GUEST`, else unset (the `uvm` mounter then fails on Linux).
   */
  guest: string | undefined;
}

/** Minimum and default writable layer size in GiB (Docker: `client.DefaultVhdxSizeGB`). */
export const MIN_SANDBOX_GB = 20;

export const DEFAULT_OPTIONS: Readonly<LcowOptions> = Object.freeze({
  globalMode: false,
  sandboxSizeGB: MIN_SANDBOX_GB,
  kirdPath: undefined,
  kernel: "kernel",
  initrd: "initrd.img",
  bootParameters: "",
  timeoutSeconds: 300,
  mounter: "none",
  guest: undefined,
});

/** Options as Docker sends them (`["lcow.globalmode=true", ...]`) or as a record. */
export type OptionsInput = readonly string[] | Readonly<Record<string, string>>;

const bad = (key: string, value: string, why: string): never => {
  throw new DriverError("INVALID_ARGUMENT", `option ${key}=${JSON.stringify(value)}: ${why}`);
};

function parseBool(key: string, value: string): boolean {
  // Go's strconv.ParseBool, which the seed used.
  if (["1", "t", "T", "TRUE", "true", "True"].includes(value)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(value)) return false;
  return bad(key, value, "must be true or false");
}

function parseUint(key: string, value: string, max = 2 ** 32 - 1): number {
  if (!/^[0-9]+$/.test(value)) bad(key, value, "must be a whole number");
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n > max) bad(key, value, `must be at most ${max}`);
  return n;
}

/** Parses `lcow.sandboxsize` (GiB, >= 20), as the seed's CreateReadWrite did. */
export function parseSandboxSize(value: string, key = "lcow.sandboxsize"): number {
  const n = parseUint(key, value);
  if (n < MIN_SANDBOX_GB) bad(key, value, `must be at least ${MIN_SANDBOX_GB} (GB)`);
  return n;
}

/** Splits `k=v` strings; a record passes through. Keys are matched case-insensitively, as the seed did. */
function entries(input: OptionsInput): Array<[string, string]> {
  if (Array.isArray(input)) {
    return (input as readonly string[]).map((item) => {
      const at = typeof item === "string" ? item.indexOf("=") : -1;
      if (at <= 0) throw new DriverError("INVALID_ARGUMENT", `option ${JSON.stringify(item)}: expected key=value`);
      return [item.slice(0, at).trim().toLowerCase(), item.slice(at + 1)];
    });
  }
  return Object.entries(input as Record<string, string>).map(([k, v]) => {
    if (typeof v !== "string") throw new DriverError("INVALID_ARGUMENT", `option ${k}: value must be a string`);
    return [k.trim().toLowerCase(), v];
  });
}

/**
 * Parses the driver's options. Every key must be one of the `lcow.*` options below; an unknown
 * key or a malformed value is INVALID_ARGUMENT naming it. A repeated key: the last wins.
 */
export function parseOptions(input: OptionsInput = []): LcowOptions {
  const out: LcowOptions = { ...DEFAULT_OPTIONS, guest: process.env.LCOW_GUEST || undefined };
  for (const [key, value] of entries(input)) {
    switch (key) {
      case "lcow.globalmode":
        out.globalMode = parseBool(key, value);
        break;
      case "lcow.sandboxsize":
        out.sandboxSizeGB = parseSandboxSize(value, key);
        break;
      case "lcow.kirdpath":
        if (value === "") bad(key, value, "must not be empty");
        out.kirdPath = value;
        break;
      case "lcow.kernel":
        if (value === "") bad(key, value, "must not be empty");
        out.kernel = value;
        break;
      case "lcow.initrd":
        if (value === "") bad(key, value, "must not be empty");
        out.initrd = value;
        break;
      case "lcow.bootparameters":
        out.bootParameters = value;
        break;
      case "lcow.timeout":
        out.timeoutSeconds = parseUint(key, value);
        break;
      case "lcow.mounter":
        if (value !== "none" && value !== "kernel" && value !== "uvm") bad(key, value, "must be none, kernel or uvm");
        out.mounter = value as MounterName;
        break;
      case "lcow.guest":
        if (value === "") bad(key, value, "must not be empty");
        out.guest = value;
        break;
      default:
        throw new DriverError("INVALID_ARGUMENT", `unknown option ${key} (known: lcow.globalmode, lcow.sandboxsize, lcow.kirdpath, lcow.kernel, lcow.initrd, lcow.bootparameters, lcow.timeout, lcow.mounter, lcow.guest)`);
    }
  }
  return out;
}

/**
 * Parses per-layer storage options of `createReadWrite` (Docker's `StorageOpt`): only
 * `lcow.sandboxsize` is meaningful per layer; anything else is INVALID_ARGUMENT naming it.
 */
export function parseStorageOpt(opt: Readonly<Record<string, string>> | undefined): { sandboxSizeGB?: number } {
  const out: { sandboxSizeGB?: number } = {};
  for (const [k, v] of Object.entries(opt ?? {})) {
    const key = k.trim().toLowerCase();
    if (key === "lcow.sandboxsize") out.sandboxSizeGB = parseSandboxSize(v, key);
    else throw new DriverError("INVALID_ARGUMENT", `unknown storage option ${k} for a writable layer (known: lcow.sandboxsize)`);
  }
  return out;
}
