// The graph-driver operations as the HTTP layer sees them. The server is written against this
// interface only; `createLcowDriver` (below) is the one place it meets `@lcow/driver`.

import { init, DriverError, REPRODUCES_EXACT_DIFFS, type Driver, type DriverOptions } from "@lcow/driver";
import { silentLogger, type Logger } from "./log.js";


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
  /**
   * The changes of `id` against `parent` as a tar stream (opened before this resolves, so a
   * missing layer rejects here). Pull-based: it reads only as fast as it is consumed; stopping
   * the iteration early (`return()`) releases it.
   */
  diff(id: string, parent: string): Promise<AsyncIterable<Uint8Array>>;
  changes(id: string, parent: string): Promise<LayerChange[]>;
  /** Applies a layer tar to the (empty) layer `id`; returns the size of its content. Consumes `tar` with back-pressure. */
  applyDiff(id: string, parent: string, tar: AsyncIterable<Uint8Array>): Promise<number>;
  diffSize(id: string, parent: string): Promise<number>;
}

/** Options of `createLcowDriver`. */
export interface LcowDriverOptions {
  /** If not provided, nothing is logged. */
  log?: Logger;
  /** Passed to `@lcow/driver`'s `init` (extra mounter factories, fsync). If not provided, its defaults. */
  driverOptions?: DriverOptions;
}

/**
 * The `GraphDriver` over `@lcow/driver`. `init` opens the store (`lcow.init`); a second `init`
 * with a different home or options releases the first store's mounts and opens the new one.
 * Every other call before `init` is FAILED_PRECONDITION.
 */
export function createLcowDriver(options: LcowDriverOptions = {}): GraphDriver {
  return new LcowGraphDriver(options.log ?? silentLogger, options.driverOptions ?? {});
}

class LcowGraphDriver implements GraphDriver {
  readonly reproducesExactDiffs = REPRODUCES_EXACT_DIFFS;
  private store: Driver | undefined;

  constructor(
    private readonly log: Logger,
    private readonly driverOptions: DriverOptions,
  ) {}

  private get s(): Driver {
    if (this.store === undefined) throw new DriverError("FAILED_PRECONDITION", "the layer store is not open (no --root and no GraphDriver.Init yet)");
    return this.store;
  }

  async init(home: string, options: readonly string[]): Promise<void> {
    const next = await init(home, options, this.driverOptions);
    const previous = this.store;
    this.store = next;
    if (previous !== undefined) {
      this.log.info("store re-opened", { from: previous.home, to: next.home });
      await previous.cleanup();
    }
  }
  async status() {
    return this.s.status();
  }
  create(id: string, parent: string, o: CreateOptions) {
    return this.s.create(id, parent, o);
  }
  createReadWrite(id: string, parent: string, o: CreateOptions) {
    return this.s.createReadWrite(id, parent, o);
  }
  remove(id: string) {
    return this.s.remove(id);
  }
  get(id: string, mountLabel: string) {
    return this.s.get(id, mountLabel);
  }
  put(id: string) {
    return this.s.put(id);
  }
  exists(id: string) {
    return this.s.exists(id);
  }
  getMetadata(id: string) {
    return this.s.getMetadata(id);
  }
  async cleanup() {
    await this.store?.cleanup();
  }
  diff(id: string, parent: string) {
    return this.s.diff(id, parent);
  }
  async changes(id: string, parent: string) {
    return (await this.s.changes(id, parent)).map((c) => ({ path: c.path, kind: c.kind }));
  }
  applyDiff(id: string, parent: string, tar: AsyncIterable<Uint8Array>) {
    return this.s.applyDiff(id, parent, tar);
  }
  diffSize(id: string, parent: string) {
    return this.s.diffSize(id, parent);
  }
}
