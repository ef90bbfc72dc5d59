// VHDX support lands with issue 5; until then opening a VHDX says so.
import { VhdError } from "../errors.js";
import type { BlockSource } from "../io/block-source.js";

/** Opens a VHDX file as a read-only disk. */
export async function openVhdxSource(path: string): Promise<{ source: BlockSource; notes: string[] }> {
  throw new VhdError("FORMAT_INVALID", `${path}: VHDX images are not supported yet`, { path });
}
