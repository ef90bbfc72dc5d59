import type { BackendProcess, HcsBackend, ProcessStdio } from "./backend.js";
import type { ComputeSystemCallOptions } from "./compute-system.js";
import { HcsError } from "./errors.js";
import type { Hcs } from "./hcs.js";
import { parseJson } from "./hcs.js";
import { isAlreadyStopped } from "./hresult.js";
import { InFlight } from "./native.js";
import type { ProcessSignal, ProcessStatus } from "./schema/v2.js";

/** Options of {@link HcsProcess.waitForExit}. */
export interface WaitOptions extends ComputeSystemCallOptions {
  /** Poll interval when the DLL has no wait export. Default 250 ms. */
  readonly pollIntervalMs?: number;
}

/** @internal Sleep that does not hold the process open longer than needed. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A process started in a compute system through HCS (`HcsCreateProcess`). LCOW
 * normally runs commands through the GCS bridge instead; this mirrors the 2017
 * opengcs flow. Close it (or `await using`) to release the handle and stdio pipes.
 */
export class HcsProcess implements AsyncDisposable {
  readonly #hcs: Hcs;
  readonly #backend: HcsBackend;
  readonly #handle: BackendProcess;
  readonly #calls = new InFlight();
  #closing: Promise<void> | undefined;

  /** @internal Created by `ComputeSystem.createProcess`. */
  constructor(hcs: Hcs, handle: BackendProcess) {
    this.#hcs = hcs;
    this.#backend = hcs.backend;
    this.#handle = handle;
  }

  /** Process id inside the compute system. */
  get pid(): number {
    return this.#handle.pid;
  }

  /** Id of the compute system the process runs in. */
  get systemId(): string {
    return this.#handle.systemId;
  }

  /**
   * Host pipe handles (opaque native handles) when the parameters asked for
   * `CreateStd*Pipe`. Owned by this object: `close()` closes them.
   */
  get stdio(): ProcessStdio {
    return this.#handle.stdio;
  }

  /** `true` once `close()` was called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  #use<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closing) return Promise.reject(new HcsError("HANDLE_CLOSED", `process ${this.pid} in ${this.systemId} is closed`, { systemId: this.systemId }));
    return this.#calls.track(fn());
  }

  /** Kills the process. Already exited counts as success. */
  terminate(options?: ComputeSystemCallOptions): Promise<void> {
    return this.#use(async () => {
      try {
        await this.#backend.terminateProcess(this.#handle, this.#hcs.timeout(options));
      } catch (err) {
        if (!isAlreadyStopped(err)) throw err;
      }
    });
  }

  /** Sends a console signal (`HcsSignalProcess`). */
  signal(signal: ProcessSignal, options?: ComputeSystemCallOptions): Promise<void> {
    return this.#use(() => this.#backend.signalProcess(this.#handle, JSON.stringify({ Signal: signal }), this.#hcs.timeout(options)));
  }

  /** `ProcessStatus`: pid, exited, exit code. */
  getProperties(options?: ComputeSystemCallOptions): Promise<ProcessStatus> {
    return this.#use(async () => {
      const doc = await this.#backend.getProcessProperties(this.#handle, this.#hcs.timeout(options));
      const status = parseJson<ProcessStatus>(doc, "HcsGetProcessProperties", this.systemId);
      if (!status) throw new HcsError("INTERNAL", `HcsGetProcessProperties ${this.systemId}: empty answer`, { systemId: this.systemId });
      return status;
    });
  }

  /**
   * Resolves with the final `ProcessStatus` once the process exited: `HcsWaitForProcessExit`
   * where exported, else by polling `getProperties`. `TIMEOUT` when it does not exit in time.
   */
  waitForExit(options?: WaitOptions): Promise<ProcessStatus> {
    return this.#use(async () => {
      const timeoutMs = this.#hcs.timeout(options);
      if (this.#backend.optional.waitForProcessExit) {
        const doc = await this.#backend.waitForProcessExit(this.#handle, timeoutMs);
        const status = parseJson<ProcessStatus>(doc, "HcsWaitForProcessExit", this.systemId);
        if (status) return status;
      }
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const status = await this.getPropertiesUnchecked(timeoutMs);
        if (status.Exited) return status;
        if (Date.now() >= deadline) {
          throw new HcsError("TIMEOUT", `process ${this.pid} in ${this.systemId} did not exit within ${timeoutMs} ms`, { systemId: this.systemId });
        }
        await delay(Math.min(options?.pollIntervalMs ?? 250, Math.max(1, deadline - Date.now())));
      }
    });
  }

  private async getPropertiesUnchecked(timeoutMs: number): Promise<ProcessStatus> {
    const doc = await this.#backend.getProcessProperties(this.#handle, timeoutMs);
    const status = parseJson<ProcessStatus>(doc, "HcsGetProcessProperties", this.systemId);
    if (!status) throw new HcsError("INTERNAL", `HcsGetProcessProperties ${this.systemId}: empty answer`, { systemId: this.systemId });
    return status;
  }

  /**
   * Waits for calls in flight, then closes the stdio pipes and the process handle.
   * Idempotent: later calls return the same promise. Does not kill the process.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#calls.drain();
      await this.#backend.closeProcess(this.#handle);
    })();
    return this.#closing;
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
