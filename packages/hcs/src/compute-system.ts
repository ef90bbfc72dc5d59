import type { BackendSystem, HcsApi } from "./backend.js";
import { HcsError } from "./errors.js";
import { getHcs, parseJson, type Hcs } from "./hcs.js";
import { isAlreadyStopped, isNotFound } from "./hresult.js";
import { InFlight, checkString } from "./native.js";
import { HcsProcess, delay, type WaitOptions } from "./process.js";
import { scsiAddRequest, scsiRemoveRequest, type ScsiAttachOptions, type ScsiController } from "./schema/modify.js";
import type { ContainerConfig, ResourceModificationRequest } from "./schema/v1.js";
import type {
  ComputeSystemDocument,
  ComputeSystemProperties,
  ModifySettingRequest,
  ProcessParameters,
  PropertyQuery,
  SystemExitStatus,
  SystemQuery,
} from "./schema/v2.js";

/** Per-call options: every wait has a timeout. */
export interface ComputeSystemCallOptions {
  /** Milliseconds (or `Infinity`); default the instance's `defaultTimeoutMs` (4 minutes). */
  readonly timeoutMs?: number;
}

/** Which HCS binding to use; default the shared instance (`getHcs()`). */
export interface HcsSelector {
  readonly hcs?: Hcs;
}

/** A create document: schema v2 `ComputeSystem`, v1 `ContainerConfig` (vmcompute.dll only), or raw JSON. */
export type CreateDocument = ComputeSystemDocument | ContainerConfig | string;

