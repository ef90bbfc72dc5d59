// Names of the on-disk layer store (DESIGN.md "On-disk layer store"), in one place.
import { join } from "node:path";
import { DriverError } from "./errors.js";

/** A read-only layer: ext4 image + 512-byte fixed VHD footer. */
export const LAYER_FILE = "layer.vhd";
/** A read-write layer: dynamic VHDX holding ext4 with `upper/` and `work/`. */
export const SANDBOX_FILE = "sandbox.vhdx";
/** What the applied tar held besides file contents, for byte-exact `diff`. */
export const TARSPLIT_FILE = "layer.tarsplit";
/** JSON array of absolute ancestor folders, nearest parent first; absent for a base layer. */
export const CHAIN_FILE = "layerchain.json";
/** Suffix of a folder being removed (seed: `<id>-removing`). */
export const REMOVING_SUFFIX = "-removing";
/** Blank sandbox/scratch cache. */
export const CACHE_DIR = "cache";
/** Per-service-VM scratch disks. */
export const SCRATCH_DIR = "scratch";
/** Mount records (`<id>.json`) and mounter work folders (`<id>/`). Ours, not the seed's. */
export const MOUNTS_DIR = "mounts";
/** Cross-process lock files (`<id>.lock`). Ours, not the seed's. */
export const LOCKS_DIR = "locks";
/** Names in `<home>` that are not layers. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([CACHE_DIR, SCRATCH_DIR, MOUNTS_DIR, LOCKS_DIR]);
/** The files a layer folder may hold. */
export const LAYER_FOLDER_FILES: ReadonlySet<string> = new Set([LAYER_FILE, SANDBOX_FILE, TARSPLIT_FILE, CHAIN_FILE]);

/** Temporary names all start with a dot and end in `.tmp` (`@lcow/vhd` uses the same pattern). */
export const isTempName = (name: string): boolean => name.startsWith(".") && name.endsWith(".tmp");

/**
 * Throws INVALID_ARGUMENT unless `id` can name a layer folder: not empty, at most 200 bytes, no
 * path separators or NUL, not `.`/`..`, not starting with a dot (our temporary names), not
 * ending in `-removing` (a removal in progress), and not a reserved folder name (`cache`, ...).
 * Docker's ids (64 hex digits, optionally `-init`) all pass.
 */
export function validateId(id: unknown, what = "layer id"): asserts id is string {
  const bad = (why: string): never => {
    throw new DriverError("INVALID_ARGUMENT", `${what} ${JSON.stringify(id)}: ${why}`, { id: typeof id === "string" ? id : undefined });
  };
  if (typeof id !== "string") bad("must be a string");
  const s = id as string;
  if (s === "") bad("must not be empty");
  if (Buffer.byteLength(s) > 200) bad("must be at most 200 bytes");
  if (/[/\\\0]/.test(s)) bad("must not contain a path separator or NUL");
  if (s === "." || s === "..") bad("must not be . or ..");
  if (s.startsWith(".")) bad("must not start with a dot (reserved for temporary files)");
  if (s.endsWith(REMOVING_SUFFIX)) bad(`must not end in ${REMOVING_SUFFIX} (reserved for removals in progress)`);
  if (RESERVED_NAMES.has(s)) bad("is a reserved folder name of the store");
}

/** Paths of one store. */
export class Layout {
  constructor(readonly home: string) {}
  dir(id: string): string {
    return join(this.home, id);
  }
  removing(id: string): string {
    return join(this.home, id + REMOVING_SUFFIX);
  }
  layerFile(id: string): string {
    return join(this.home, id, LAYER_FILE);
  }
  sandboxFile(id: string): string {
    return join(this.home, id, SANDBOX_FILE);
  }
  tarsplitFile(id: string): string {
    return join(this.home, id, TARSPLIT_FILE);
  }
  chainFile(id: string): string {
    return join(this.home, id, CHAIN_FILE);
  }
  get cache(): string {
    return join(this.home, CACHE_DIR);
  }
  get scratch(): string {
    return join(this.home, SCRATCH_DIR);
  }
  get mounts(): string {
    return join(this.home, MOUNTS_DIR);
  }
  get locks(): string {
    return join(this.home, LOCKS_DIR);
  }
  mountRecord(id: string): string {
    return join(this.home, MOUNTS_DIR, `${id}.json`);
  }
  mountWork(id: string): string {
    return join(this.home, MOUNTS_DIR, id);
  }
  lockFile(id: string): string {
    return join(this.home, LOCKS_DIR, `${id}.lock`);
  }
}
