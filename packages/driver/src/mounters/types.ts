// The contract between the driver core and a mounter (agreed with the kernel mounter's author:
// do not change the shape of MountState, MountRequest or Mounter without both sides).
import type { LcowOptions } from "../options.js";

/** JSON-serialisable record of what a mount holds (loop devices, helper pids, mount points), kept in the store. */
export type MountState = Record<string, unknown>;

export interface MountRequest {
  id: string;
  /** The layer's folder (<home>/<id>), holding layer.vhd or sandbox.vhdx. */
  layerDir: string;
  /** Ancestor layer folders, nearest parent first (from layerchain.json). */
  chain: string[];
  /** A folder inside the store the mounter may use for mount points and helper files (<home>/mounts/<id>/). */
  workDir: string;
}

export interface Mounter {
  readonly name: "none" | "kernel" | "uvm";
  /** Makes the union view and returns its path plus the state needed to undo it. */
  mount(request: MountRequest): Promise<{ path: string; state: MountState }>;
  /** Undoes a mount; must succeed (idempotently) even if parts are already gone. */
  unmount(id: string, state: MountState): Promise<void>;
  /**
   * Releases what the mounter holds between mounts (the `uvm` mounter's service VMs). Called by
   * the driver's `cleanup`, after every mount was released. Optional.
   */
  close?(): Promise<void>;
}

// ---- Additions around the agreed interface (they do not change it) ----
//
// Notes for mounter authors, from the driver core's side:
// - `mount` and `unmount` of one id are never called concurrently (the core holds the id's lock);
//   different ids are mounted in parallel.
// - A folder in `layerDir`/`chain` may hold neither layer.vhd nor sandbox.vhdx: an empty layer
//   (created, nothing applied). It contributes nothing to the union. A folder in `chain` may
//   hold sandbox.vhdx (a snapshot of a writable layer, as Docker's graphtest makes): its
//   `upper/` is then a lower layer.
// - If `mount` throws, the core calls `unmount(id, {})` once to clean up what it left.
// - After a crash in the middle of `mount` or `unmount`, the next `init` calls
//   `unmount(id, state)` with the last state recorded (`{}` when `mount` had not returned); the
//   mounter finds what is left from `workDir` (<home>/mounts/<id>/) and its own conventions.
// - After `unmount` resolves the core deletes `workDir`, refusing to cross a mount point.
// - A mount made before a reboot (a different boot id) is released with `unmount` at `init`.

/** What a mounter factory is given. */
export interface MounterContext {
  /** The store's home (absolute). */
  home: string;
  /** The driver's parsed options (timeouts, utility VM settings). */
  options: LcowOptions;
}

/** Builds a mounter; called at most once per driver and name, on first use. */
export type MounterFactory = (context: MounterContext) => Mounter | Promise<Mounter>;
