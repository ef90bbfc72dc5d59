// What a union is made of, the same for every mounter: the layer folder's own disk and the
// non-empty folders of its chain, nearest first.
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { LAYER_FILE, SANDBOX_FILE } from "../layout.js";
import type { MountRequest } from "./types.js";

export type DiskKind = "layer" | "sandbox";

/** A layer folder that contributes a disk to a union. */
export interface UnionLayer {
  dir: string;
  kind: DiskKind;
  /** Its layer.vhd or sandbox.vhdx. */
  file: string;
}

/**
 * What a layer folder holds: a read-only layer, a writable one, or undefined for an empty
 * layer (created, nothing applied). Errors other than "not there" are thrown, not taken for empty.
 */
export async function diskKind(dir: string): Promise<DiskKind | undefined> {
  for (const [name, kind] of [[LAYER_FILE, "layer"], [SANDBOX_FILE, "sandbox"]] as const) {
    try {
      if ((await stat(join(dir, name))).isFile()) return kind;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" && (err as NodeJS.ErrnoException).code !== "ENOTDIR") throw err;
    }
  }
  return undefined;
}

const layer = (dir: string, kind: DiskKind): UnionLayer => ({ dir, kind, file: join(dir, kind === "layer" ? LAYER_FILE : SANDBOX_FILE) });

/**
 * The disks of `request`'s union: `own` is the layer's own kind (a sandbox is the writable top,
 * not a lower); `lowers` are the read-only layers below it, nearest first: the layer itself when
 * it is read-only, then every non-empty folder of its chain (a sandbox there is a snapshot whose
 * upper/ serves as a lower dir).
 */
export async function unionLayers(request: MountRequest): Promise<{ own: UnionLayer | undefined; lowers: UnionLayer[] }> {
  const ownKind = await diskKind(request.layerDir);
  const own = ownKind && layer(request.layerDir, ownKind);
  const lowers = own?.kind === "layer" ? [own] : [];
  for (const dir of request.chain) {
    const kind = await diskKind(dir);
    if (kind) lowers.push(layer(dir, kind));
  }
  return { own, lowers };
}