function serialize(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * A handle to an HCS compute system (typically an LCOW utility VM).
 *
 * Every method runs its native calls off the JS thread and waits with a timeout.
 * `close()` (or `await using`) releases the handle once the calls in flight have
 * returned; with `ShouldTerminateOnLastHandleClosed` that also stops the VM.
 * After `close()` every method rejects with `HANDLE_CLOSED`.
 */
export class ComputeSystem implements AsyncDisposable {
  /** The compute system id. */
  readonly id: string;
  /** The binding this handle belongs to. */
  readonly hcs: Hcs;
  readonly #handle: BackendSystem;
  readonly #calls = new InFlight();
  #closing: Promise<void> | undefined;

  private constructor(hcs: Hcs, handle: BackendSystem) {
    this.hcs = hcs;
    this.id = handle.id;
    this.#handle = handle;
  }

  /**
   * Creates a compute system and waits until HCS finished creating it (it is then
   * `Created`, not running: call `start()`). Grant the VM access to its kernel,
   * initrd and disks first. On failure nothing stays open.
   */
  static async create(id: string, document: CreateDocument, options: ComputeSystemCallOptions & HcsSelector = {}): Promise<ComputeSystem> {
    const hcs = options.hcs ?? getHcs();
    const handle = await hcs.backend.create(checkString(id, "id"), serialize(document), hcs.timeout(options));
    return new ComputeSystem(hcs, handle);
  }

  /** Opens an existing compute system by id. `NOT_FOUND` if there is none. */
  static async open(id: string, options: HcsSelector = {}): Promise<ComputeSystem> {
    const hcs = options.hcs ?? getHcs();
    return new ComputeSystem(hcs, await hcs.backend.open(checkString(id, "id")));
  }

  /** Lists compute systems, optionally filtered (`SystemQuery`). */
  static async enumerate(query?: SystemQuery, options: ComputeSystemCallOptions & HcsSelector = {}): Promise<ComputeSystemProperties[]> {
    const hcs = options.hcs ?? getHcs();
    const doc = await hcs.backend.enumerate(query ? JSON.stringify(query) : null, hcs.timeout(options));
    const list = parseJson<ComputeSystemProperties[]>(doc, "HcsEnumerateComputeSystems") ?? [];
    if (!Array.isArray(list)) throw new HcsError("INTERNAL", "HcsEnumerateComputeSystems: the answer is not an array");
    return list;
  }

  /** The API of the DLL behind this handle. */
  get api(): HcsApi {
    return this.#handle.api;
  }

  /** `true` once `close()` was called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  #use<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closing) return Promise.reject(new HcsError("HANDLE_CLOSED", `compute system ${this.id} is closed`, { systemId: this.id }));
    return this.#calls.track(fn());
  }

  /** Starts the system; resolves when it runs (for a UVM: the VM is up, the GCS connection is separate). */
  start(options?: ComputeSystemCallOptions): Promise<void> {
    return this.#use(() => this.hcs.backend.start(this.#handle, this.hcs.timeout(options)));
  }

  /** Pauses a running system. */
  pause(options?: ComputeSystemCallOptions): Promise<void> {
    return this.#use(() => this.hcs.backend.pause(this.#handle, this.hcs.timeout(options)));
  }

  /** Resumes a paused system. */
  resume(options?: ComputeSystemCallOptions): Promise<void> {
    return this.#use(() => this.hcs.backend.resume(this.#handle, this.hcs.timeout(options)));
  }

  /**
   * Asks the guest to shut down cleanly and waits until the system stopped. Like
   * hcsshim, "already stopped" and "not found" count as success.
   */
  shutdown(options?: ComputeSystemCallOptions): Promise<void> {
    return this.#use(() => this.#tolerateStopped(this.hcs.backend.shutdown(this.#handle, this.hcs.timeout(options))));
  }

  /** Powers the system off and waits until it stopped. "Already stopped" and "not found" count as success. */
  terminate(options?: ComputeSystemCallOptions): Promise<void> {
    return this.#use(() => this.#tolerateStopped(this.hcs.backend.terminate(this.#handle, this.hcs.timeout(options))));
  }

  async #tolerateStopped(call: Promise<void>): Promise<void> {
    try {
      await call;
    } catch (err) {
      if (!(isAlreadyStopped(err) || isNotFound(err))) throw err;
    }
  }

  /** `Properties` of the system; `{}` (the default) gives the basic ones, including `RuntimeId` and `State`. */
  getProperties(query: PropertyQuery = {}, options?: ComputeSystemCallOptions): Promise<ComputeSystemProperties> {
    return this.#use(async () => {
      const doc = await this.hcs.backend.getProperties(this.#handle, JSON.stringify(query), this.hcs.timeout(options));
      const props = parseJson<ComputeSystemProperties>(doc, "HcsGetComputeSystemProperties", this.id);
      if (!props) throw new HcsError("INTERNAL", `HcsGetComputeSystemProperties ${this.id}: empty answer`, { systemId: this.id });
      return props;
    });
  }

  /** Sends a `ModifySettingRequest` (v2) or `ResourceModificationRequest` (v1). */
  modify(request: ModifySettingRequest | ResourceModificationRequest | string, options?: ComputeSystemCallOptions): Promise<void> {
    return this.#use(() => this.hcs.backend.modify(this.#handle, serialize(request), this.hcs.timeout(options)));
  }

  /**
   * Hot-adds a SCSI disk: grants the VM access to `path` (unless `grant: false`),
   * then sends the Add request for `<controller>/Attachments/<lun>`.
   */
  addScsiDisk(disk: ScsiAttachOptions & { readonly grant?: boolean }, options?: ComputeSystemCallOptions): Promise<void> {
    const request = scsiAddRequest(disk);
    return this.#use(async () => {
      if (disk.grant !== false) await this.hcs.backend.grantVmAccess(this.id, disk.path);
      await this.hcs.backend.modify(this.#handle, JSON.stringify(request), this.hcs.timeout(options));
    });
  }

  /** Hot-removes the SCSI disk at `controller`/`lun` (unmount it in the guest first). */
  removeScsiDisk(disk: { readonly controller?: ScsiController; readonly lun: number }, options?: ComputeSystemCallOptions): Promise<void> {
    return this.modify(scsiRemoveRequest(disk), options);
  }

  /**
   * Resolves with the `SystemExitStatus` once the system stopped: `HcsWaitForComputeSystemExit`
   * where exported, the exit notification on vmcompute.dll, else polling `State`.
   * On computecore.dll a `close()` issued meanwhile waits for this wait to end (exit or timeout);
   * on vmcompute.dll `close()` ends it with `HANDLE_CLOSED`.
   */
  waitForExit(options?: WaitOptions): Promise<SystemExitStatus> {
    if (this.#closing) return Promise.reject(new HcsError("HANDLE_CLOSED", `compute system ${this.id} is closed`, { systemId: this.id }));
    // Not tracked by close(): a v1 exit wait is a notification, not a native call, and close()
    // must be able to end it (it rejects with HANDLE_CLOSED). Native waits (v2) are tracked by
    // the backend, so close() still never releases the handle under HcsWaitForComputeSystemExit.
    return (async () => {
      const timeoutMs = this.hcs.timeout(options);
      if (this.hcs.backend.optional.waitForSystemExit) {
        const doc = await this.hcs.backend.waitForExit(this.#handle, timeoutMs);
        return parseJson<SystemExitStatus>(doc, "HcsWaitForComputeSystemExit", this.id) ?? {};
      }
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const doc = await this.hcs.backend.getProperties(this.#handle, "{}", timeoutMs);
        const props = parseJson<ComputeSystemProperties>(doc, "HcsGetComputeSystemProperties", this.id);
        if (props?.Stopped || props?.State === "Stopped") return props.ExitType === undefined ? {} : { ExitType: props.ExitType };
        if (Date.now() >= deadline) throw new HcsError("TIMEOUT", `compute system ${this.id} did not exit within ${timeoutMs} ms`, { systemId: this.id });
        await delay(Math.min(options?.pollIntervalMs ?? 250, Math.max(1, deadline - Date.now())));
      }
    })();
  }

  /** Starts a process in the system (`HcsCreateProcess`). Close the returned process when done. */
  createProcess(parameters: ProcessParameters, options?: ComputeSystemCallOptions): Promise<HcsProcess> {
    return this.#use(async () => new HcsProcess(this.hcs, await this.hcs.backend.createProcess(this.#handle, JSON.stringify(parameters), this.hcs.timeout(options))));
  }

  /**
   * Releases the handle after every call in flight returned (never under a running
   * call). Idempotent: later calls return the same promise. Stops the system only
   * if it was created with `ShouldTerminateOnLastHandleClosed` and this was the last handle.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#calls.drain();
      await this.hcs.backend.closeSystem(this.#handle);
    })();
    return this.#closing;
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
