// The Docker graphdriver plugin protocol as types and tables (see specs/docker-graphdriver-plugin.md).
// Wire names are exact: dockerd decodes them with Go's encoding/json, which matches field names
// case-insensitively, but we send the canonical spelling so tools that compare bytes agree.

/** What `Plugin.Activate` answers: the daemon checks for the exact string `GraphDriver`. */
export const IMPLEMENTS = ["GraphDriver"] as const;

/**
 * The content type go-plugins-helpers answers with (`sdk.DefaultContentTypeV1_1`). dockerd sends
 * `Accept: application/vnd.docker.plugins.v1.2+json` and does not check what comes back.
 */
export const PLUGIN_CONTENT_TYPE = "application/vnd.docker.plugins.v1.1+json";

/** Every `POST /<method>` path the plugin serves, with what it carries. */
export const Method = {
  /** Empty body; answers `{"Implements":["GraphDriver"]}`. */
  Activate: "/Plugin.Activate",
  /** `{Home, Opts, UIDMaps, GIDMaps}`; sent once per daemon start, never again after a plugin restart. */
  Init: "/GraphDriver.Init",
  /** `{}`; answers `{"Capabilities":{"ReproducesExactDiffs":bool}}` (nested, as the proxy decodes it). */
  Capabilities: "/GraphDriver.Capabilities",
  /** `{ID, Parent?, MountLabel?, StorageOpt?}`: a read-only layer. */
  Create: "/GraphDriver.Create",
  /** Same body as Create: a container's writable layer. */
  CreateReadWrite: "/GraphDriver.CreateReadWrite",
  /** `{ID}`. */
  Remove: "/GraphDriver.Remove",
  /** `{ID, MountLabel?}`; answers `{"Dir": "/abs"}`. */
  Get: "/GraphDriver.Get",
  /** `{ID}`. */
  Put: "/GraphDriver.Put",
  /** `{ID}`; answers `{"Exists": bool}` (errors are ignored by the daemon). */
  Exists: "/GraphDriver.Exists",
  /** `{}`; answers `{"Status": [["k","v"], ...]}`, shown by `docker info`. */
  Status: "/GraphDriver.Status",
  /** `{ID}`; answers `{"Metadata": {...}}`. */
  GetMetadata: "/GraphDriver.GetMetadata",
  /** `{}`; the daemon is shutting down: release mounts. */
  Cleanup: "/GraphDriver.Cleanup",
  /** `{ID, Parent?}`; answers a raw tar as the 200 body, so every error must be non-200. */
  Diff: "/GraphDriver.Diff",
  /** `{ID, Parent?}`; answers `{"Changes": [{"Path","Kind"}]}`. */
  Changes: "/GraphDriver.Changes",
  /** `?id=<id>&parent=<pid>` (not URL-escaped) with a raw tar body; answers `{"Size": n}`. */
  ApplyDiff: "/GraphDriver.ApplyDiff",
  /** `{ID, Parent?}`; answers `{"Size": n}`. */
  DiffSize: "/GraphDriver.DiffSize",
} as const;

export type MethodPath = (typeof Method)[keyof typeof Method];

/** `daemon/graphdriver/proxy.go` `graphDriverRequest`; empty fields are omitted by the daemon. */
export interface GraphDriverRequest {
  ID?: string;
  Parent?: string;
  MountLabel?: string;
  StorageOpt?: Record<string, string>;
}

/** `idtools.IDMap`: snake_case on the wire (the published docs' CamelCase example is wrong). */
export interface IdMap {
  container_id: number;
  host_id: number;
  size: number;
}

/** `graphDriverInitRequest`. */
export interface InitRequest {
  Home?: string;
  Opts?: string[] | null;
  UIDMaps?: IdMap[] | null;
  GIDMaps?: IdMap[] | null;
}

/** `archive.Change`: Kind 0 modify, 1 add, 2 delete. */
export interface WireChange {
  Path: string;
  Kind: 0 | 1 | 2;
}

/** `graphDriverResponse` (every field `omitempty`). */
export interface GraphDriverResponse {
  Err?: string;
  Dir?: string;
  Exists?: boolean;
  Status?: [string, string][];
  Changes?: WireChange[];
  Size?: number;
  Metadata?: Record<string, string>;
  Capabilities?: { ReproducesExactDiffs: boolean };
}

/** `Plugin.Activate`'s answer. */
export interface ActivateResponse {
  Implements: readonly string[];
}
