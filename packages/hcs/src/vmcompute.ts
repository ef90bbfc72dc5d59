import type { BackendProcess, BackendSystem, HcsBackend, ProcessStdio } from "./backend.js";
import { HcsError } from "./errors.js";
import { HRESULT, failed, formatHresult, isPending } from "./hresult.js";
import {
  InFlight,
  callAsync,
  checkString,
  nativeTypes,
  takeString,
  toDword,
  type Koffi,
  type KoffiCallback,
  type KoffiFunction,
  type KoffiLib,
  type NativeHandle,
  type NativeProcessInformation,
  type StringFreer,
} from "./native.js";

/**
 * vmcompute.dll notification types (hcsshim `internal/hcs/callback.go`). Not shared with
 * v2's HCS_EVENT_TYPE: `0x01000000` means ServiceDisconnect here (spec 3.3).
 */
export const V1_NOTIFICATION = {
  SystemExited: 0x00000001,
  SystemCreateCompleted: 0x00000002,
  SystemStartCompleted: 0x00000003,
  SystemPauseCompleted: 0x00000004,
  SystemResumeCompleted: 0x00000005,
  ProcessExited: 0x00010000,
  ServiceDisconnect: 0x01000000,
} as const;

/** The vmcompute.dll functions this package binds (all exist since Windows 10 1607). */
export interface VmcomputeFunctions {
  HcsEnumerateComputeSystems: KoffiFunction;
  HcsCreateComputeSystem: KoffiFunction;
  HcsOpenComputeSystem: KoffiFunction;
  HcsCloseComputeSystem: KoffiFunction;
  HcsStartComputeSystem: KoffiFunction;
  HcsShutdownComputeSystem: KoffiFunction;
  HcsTerminateComputeSystem: KoffiFunction;
  HcsPauseComputeSystem: KoffiFunction;
  HcsResumeComputeSystem: KoffiFunction;
  HcsGetComputeSystemProperties: KoffiFunction;
  HcsModifyComputeSystem: KoffiFunction;
  HcsGetServiceProperties: KoffiFunction;
  HcsRegisterComputeSystemCallback: KoffiFunction;
  HcsUnregisterComputeSystemCallback: KoffiFunction;
  HcsCreateProcess: KoffiFunction;
  HcsCloseProcess: KoffiFunction;
  HcsTerminateProcess: KoffiFunction;
  HcsSignalProcess: KoffiFunction;
  HcsGetProcessProperties: KoffiFunction;
  GrantVmAccess: KoffiFunction;
}

