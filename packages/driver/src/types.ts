import type { Change, LayerKind } from "./content.js";

/** Per-call options of `create` and `createReadWrite` (Docker's `CreateOpts`). */
export interface CreateOptions {
  /** SELinux label; accepted and ignored (as the seed did). */
  mountLabel?: string;
  /** Per-layer storage options; `createReadWrite` honours `lcow.sandboxsize` (GiB, >= 20). Anything else is INVALID_ARGUMENT. */
  storageOpt?: Readonly<Record<string, string>>;
}

/** One layer, as `layers()` lists it. */
export interface LayerInfo {
  id: string;
  kind: LayerKind;
  /** The parent's id; undefined for a base layer. */
  parent: string | undefined;
  /** Ancestor ids, nearest parent first. */
  chain: string[];
  /** Bytes of the layer's image file (layer.vhd or sandbox.vhdx; 0 when empty). */
  fileBytes: number;
  /** True when `get` holds references to it. */
  mounted: boolean;
}

/**
 * The graph-driver operations (Docker's `graphdriver.ProtoDriver` + `DiffDriver`), the
 * contract the conformance suite (test/conformance.ts) checks every implementation against.
 * Every id argument is validated (INVALID_ARGUMENT); every failure is a `DriverError`.
 */
export interface LayerStore {
  /** The store's folder. */
  readonly home: string;
  /** True when `diff` of a read-only layer replays the applied tar byte for byte (the plugin's `ReproducesExactDiffs`). */
  readonly reproducesExactDiffs: boolean;
  /** Creates an empty read-only layer on `parent` (ALREADY_EXISTS, NOT_FOUND for a missing parent). */
  create(id: string, parent?: string, options?: CreateOptions): Promise<void>;
  /** Creates a writable layer: a copy of the cached blank sandbox of the configured size. */
  createReadWrite(id: string, parent?: string, options?: CreateOptions): Promise<void>;
  /** Removes a layer (releasing its mounts first); a missing id is not an error. FAILED_PRECONDITION while it has children. */
  remove(id: string): Promise<void>;
  /** True when the layer's folder exists. */
  exists(id: string): Promise<boolean>;
  /** Key/value pairs for `docker info`. */
  status(): Promise<Array<[string, string]>>;
  /** `dir`, `type`, `file`, `size`, `parent` of a layer (NOT_FOUND when missing). */
  getMetadata(id: string): Promise<Record<string, string>>;
  /** Releases every mount and sweeps leftovers; the store stays usable. Calling it twice is fine. */
  cleanup(): Promise<void>;
  /** Writes the layer's content from a tar; returns the content's size. FAILED_PRECONDITION when it has content already. */
  applyDiff(id: string, parent: string | undefined, tar: string | AsyncIterable<Uint8Array>): Promise<number>;
  /** The layer's content as a tar (opened before this resolves). `parent` must be "" or the layer's parent. */
  diff(id: string, parent?: string): Promise<AsyncIterable<Uint8Array>>;
  /** Docker's changes of the layer against its parent chain. */
  changes(id: string, parent?: string): Promise<Change[]>;
  /** Size of the layer's own content, as Docker counts it. */
  diffSize(id: string, parent?: string): Promise<number>;
  /** Reference-counted union view of the layer and its chain; returns its path. */
  get(id: string, mountLabel?: string): Promise<string>;
  /** Drops one reference; the last one unmounts. FAILED_PRECONDITION when not mounted. */
  put(id: string): Promise<void>;
}
