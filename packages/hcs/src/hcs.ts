import type { HcsApi, HcsBackend } from "./backend.js";
import { ComputeSystem, type ComputeSystemCallOptions, type CreateDocument } from "./compute-system.js";
import { HcsError } from "./errors.js";
import { loadHcs, type HcsDetection, type HcsLibraryOptions } from "./library.js";
import { toDword } from "./native.js";
import type { ComputeSystemProperties, ServiceProperties, SystemQuery } from "./schema/v2.js";

/** hcsshim's default watchdog for system operations (`HCSSHIM_TIMEOUT_*`): 4 minutes. */
export const DEFAULT_TIMEOUT_MS = 240_000;

/** Options of {@link Hcs.load}: where to find HCS, and the default timeout of every wait. */
export interface HcsOptions extends HcsLibraryOptions {
  /** Timeout of every wait that is not given one explicitly, in ms (or `Infinity`). Default 240 000. */
  readonly defaultTimeoutMs?: number;
}

/**
 * A loaded Host Compute Service binding: computecore.dll (v2) or, on older hosts,
 * vmcompute.dll (v1). Most programs use the lazily created default instance through
 * the module-level functions; create your own to pick libraries explicitly.
 */
export class Hcs {
  /** @internal The DLL binding; handles it returns belong to it alone. */
  readonly backend: HcsBackend;
  /** How the library was chosen. */
  readonly detection: HcsDetection;
  /** Timeout used when a call gets none. */
  readonly defaultTimeoutMs: number;

  private constructor(backend: HcsBackend, detection: HcsDetection, defaultTimeoutMs: number) {
    this.backend = backend;
    this.detection = detection;
    this.defaultTimeoutMs = defaultTimeoutMs;
  }

  /**
   * Loads koffi and the HCS library now (synchronously). Throws `UNSUPPORTED_PLATFORM`
   * off Windows without a library path, `KOFFI_MISSING`, or `LIBRARY_LOAD_FAILED`.
   */
  static load(options: HcsOptions = {}): Hcs {
    const timeout = options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    toDword(timeout);
    const { backend, detection } = loadHcs(options);
    return new Hcs(backend, detection, timeout);
  }

  /** `v2` (computecore.dll) or `v1` (vmcompute.dll). */
  get api(): HcsApi {
    return this.backend.api;
  }

  /** @internal Resolves a per-call timeout against the default. */
  timeout(options: ComputeSystemCallOptions | undefined): number {
    const ms = options?.timeoutMs ?? this.defaultTimeoutMs;
    toDword(ms);
    return ms;
  }

  /** See {@link ComputeSystem.create}. */
  createComputeSystem(id: string, document: CreateDocument, options?: ComputeSystemCallOptions): Promise<ComputeSystem> {
    return ComputeSystem.create(id, document, { ...options, hcs: this });
  }

  /** See {@link ComputeSystem.open}. */
  openComputeSystem(id: string): Promise<ComputeSystem> {
    return ComputeSystem.open(id, { hcs: this });
  }

  /** See {@link ComputeSystem.enumerate}. */
  enumerateComputeSystems(query?: SystemQuery, options?: ComputeSystemCallOptions): Promise<ComputeSystemProperties[]> {
    return ComputeSystem.enumerate(query, { ...options, hcs: this });
  }

  /**
   * Lets the VM with compute-system id `vmId` open `path` (kernel, initrd, VHDs):
   * `HcsGrantVmAccess` (v2) or `GrantVmAccess` (v1). Works before the system exists.
   */
  async grantVmAccess(vmId: string, path: string): Promise<void> {
    await this.backend.grantVmAccess(vmId, path);
  }

  /** Removes a grant (`HcsRevokeVmAccess`). v2 only; `NOT_IMPLEMENTED` on vmcompute.dll. */
  async revokeVmAccess(vmId: string, path: string): Promise<void> {
    await this.backend.revokeVmAccess(vmId, path);
  }

  /** `HcsGetServiceProperties`; default query `{"PropertyTypes":["Basic"]}`. */
  async getServiceProperties(query: { PropertyTypes: string[] } = { PropertyTypes: ["Basic"] }): Promise<ServiceProperties> {
    const doc = await this.backend.getServiceProperties(JSON.stringify(query));
    return parseJson<ServiceProperties>(doc, "HcsGetServiceProperties") ?? {};
  }
}

/** @internal Parses a JSON document HCS returned; garbage is an INTERNAL error, absence is `undefined`. */
export function parseJson<T>(doc: string | undefined, operation: string, systemId?: string): T | undefined {
  if (doc === undefined || doc.trim() === "") return undefined;
  try {
    return JSON.parse(doc) as T;
  } catch (err) {
    throw new HcsError("INTERNAL", `${operation}: HCS returned a document that is not JSON: ${doc.slice(0, 200)}`, {
      operation,
      ...(systemId ? { systemId } : {}),
      cause: err,
    });
  }
}

let defaultHcs: Hcs | undefined;

/**
 * The shared instance behind the module-level functions, loaded on first use with
 * `options` (ignored once loaded). Throws `UNSUPPORTED_PLATFORM` off Windows.
 */
export function getHcs(options?: HcsOptions): Hcs {
  defaultHcs ??= Hcs.load(options);
  return defaultHcs;
}

/** Replaces (or with `undefined`, forgets) the shared instance, e.g. to point it at a test library. */
export function setDefaultHcs(hcs: Hcs | undefined): void {
  defaultHcs = hcs;
}