const PROTOTYPES: Record<keyof VmcomputeFunctions, string> = {
  HcsEnumerateComputeSystems: "int32 HcsEnumerateComputeSystems(str16 query, _Out_ void **computeSystems, _Out_ void **result)",
  HcsCreateComputeSystem:
    "int32 HcsCreateComputeSystem(str16 id, str16 configuration, void *identity, _Out_ HCS_HANDLE *computeSystem, _Out_ void **result)",
  HcsOpenComputeSystem: "int32 HcsOpenComputeSystem(str16 id, _Out_ HCS_HANDLE *computeSystem, _Out_ void **result)",
  HcsCloseComputeSystem: "int32 HcsCloseComputeSystem(HCS_HANDLE computeSystem)",
  HcsStartComputeSystem: "int32 HcsStartComputeSystem(HCS_HANDLE computeSystem, str16 options, _Out_ void **result)",
  HcsShutdownComputeSystem: "int32 HcsShutdownComputeSystem(HCS_HANDLE computeSystem, str16 options, _Out_ void **result)",
  HcsTerminateComputeSystem: "int32 HcsTerminateComputeSystem(HCS_HANDLE computeSystem, str16 options, _Out_ void **result)",
  HcsPauseComputeSystem: "int32 HcsPauseComputeSystem(HCS_HANDLE computeSystem, str16 options, _Out_ void **result)",
  HcsResumeComputeSystem: "int32 HcsResumeComputeSystem(HCS_HANDLE computeSystem, str16 options, _Out_ void **result)",
  HcsGetComputeSystemProperties:
    "int32 HcsGetComputeSystemProperties(HCS_HANDLE computeSystem, str16 propertyQuery, _Out_ void **properties, _Out_ void **result)",
  HcsModifyComputeSystem: "int32 HcsModifyComputeSystem(HCS_HANDLE computeSystem, str16 configuration, _Out_ void **result)",
  HcsGetServiceProperties: "int32 HcsGetServiceProperties(str16 propertyQuery, _Out_ void **properties, _Out_ void **result)",
  HcsRegisterComputeSystemCallback:
    "int32 HcsRegisterComputeSystemCallback(HCS_HANDLE computeSystem, HCS_NOTIFICATION_CALLBACK *callback, void *context, _Out_ HCS_HANDLE *callbackHandle)",
  HcsUnregisterComputeSystemCallback: "int32 HcsUnregisterComputeSystemCallback(HCS_HANDLE callbackHandle)",
  HcsCreateProcess:
    "int32 HcsCreateProcess(HCS_HANDLE computeSystem, str16 processParameters, _Out_ HCS_PROCESS_INFORMATION *processInformation, _Out_ HCS_HANDLE *process, _Out_ void **result)",
  HcsCloseProcess: "int32 HcsCloseProcess(HCS_HANDLE process)",
  HcsTerminateProcess: "int32 HcsTerminateProcess(HCS_HANDLE process, _Out_ void **result)",
  HcsSignalProcess: "int32 HcsSignalProcess(HCS_HANDLE process, str16 options, _Out_ void **result)",
  HcsGetProcessProperties: "int32 HcsGetProcessProperties(HCS_HANDLE process, _Out_ void **processProperties, _Out_ void **result)",
  GrantVmAccess: "int32 GrantVmAccess(str16 vmid, str16 filepath)",
};

/** Binds vmcompute.dll; throws when an export is missing. */
export function bindVmcompute(koffi: Koffi, lib: KoffiLib): VmcomputeFunctions {
  nativeTypes(koffi);
  const out: Partial<Record<keyof VmcomputeFunctions, KoffiFunction>> = {};
  for (const [name, proto] of Object.entries(PROTOTYPES) as [keyof VmcomputeFunctions, string][]) out[name] = lib.func(proto);
  return out as VmcomputeFunctions;
}

// hcsshim passes L"" where Go has "" (spec 1.1); the v1 DLL is undocumented, so we do the same.
const EMPTY_OPTIONS = "";

interface Waiter {
  readonly type: number;
  readonly operation: string;
  outcome?: { status: number; data: string | undefined } | { error: HcsError };
  settle?: () => void;
}

/**
 * Turns v1 notifications (delivered by HCS on its own threads, marshalled by koffi
 * onto the JS thread) into promises. A waiter is armed *before* the call that may
 * return pending, so a completion that overtakes the call's own return is not lost.
 */
export class NotificationHub {
  readonly #waiters = new Set<Waiter>();
  #exit: { status: number; data: string | undefined } | undefined;
  #failure: HcsError | undefined;

  constructor(readonly systemId: string) {}

  /** The exit notification, once it arrived. */
  get exit(): { status: number; data: string | undefined } | undefined {
    return this.#exit;
  }

