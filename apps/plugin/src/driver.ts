// The graph-driver operations as the HTTP layer sees them. The server is written against this
// interface only; `openDriver` (below) is the one place it meets `@lcow/driver`.

import type { Readable } from "node:stream";

/** A change between a layer and its parent, as Docker's archive package reports it. */
export interface LayerChange {
  /** Absolute path inside the layer, `/`-separated. */
  path: string;
  /** 0 modify, 1 add, 2 delete. */
  kind: 0 | 1 | 2;
}

/** Options of `create`/`createReadWrite`, as the daemon sends them. */
export interface CreateOptions {
  /** SELinux label for mounts; ignored by lcow (no labels on ext4 images we write). */
  mountLabel?: string;
  /** Per-layer options (`docker run --storage-opt size=...`). */
  storageOpt?: Record<string, string>;
}

/**
 * Graph-driver semantics (moby `graphdriver.ProtoDriver` + `DiffDriver`). Every method may
 * throw errors with a stable string `code`; the server maps them to the wire.
 */
export interface GraphDriver {
  /** Opens (creating if needed) the layer store at `home` with `lcow.*` options. Calling it again with the same arguments is a no-op. */
  init(home: string, options: readonly string[]): Promise<void>;
  /** Whether `diff` of a layer made by `applyDiff` returns the applied tar byte for byte. */
  readonly reproducesExactDiffs: boolean;
  /** Key/value pairs for `docker info`. */
  status(): Promise<[string, string][]>;
  /** Creates an empty read-only layer on `parent` (empty string: base layer). */
  create(id: string, parent: string, options: CreateOptions): Promise<void>;
  /** Creates a writable (container) layer on `parent`. */
  createReadWrite(id: string, parent: string, options: CreateOptions): Promise<void>;
  /** Removes a layer; an absent layer is an error with code `NOT_FOUND`. */
  remove(id: string): Promise<void>;
  /** Mounts (reference-counted) the union view of `id` and its chain and returns its path. */
  get(id: string, mountLabel: string): Promise<string>;
  /** Releases one `get`. */
  put(id: string): Promise<void>;
  exists(id: string): Promise<boolean>;
  getMetadata(id: string): Promise<Record<string, string>>;
  /** Releases every mount (daemon or plugin shutdown). Safe to call twice. */
  cleanup(): Promise<void>;
  /** The changes of `id` against `parent` as a tar stream. The stream is pull-based: it reads only as fast as it is consumed. */
  diff(id: string, parent: string): Promise<Readable>;
  changes(id: string, parent: string): Promise<LayerChange[]>;
  /** Applies a layer tar to the (empty) layer `id`; returns the size of its content. Consumes `tar` with back-pressure. */
  applyDiff(id: string, parent: string, tar: Readable): Promise<number>;
  diffSize(id: string, parent: string): Promise<number>;
}

/** Options of `createLcowDriver`. */
export interface LcowDriverOptions {
  log?: import("./log.js").Logger;
}

/** The `GraphDriver` over `@lcow/driver`. */
export function createLcowDriver(_options: LcowDriverOptions = {}): GraphDriver {
  throw new Error("@lcow/driver is not ready yet");
}
