// `checkStore`: the store-level counterpart of `checkImage` (`lcow check --root`).
import { readFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { checkImage } from "@lcow/vhd";
import { listDir, lstatMaybe } from "./fsutil.js";
import { CACHE_DIR, CHAIN_FILE, isTempName, LAYER_FILE, LAYER_FOLDER_FILES, LOCKS_DIR, MOUNTS_DIR, REMOVING_SUFFIX, SANDBOX_FILE, SCRATCH_DIR, TARSPLIT_FILE, validateId } from "./layout.js";

/** Stable codes of `checkStore` problems. */
export const StoreProblemCode = {
  /** A layer image fails `checkImage` (or cannot be opened). */
  IMAGE_INVALID: "IMAGE_INVALID",
  /** layerchain.json is not a JSON array of folders, names a missing layer, or disagrees with its parent's chain. */
  CHAIN_INVALID: "CHAIN_INVALID",
  /** A folder holds both layer.vhd and sandbox.vhdx, or layer.tarsplit without layer.vhd. */
  LAYER_INVALID: "LAYER_INVALID",
  /** Something in the store that no operation leaves when it completes: a temporary, a `-removing` folder, an unknown file. */
  LEFTOVER: "LEFTOVER",
  /** A mount record that is damaged, interrupted, or names a missing layer. */
  MOUNT_INVALID: "MOUNT_INVALID",
} as const;
export type StoreProblemCode = (typeof StoreProblemCode)[keyof typeof StoreProblemCode];

export interface StoreProblem {
  code: StoreProblemCode;
  /** The path the problem is about. */
  path: string;
  /** The layer, when there is one. */
  id?: string;
  message: string;
}

export interface StoreCheckReport {
  /** True when there are no problems. */
  ok: boolean;
  problems: StoreProblem[];
  /** Layers checked, by kind. */
  layers: { layer: number; sandbox: number; empty: number };
}

export interface StoreCheckOptions {
  /** Skip `checkImage` of each layer's image (structure only). If not provided, false. */
  skipImages?: boolean;
}

/**
 * Checks a layer store without changing it: every layer image passes `checkImage`; every chain
 * is an array of existing layer folders of this store whose tail is the parent's own chain; no
 * folder holds both kinds of image or a tar-split record without its image; and nothing is
 * left over (temporaries, `-removing` folders, unknown files, interrupted mount records). Run
 * it on an idle store (after `init`): a live operation's temporaries are reported as leftovers.
 */
export async function checkStore(home: string, options: StoreCheckOptions = {}): Promise<StoreCheckReport> {
  const root = resolve(home);
  const problems: StoreProblem[] = [];
  const layers = { layer: 0, sandbox: 0, empty: 0 };
  const add = (code: StoreProblemCode, path: string, message: string, id?: string) => problems.push(id === undefined ? { code, path, message } : { code, path, message, id });
  const chains = new Map<string, string[]>();

  for (const name of (await listDir(root)).sort()) {
    const path = join(root, name);
    if (name === CACHE_DIR || name === SCRATCH_DIR || name === LOCKS_DIR || name === MOUNTS_DIR) continue;
    if (name.endsWith(REMOVING_SUFFIX) || isTempName(name)) {
      add("LEFTOVER", path, `${name}: left by an interrupted operation`);
      continue;
    }
    try {
      validateId(name);
    } catch {
      add("LEFTOVER", path, `${name}: not a layer id`);
      continue;
    }
    const st = await lstatMaybe(path);
    if (!st?.isDirectory()) {
      add("LEFTOVER", path, `${name}: not a folder`);
      continue;
    }
    const entries = await listDir(path);
    for (const e of entries) if (!LAYER_FOLDER_FILES.has(e)) add("LEFTOVER", join(path, e), `layer ${name}: unexpected ${e}`, name);
    const hasLayer = entries.includes(LAYER_FILE);
    const hasSandbox = entries.includes(SANDBOX_FILE);
    if (hasLayer && hasSandbox) add("LAYER_INVALID", path, `layer ${name}: holds both ${LAYER_FILE} and ${SANDBOX_FILE}`, name);
    if (entries.includes(TARSPLIT_FILE) && !hasLayer) add("LAYER_INVALID", path, `layer ${name}: ${TARSPLIT_FILE} without ${LAYER_FILE}`, name);
    layers[hasLayer ? "layer" : hasSandbox ? "sandbox" : "empty"]++;
    if (!options.skipImages) {
      for (const file of [hasLayer ? LAYER_FILE : undefined, hasSandbox ? SANDBOX_FILE : undefined]) {
        if (!file) continue;
        try {
          const report = await checkImage(join(path, file));
          const errors = report.findings.filter((f) => f.severity === "error");
          if (!report.ok) add("IMAGE_INVALID", join(path, file), `layer ${name}: ${file}: ${errors.slice(0, 3).map((f) => f.message).join("; ")}`, name);
        } catch (err) {
          add("IMAGE_INVALID", join(path, file), `layer ${name}: ${file}: ${(err as Error).message}`, name);
        }
      }
    }
    if (entries.includes(CHAIN_FILE)) {
      try {
        const chain = JSON.parse(await readFile(join(path, CHAIN_FILE), "utf8")) as unknown;
        if (chain !== null && (!Array.isArray(chain) || !chain.every((d) => typeof d === "string"))) throw new Error("not an array of folders");
        chains.set(name, (chain as string[] | null) ?? []);
      } catch (err) {
        add("CHAIN_INVALID", join(path, CHAIN_FILE), `layer ${name}: ${CHAIN_FILE}: ${(err as Error).message}`, name);
      }
    } else chains.set(name, []);
  }

  // Chains: every entry a layer of this store, and the chain = [parent, ...parent's chain].
  for (const [id, chain] of chains) {
    const file = join(root, id, CHAIN_FILE);
    const missing = chain.filter((d) => resolve(d) !== join(root, basename(d)) || !chains.has(basename(d)));
    if (missing.length > 0) {
      add("CHAIN_INVALID", file, `layer ${id}: chain names folders that are not layers of this store: ${missing.join(", ")}`, id);
      continue;
    }
    const parent = chain[0];
    if (parent !== undefined) {
      const expected = chains.get(basename(parent)) ?? [];
      if (JSON.stringify(chain.slice(1)) !== JSON.stringify(expected)) add("CHAIN_INVALID", file, `layer ${id}: chain does not continue with its parent's chain`, id);
    }
    if (chain.includes(join(root, id))) add("CHAIN_INVALID", file, `layer ${id}: chain contains the layer itself`, id);
  }

  // Mount records and work folders.
  const mounts = join(root, MOUNTS_DIR);
  const names = await listDir(mounts);
  for (const name of names.sort()) {
    const path = join(mounts, name);
    if (isTempName(name)) {
      add("LEFTOVER", path, `${name}: left by an interrupted operation`);
      continue;
    }
    const id = name.endsWith(".json") ? name.slice(0, -".json".length) : name;
    if (!name.endsWith(".json")) {
      if (!names.includes(`${name}.json`)) add("LEFTOVER", path, `mount work folder ${name} without a mount record`, id);
      continue;
    }
    try {
      const r = JSON.parse(await readFile(path, "utf8")) as { status?: unknown; refs?: unknown };
      if (r.status !== "mounted") add("MOUNT_INVALID", path, `mount of ${id}: interrupted (${String(r.status)})`, id);
      if (!chains.has(id)) add("MOUNT_INVALID", path, `mount of ${id}: layer does not exist`, id);
    } catch (err) {
      add("MOUNT_INVALID", path, `mount record of ${id}: ${(err as Error).message}`, id);
    }
  }
  for (const dir of [join(root, LOCKS_DIR), join(root, CACHE_DIR), join(root, SCRATCH_DIR)]) {
    for (const name of await listDir(dir)) if (isTempName(name) || name.endsWith(".stale")) add("LEFTOVER", join(dir, name), `${name}: left by an interrupted operation`);
  }
  return { ok: problems.length === 0, problems, layers };
}