  /** Entry point of the registered native callback. */
  dispatch(type: number, status: number, data: string | undefined): void {
    if (type === V1_NOTIFICATION.ServiceDisconnect) {
      this.#failure = new HcsError("SERVICE_DISCONNECTED", `${this.systemId}: lost communication with the compute service`, { systemId: this.systemId });
      for (const w of this.#waiters) this.#settle(w, { error: this.#failure });
      return;
    }
    if (type === V1_NOTIFICATION.SystemExited) {
      this.#exit = { status, data };
      for (const w of this.#waiters) {
        if (w.type === V1_NOTIFICATION.SystemExited) this.#settle(w, { status, data });
        else {
          // hcsshim: an exit while waiting for anything else is an "unexpected container exit".
          const hr = failed(status) ? status : HRESULT.VMCOMPUTE_E_UNEXPECTED_EXIT;
          this.#settle(w, {
            error: new HcsError("UNEXPECTED_EXIT", `${w.operation} ${this.systemId}: the compute system exited unexpectedly (${formatHresult(hr)})`, {
              hresult: hr,
              operation: w.operation,
              systemId: this.systemId,
            }),
          });
        }
      }
      return;
    }
    for (const w of this.#waiters) {
      if (w.type === type && !w.outcome) {
        this.#settle(w, { status, data });
        return;
      }
    }
  }

  #settle(w: Waiter, outcome: NonNullable<Waiter["outcome"]>): void {
    if (w.outcome) return;
    w.outcome = outcome;
    this.#waiters.delete(w);
    w.settle?.();
  }

  /** Arms a waiter for notification `type`. Call `wait` if the call returned pending, else `cancel`. */
  arm(type: number, operation: string): { wait: (timeoutMs: number) => Promise<{ status: number; data: string | undefined }>; cancel: () => void } {
    const w: Waiter = { type, operation };
    if (this.#failure) w.outcome = { error: this.#failure };
    else if (type === V1_NOTIFICATION.SystemExited && this.#exit) w.outcome = this.#exit;
    else this.#waiters.add(w);
    return {
      cancel: () => {
        this.#waiters.delete(w);
      },
      wait: (timeoutMs) =>
        new Promise((resolve, reject) => {
          // Native callbacks do not keep Node's event loop alive; this timer does, even for Infinity.
          const limit = timeoutMs === Infinity ? 0x7fffffff : timeoutMs;
          let timer: NodeJS.Timeout | undefined;
          const finish = (): void => {
            if (timer) clearTimeout(timer);
            const o = w.outcome;
            if (!o) return;
            if ("error" in o) reject(o.error);
            else resolve(o);
          };
          if (w.outcome) return finish();
          w.settle = finish;
          const arm = (): void => {
            timer = setTimeout(() => {
              if (timeoutMs === Infinity) return arm();
              this.#settle(w, {
                error: new HcsError("TIMEOUT", `${operation} ${this.systemId}: no completion notification within ${timeoutMs} ms`, {
                  operation,
                  systemId: this.systemId,
                }),
              });
            }, limit);
          };
          arm();
        }),
    };
  }

  /** Fails every waiter (the handle is being closed). */
  dispose(): void {
    for (const w of this.#waiters) {
      this.#settle(w, { error: new HcsError("HANDLE_CLOSED", `${w.operation} ${this.systemId}: the handle was closed`, { systemId: this.systemId }) });
    }
  }
}

class V1System implements BackendSystem {
  readonly api = "v1" as const;
  readonly calls = new InFlight();
  readonly hub: NotificationHub;
  callback: KoffiCallback | undefined;
  callbackHandle: NativeHandle | undefined;
  closed: Promise<void> | undefined;
  constructor(
    readonly id: string,
    readonly handle: NativeHandle,
    hub: NotificationHub,
  ) {
    this.hub = hub;
  }
}

class V1Process implements BackendProcess {
  readonly api = "v1" as const;
  readonly calls = new InFlight();
  closed: Promise<void> | undefined;
  constructor(
    readonly systemId: string,
    readonly handle: NativeHandle,
    readonly pid: number,
    readonly stdio: ProcessStdio,
  ) {}
}

/**
 * Rejects with TIMEOUT when a synchronous-by-design v1 call overruns. The native call
 * keeps running; the handle's `InFlight` still waits for it before closing.
 */
function deadline<T>(call: Promise<T>, timeoutMs: number, operation: string, systemId: string | undefined): Promise<T> {
  if (timeoutMs === Infinity) return call;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new HcsError("TIMEOUT", `${operation}${systemId ? ` ${systemId}` : ""}: no answer within ${timeoutMs} ms`, { operation, ...(systemId ? { systemId } : {}) })),
      timeoutMs,
    );
    call.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** vmcompute.dll backend: pending calls complete through notification callbacks (spec 3.2). */
export class VmcomputeBackend implements HcsBackend {
  readonly api = "v1" as const;
  // The v1 DLL has neither export; exits come from the SystemExited notification instead.
  readonly optional = { waitForSystemExit: true, waitForProcessExit: false } as const;
  readonly #koffi: Koffi;
  readonly #f: VmcomputeFunctions;
  readonly #free: StringFreer;
  readonly #closeHandle: KoffiFunction;

  constructor(
    koffi: Koffi,
    functions: VmcomputeFunctions,
    free: StringFreer,
    closeHandle: KoffiFunction,
    readonly library: string,
  ) {
    this.#koffi = koffi;
    this.#f = functions;
    this.#free = free;
    this.#closeHandle = closeHandle;
  }

  #take(ptr: unknown): string | undefined {
    return takeString(this.#koffi, this.#free, ptr);
  }

  #system(system: BackendSystem): V1System {
    if (!(system instanceof V1System)) throw new HcsError("INVALID_ARGUMENT", "this handle belongs to the other HCS library (computecore.dll)");
    if (system.closed) throw new HcsError("HANDLE_CLOSED", `compute system ${system.id} is closed`, { systemId: system.id });
    return system;
  }

  #process(process: BackendProcess): V1Process {
    if (!(process instanceof V1Process)) throw new HcsError("INVALID_ARGUMENT", "this process handle belongs to the other HCS library (computecore.dll)");
    if (process.closed) throw new HcsError("HANDLE_CLOSED", `process ${process.pid} is closed`, { systemId: process.systemId });
    return process;
  }

  /** A synchronous v1 call with a `PWSTR *result` error document as its last argument. */
  async #simple(operation: keyof VmcomputeFunctions, systemId: string | undefined, timeoutMs: number, args: unknown[], calls?: InFlight): Promise<void> {
    const res: unknown[] = [null];
    const call = callAsync<number>(this.#f[operation], ...args, res);
    // Free the result document whenever the call returns, even after our deadline gave up on it.
    const settled = (calls ? calls.track(call) : call).then((hr) => ({ hr, doc: this.#take(res[0]) }));
    const { hr, doc } = await deadline(settled, timeoutMs, operation, systemId);
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation, ...(systemId ? { systemId } : {}), resultDocument: doc });
  }

  /**
   * A call that may return 0xC0370103 and finish with notification `type`. The waiter
   * is armed first; the final HRESULT is the notification's status.
   */
  async #pending(s: V1System, operation: keyof VmcomputeFunctions, type: number, timeoutMs: number): Promise<void> {
    toDword(timeoutMs);
    const waiter = s.hub.arm(type, operation);
    const res: unknown[] = [null];
    let hr: number;
    try {
      hr = await s.calls.track(callAsync<number>(this.#f[operation], s.handle, EMPTY_OPTIONS, res));
    } catch (err) {
      waiter.cancel();
      throw err;
    }
    const doc = this.#take(res[0]);
    if (isPending(hr)) {
      const { status, data } = await waiter.wait(timeoutMs);
      if (failed(status)) throw HcsError.fromHresult(status, { operation, systemId: s.id, resultDocument: data });
      return;
    }
    waiter.cancel();
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation, systemId: s.id, resultDocument: doc });
  }

  async #register(s: V1System): Promise<void> {
    const koffi = this.#koffi;
    const cb = koffi.register(
      (type: number, _ctx: unknown, status: number, data: string | null) => s.hub.dispatch(type >>> 0, status, data ?? undefined),
      koffi.pointer(nativeTypes(koffi).notificationCallback),
    );
    const out: unknown[] = [null];
    let hr: number;
    try {
      hr = await callAsync<number>(this.#f.HcsRegisterComputeSystemCallback, s.handle, cb, null, out);
    } catch (err) {
      koffi.unregister(cb);
      throw err;
    }
    if (failed(hr)) {
      koffi.unregister(cb);
      throw HcsError.fromHresult(hr, { operation: "HcsRegisterComputeSystemCallback", systemId: s.id });
    }
    s.callback = cb;
    s.callbackHandle = out[0] as NativeHandle;
  }

  async enumerate(query: string | null, timeoutMs: number): Promise<string | undefined> {
    if (query !== null) checkString(query, "query");
    const list: unknown[] = [null];
    const res: unknown[] = [null];
    const hr = await deadline(callAsync<number>(this.#f.HcsEnumerateComputeSystems, query ?? EMPTY_OPTIONS, list, res), timeoutMs, "HcsEnumerateComputeSystems", undefined);
    const doc = this.#take(res[0]);
    const systems = this.#take(list[0]);
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsEnumerateComputeSystems", resultDocument: doc });
    return systems;
  }

  async create(id: string, document: string, timeoutMs: number): Promise<BackendSystem> {
    checkString(id, "id");
    checkString(document, "document");
    toDword(timeoutMs);
    const hub = new NotificationHub(id);
    const waiter = hub.arm(V1_NOTIFICATION.SystemCreateCompleted, "HcsCreateComputeSystem");
    const out: unknown[] = [null];
    const res: unknown[] = [null];
    const hr = await callAsync<number>(this.#f.HcsCreateComputeSystem, id, document, null, out, res);
    const doc = this.#take(res[0]);
    const handle = out[0] as NativeHandle | null;
    if (failed(hr) && !isPending(hr)) {
      waiter.cancel();
      if (handle) await callAsync<number>(this.#f.HcsCloseComputeSystem, handle);
      throw HcsError.fromHresult(hr, { operation: "HcsCreateComputeSystem", systemId: id, resultDocument: doc });
    }
    if (!handle) throw new HcsError("INTERNAL", `HcsCreateComputeSystem ${id}: succeeded without a handle`, { systemId: id });
    const s = new V1System(id, handle, hub);
    try {
      // Only possible now that the handle exists; HCS holds the create completion until then (spec 3.2).
      await this.#register(s);
      if (isPending(hr)) {
        const { status, data } = await waiter.wait(timeoutMs);
        if (failed(status)) throw HcsError.fromHresult(status, { operation: "HcsCreateComputeSystem", systemId: id, resultDocument: data });
      } else waiter.cancel();
    } catch (err) {
      waiter.cancel();
      if (err instanceof HcsError && err.code === "TIMEOUT") {
        // As hcsshim: a create that timed out is terminated rather than left half-built.
        await this.#simple("HcsTerminateComputeSystem", id, 30_000, [s.handle, EMPTY_OPTIONS], s.calls).catch(() => undefined);
      }
      await this.closeSystem(s);
      throw err;
    }
    return s;
  }

  async open(id: string): Promise<BackendSystem> {
    checkString(id, "id");
    const out: unknown[] = [null];
    const res: unknown[] = [null];
    const hr = await callAsync<number>(this.#f.HcsOpenComputeSystem, id, out, res);
    const doc = this.#take(res[0]);
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsOpenComputeSystem", systemId: id, resultDocument: doc });
    const s = new V1System(id, out[0] as NativeHandle, new NotificationHub(id));
    try {
      await this.#register(s);
    } catch (err) {
      await this.closeSystem(s);
      throw err;
    }
    return s;
  }

  async start(system: BackendSystem, timeoutMs: number): Promise<void> {
    return this.#pending(this.#system(system), "HcsStartComputeSystem", V1_NOTIFICATION.SystemStartCompleted, timeoutMs);
  }
  async shutdown(system: BackendSystem, timeoutMs: number): Promise<void> {
    return this.#pending(this.#system(system), "HcsShutdownComputeSystem", V1_NOTIFICATION.SystemExited, timeoutMs);
  }
  async terminate(system: BackendSystem, timeoutMs: number): Promise<void> {
    return this.#pending(this.#system(system), "HcsTerminateComputeSystem", V1_NOTIFICATION.SystemExited, timeoutMs);
  }
  async pause(system: BackendSystem, timeoutMs: number): Promise<void> {
    return this.#pending(this.#system(system), "HcsPauseComputeSystem", V1_NOTIFICATION.SystemPauseCompleted, timeoutMs);
  }
  async resume(system: BackendSystem, timeoutMs: number): Promise<void> {
    return this.#pending(this.#system(system), "HcsResumeComputeSystem", V1_NOTIFICATION.SystemResumeCompleted, timeoutMs);
  }

  async getProperties(system: BackendSystem, query: string | null, timeoutMs: number): Promise<string | undefined> {
    const s = this.#system(system);
    if (query !== null) checkString(query, "query");
    const props: unknown[] = [null];
    const res: unknown[] = [null];
    const call = s.calls.track(callAsync<number>(this.#f.HcsGetComputeSystemProperties, s.handle, query ?? EMPTY_OPTIONS, props, res));
    // Decode and free the strings whenever the call returns, even after our deadline gave up on it.
    const settled = call.then((hr) => ({ hr, doc: this.#take(res[0]), properties: this.#take(props[0]) }));
    const { hr, doc, properties } = await deadline(settled, timeoutMs, "HcsGetComputeSystemProperties", s.id);
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsGetComputeSystemProperties", systemId: s.id, resultDocument: doc });
    return properties;
  }

  async modify(system: BackendSystem, request: string, timeoutMs: number): Promise<void> {
    const s = this.#system(system);
    checkString(request, "request");
    await this.#simple("HcsModifyComputeSystem", s.id, timeoutMs, [s.handle, request], s.calls);
  }

  async waitForExit(system: BackendSystem, timeoutMs: number): Promise<string | undefined> {
    const s = this.#system(system);
    toDword(timeoutMs);
    const { data } = await s.hub.arm(V1_NOTIFICATION.SystemExited, "waitForExit").wait(timeoutMs);
    return data;
  }

  closeSystem(system: BackendSystem): Promise<void> {
    // Reject rather than throw, like every other backend call.
    if (!(system instanceof V1System)) return Promise.reject(new HcsError("INVALID_ARGUMENT", "this handle belongs to the other HCS library (computecore.dll)"));
    system.closed ??= (async () => {
      await system.calls.drain();
      if (system.callbackHandle) {
        // Asynchronously: Unregister waits for callbacks running on HCS threads, which koffi
        // runs on this JS thread; a synchronous call here would deadlock.
        const hr = await callAsync<number>(this.#f.HcsUnregisterComputeSystemCallback, system.callbackHandle);
        // Only once HCS promised not to call it again may the koffi trampoline be released;
        // if unregistering failed we leak one slot rather than risk a call into freed memory.
        if (!failed(hr) && system.callback) this.#koffi.unregister(system.callback);
        system.callbackHandle = undefined;
      }
      system.hub.dispose();
      const hr = await callAsync<number>(this.#f.HcsCloseComputeSystem, system.handle);
      if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsCloseComputeSystem", systemId: system.id });
    })();
    return system.closed;
  }

  async createProcess(system: BackendSystem, parameters: string, timeoutMs: number): Promise<BackendProcess> {
    const s = this.#system(system);
    checkString(parameters, "parameters");
    const info = {} as NativeProcessInformation;
    const out: unknown[] = [null];
    const res: unknown[] = [null];
    const call = s.calls.track(callAsync<number>(this.#f.HcsCreateProcess, s.handle, parameters, info, out, res));
    let abandoned = false;
    const settled = call.then((hr) => {
      const doc = this.#take(res[0]);
      if (abandoned && !failed(hr)) {
        // We already reported a timeout: nobody will own this process, so release it here.
        for (const h of [info.StdInput, info.StdOutput, info.StdError]) if (h) this.#closeHandle(h);
        void callAsync<number>(this.#f.HcsCloseProcess, out[0]).catch(() => undefined);
      }
      return { hr, doc };
    });
    let hr: number;
    let doc: string | undefined;
    try {
      ({ hr, doc } = await deadline(settled, timeoutMs, "HcsCreateProcess", s.id));
    } catch (err) {
      abandoned = true;
      throw err;
    }
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsCreateProcess", systemId: s.id, resultDocument: doc });
    return new V1Process(s.id, out[0] as NativeHandle, info.ProcessId, {
      stdin: info.StdInput ?? null,
      stdout: info.StdOutput ?? null,
      stderr: info.StdError ?? null,
    });
  }

  async terminateProcess(process: BackendProcess, timeoutMs: number): Promise<void> {
    const p = this.#process(process);
    await this.#simple("HcsTerminateProcess", p.systemId, timeoutMs, [p.handle], p.calls);
  }

  async signalProcess(process: BackendProcess, options: string, timeoutMs: number): Promise<void> {
    const p = this.#process(process);
    checkString(options, "options");
    await this.#simple("HcsSignalProcess", p.systemId, timeoutMs, [p.handle, options], p.calls);
  }

  async getProcessProperties(process: BackendProcess, timeoutMs: number): Promise<string | undefined> {
    const p = this.#process(process);
    const props: unknown[] = [null];
    const res: unknown[] = [null];
    const call = p.calls.track(callAsync<number>(this.#f.HcsGetProcessProperties, p.handle, props, res));
    const settled = call.then((hr) => ({ hr, doc: this.#take(res[0]), properties: this.#take(props[0]) }));
    const { hr, doc, properties } = await deadline(settled, timeoutMs, "HcsGetProcessProperties", p.systemId);
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsGetProcessProperties", systemId: p.systemId, resultDocument: doc });
    return properties;
  }

  waitForProcessExit(process: BackendProcess): Promise<string | undefined> {
    return Promise.reject(
      new HcsError("NOT_IMPLEMENTED", "vmcompute.dll has no HcsWaitForProcessExit; poll the process properties", {
        hresult: HRESULT.ERROR_PROC_NOT_FOUND,
        systemId: process.systemId,
      }),
    );
  }

  closeProcess(process: BackendProcess): Promise<void> {
    if (!(process instanceof V1Process)) return Promise.reject(new HcsError("INVALID_ARGUMENT", "this process handle belongs to the other HCS library (computecore.dll)"));
    process.closed ??= (async () => {
      await process.calls.drain();
      for (const h of [process.stdio.stdin, process.stdio.stdout, process.stdio.stderr]) if (h) this.#closeHandle(h);
      const hr = await callAsync<number>(this.#f.HcsCloseProcess, process.handle);
      if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsCloseProcess", systemId: process.systemId });
    })();
    return process.closed;
  }

  async grantVmAccess(vmId: string, path: string): Promise<void> {
    checkString(vmId, "vmId");
    checkString(path, "path");
    const hr = await callAsync<number>(this.#f.GrantVmAccess, vmId, path);
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "GrantVmAccess", systemId: vmId });
  }

  revokeVmAccess(): Promise<void> {
    return Promise.reject(new HcsError("NOT_IMPLEMENTED", "vmcompute.dll has no RevokeVmAccess; delete the file or reset its ACL instead", { hresult: HRESULT.ERROR_PROC_NOT_FOUND }));
  }

  async getServiceProperties(query: string | null): Promise<string | undefined> {
    if (query !== null) checkString(query, "query");
    const props: unknown[] = [null];
    const res: unknown[] = [null];
    const hr = await callAsync<number>(this.#f.HcsGetServiceProperties, query ?? EMPTY_OPTIONS, props, res);
    const doc = this.#take(res[0]);
    const properties = this.#take(props[0]);
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsGetServiceProperties", resultDocument: doc });
    return properties;
  }
}
