import type { BackendProcess, BackendSystem, HcsBackend, ProcessStdio } from "./backend.js";
import { HcsError } from "./errors.js";
import { HRESULT, failed, isTimeout } from "./hresult.js";
import {
  InFlight,
  callAsync,
  checkString,
  nativeTypes,
  takeString,
  toDword,
  type Koffi,
  type KoffiFunction,
  type KoffiLib,
  type NativeHandle,
  type NativeProcessInformation,
  type StringFreer,
} from "./native.js";

/** `GENERIC_ALL`, the only access right `HcsOpenComputeSystem` accepts. */
const GENERIC_ALL = 0x10000000;

/**
 * Exports without which computecore.dll is unusable for us (spec 4, step 2). If any
 * is missing the whole DLL is rejected and vmcompute.dll is used instead.
 */
export const COMPUTECORE_REQUIRED = [
  "HcsCreateOperation",
  "HcsCloseOperation",
  "HcsWaitForOperationResult",
  "HcsGetOperationResult",
  "HcsCreateComputeSystem",
  "HcsOpenComputeSystem",
  "HcsStartComputeSystem",
  "HcsModifyComputeSystem",
  "HcsGetComputeSystemProperties",
  "HcsTerminateComputeSystem",
  "HcsCloseComputeSystem",
  "HcsGrantVmAccess",
] as const;

/** The computecore.dll functions this package binds. */
export interface ComputecoreFunctions {
  HcsCreateOperation: KoffiFunction;
  HcsCloseOperation: KoffiFunction;
  HcsCancelOperation: KoffiFunction;
  HcsGetOperationResult: KoffiFunction;
  HcsWaitForOperationResult: KoffiFunction;
  HcsWaitForOperationResultAndProcessInfo: KoffiFunction;
  HcsEnumerateComputeSystems: KoffiFunction;
  HcsCreateComputeSystem: KoffiFunction;
  HcsOpenComputeSystem: KoffiFunction;
  HcsCloseComputeSystem: KoffiFunction;
  HcsStartComputeSystem: KoffiFunction;
  HcsShutDownComputeSystem: KoffiFunction;
  HcsTerminateComputeSystem: KoffiFunction;
  HcsPauseComputeSystem: KoffiFunction;
  HcsResumeComputeSystem: KoffiFunction;
  HcsGetComputeSystemProperties: KoffiFunction;
  HcsModifyComputeSystem: KoffiFunction;
  HcsCreateProcess: KoffiFunction;
  HcsCloseProcess: KoffiFunction;
  HcsTerminateProcess: KoffiFunction;
  HcsSignalProcess: KoffiFunction;
  HcsGetProcessProperties: KoffiFunction;
  HcsGetServiceProperties: KoffiFunction;
  HcsGrantVmAccess: KoffiFunction;
  HcsRevokeVmAccess: KoffiFunction | undefined;
  HcsWaitForComputeSystemExit: KoffiFunction | undefined;
  HcsWaitForProcessExit: KoffiFunction | undefined;
}

// Prototypes in C syntax, types as spec section 1.1: HRESULT int32, DWORD uint32, PCWSTR str16,
// PWSTR* `_Out_ void **` (decoded, then freed by us), handles pointer-sized and opaque.
const PROTOTYPES: Record<keyof ComputecoreFunctions, string> = {
  HcsCreateOperation: "HCS_HANDLE HcsCreateOperation(void *context, void *callback)",
  HcsCloseOperation: "void HcsCloseOperation(HCS_HANDLE operation)",
  HcsCancelOperation: "int32 HcsCancelOperation(HCS_HANDLE operation)",
  HcsGetOperationResult: "int32 HcsGetOperationResult(HCS_HANDLE operation, _Out_ void **resultDocument)",
  HcsWaitForOperationResult: "int32 HcsWaitForOperationResult(HCS_HANDLE operation, uint32 timeoutMs, _Out_ void **resultDocument)",
  HcsWaitForOperationResultAndProcessInfo:
    "int32 HcsWaitForOperationResultAndProcessInfo(HCS_HANDLE operation, uint32 timeoutMs, _Out_ HCS_PROCESS_INFORMATION *processInformation, _Out_ void **resultDocument)",
  HcsEnumerateComputeSystems: "int32 HcsEnumerateComputeSystems(str16 query, HCS_HANDLE operation)",
  HcsCreateComputeSystem:
    "int32 HcsCreateComputeSystem(str16 id, str16 configuration, HCS_HANDLE operation, void *securityDescriptor, _Out_ HCS_HANDLE *computeSystem)",
  HcsOpenComputeSystem: "int32 HcsOpenComputeSystem(str16 id, uint32 requestedAccess, _Out_ HCS_HANDLE *computeSystem)",
  HcsCloseComputeSystem: "void HcsCloseComputeSystem(HCS_HANDLE computeSystem)",
  HcsStartComputeSystem: "int32 HcsStartComputeSystem(HCS_HANDLE computeSystem, HCS_HANDLE operation, str16 options)",
  HcsShutDownComputeSystem: "int32 HcsShutDownComputeSystem(HCS_HANDLE computeSystem, HCS_HANDLE operation, str16 options)",
  HcsTerminateComputeSystem: "int32 HcsTerminateComputeSystem(HCS_HANDLE computeSystem, HCS_HANDLE operation, str16 options)",
  HcsPauseComputeSystem: "int32 HcsPauseComputeSystem(HCS_HANDLE computeSystem, HCS_HANDLE operation, str16 options)",
  HcsResumeComputeSystem: "int32 HcsResumeComputeSystem(HCS_HANDLE computeSystem, HCS_HANDLE operation, str16 options)",
  HcsGetComputeSystemProperties: "int32 HcsGetComputeSystemProperties(HCS_HANDLE computeSystem, HCS_HANDLE operation, str16 propertyQuery)",
  HcsModifyComputeSystem:
    "int32 HcsModifyComputeSystem(HCS_HANDLE computeSystem, HCS_HANDLE operation, str16 configuration, void *identity)",
  HcsCreateProcess:
    "int32 HcsCreateProcess(HCS_HANDLE computeSystem, str16 processParameters, HCS_HANDLE operation, void *securityDescriptor, _Out_ HCS_HANDLE *process)",
  HcsCloseProcess: "void HcsCloseProcess(HCS_HANDLE process)",
  HcsTerminateProcess: "int32 HcsTerminateProcess(HCS_HANDLE process, HCS_HANDLE operation, str16 options)",
  HcsSignalProcess: "int32 HcsSignalProcess(HCS_HANDLE process, HCS_HANDLE operation, str16 options)",
  HcsGetProcessProperties: "int32 HcsGetProcessProperties(HCS_HANDLE process, HCS_HANDLE operation, str16 propertyQuery)",
  HcsGetServiceProperties: "int32 HcsGetServiceProperties(str16 propertyQuery, _Out_ void **result)",
  HcsGrantVmAccess: "int32 HcsGrantVmAccess(str16 vmId, str16 filePath)",
  HcsRevokeVmAccess: "int32 HcsRevokeVmAccess(str16 vmId, str16 filePath)",
  HcsWaitForComputeSystemExit: "int32 HcsWaitForComputeSystemExit(HCS_HANDLE computeSystem, uint32 timeoutMs, _Out_ void **result)",
  HcsWaitForProcessExit: "int32 HcsWaitForProcessExit(HCS_HANDLE process, uint32 timeoutMs, _Out_ void **result)",
};

const OPTIONAL = new Set<keyof ComputecoreFunctions>(["HcsRevokeVmAccess", "HcsWaitForComputeSystemExit", "HcsWaitForProcessExit"]);

/**
 * Binds computecore.dll. Throws (koffi's "cannot find function" error) when a
 * required export is missing; optional ones come back `undefined`.
 */
export function bindComputecore(koffi: Koffi, lib: KoffiLib): ComputecoreFunctions {
  nativeTypes(koffi);
  const out: Partial<Record<keyof ComputecoreFunctions, KoffiFunction | undefined>> = {};
  for (const [name, proto] of Object.entries(PROTOTYPES) as [keyof ComputecoreFunctions, string][]) {
    if (OPTIONAL.has(name)) {
      // koffi throws when a symbol is missing; optional exports only exist on newer Windows.
      try {
        out[name] = lib.func(proto);
      } catch {
        out[name] = undefined;
      }
    } else {
      out[name] = lib.func(proto);
    }
  }
  return out as ComputecoreFunctions;
}

class V2System implements BackendSystem {
  readonly api = "v2" as const;
  readonly calls = new InFlight();
  closed: Promise<void> | undefined;
  constructor(
    readonly id: string,
    readonly handle: NativeHandle,
  ) {}
}

class V2Process implements BackendProcess {
  readonly api = "v2" as const;
  readonly calls = new InFlight();
  closed: Promise<void> | undefined;
  constructor(
    readonly systemId: string,
    readonly handle: NativeHandle,
    readonly pid: number,
    readonly stdio: ProcessStdio,
  ) {}
}

interface OperationResult {
  document: string | undefined;
  info: NativeProcessInformation | undefined;
}

/** computecore.dll backend: every call runs with its own operation, waited with a timeout. */
export class ComputecoreBackend implements HcsBackend {
  readonly api = "v2" as const;
  readonly optional: { readonly waitForSystemExit: boolean; readonly waitForProcessExit: boolean };
  readonly #koffi: Koffi;
  readonly #f: ComputecoreFunctions;
  readonly #free: StringFreer;
  readonly #closeHandle: KoffiFunction;

  constructor(
    koffi: Koffi,
    functions: ComputecoreFunctions,
    free: StringFreer,
    closeHandle: KoffiFunction,
    readonly library: string,
  ) {
    this.#koffi = koffi;
    this.#f = functions;
    this.#free = free;
    this.#closeHandle = closeHandle;
    this.optional = {
      waitForSystemExit: functions.HcsWaitForComputeSystemExit !== undefined,
      waitForProcessExit: functions.HcsWaitForProcessExit !== undefined,
    };
  }

  #take(ptr: unknown): string | undefined {
    return takeString(this.#koffi, this.#free, ptr);
  }

  /**
   * hcsshim's `runOperation`: create an operation, start the call, wait for its
   * result with a timeout, always close the operation (spec 2.1).
   */
  async #run(
    operation: string,
    systemId: string | undefined,
    timeoutMs: number,
    start: (op: NativeHandle) => Promise<number>,
    withProcessInfo = false,
  ): Promise<OperationResult> {
    const ms = toDword(timeoutMs);
    const op = this.#f.HcsCreateOperation(null, null) as NativeHandle | null;
    if (!op) {
      throw new HcsError("OUT_OF_RESOURCES", `${operation}: HcsCreateOperation returned NULL`, { operation, ...(systemId ? { systemId } : {}) });
    }
    try {
      const hr = await start(op);
      if (failed(hr)) {
        // Nothing was started, but HCS may already have attached an error document to the operation.
        const doc: unknown[] = [null];
        this.#f.HcsGetOperationResult(op, doc);
        throw HcsError.fromHresult(hr, { operation, ...(systemId ? { systemId } : {}), resultDocument: this.#take(doc[0]) });
      }
      const doc: unknown[] = [null];
      let info: NativeProcessInformation | undefined;
      let whr: number;
      if (withProcessInfo) {
        const pi = {} as NativeProcessInformation;
        whr = await callAsync<number>(this.#f.HcsWaitForOperationResultAndProcessInfo, op, ms, pi, doc);
        info = pi;
      } else {
        whr = await callAsync<number>(this.#f.HcsWaitForOperationResult, op, ms, doc);
      }
      const document = this.#take(doc[0]);
      if (failed(whr)) {
        if (isTimeout(whr)) {
          // Best effort: documented as E_NOTIMPL today. Closing the operation below is allowed while it runs.
          this.#f.HcsCancelOperation(op);
          throw new HcsError("TIMEOUT", `${operation}${systemId ? ` ${systemId}` : ""}: did not complete within ${timeoutMs} ms`, {
            hresult: whr,
            operation,
            ...(systemId ? { systemId } : {}),
          });
        }
        throw HcsError.fromHresult(whr, { operation, ...(systemId ? { systemId } : {}), resultDocument: document });
      }
      return { document, info };
    } finally {
      this.#f.HcsCloseOperation(op);
    }
  }

  #system(system: BackendSystem): V2System {
    if (!(system instanceof V2System)) throw new HcsError("INVALID_ARGUMENT", "this handle belongs to the other HCS library (vmcompute.dll)");
    if (system.closed) throw new HcsError("HANDLE_CLOSED", `compute system ${system.id} is closed`, { systemId: system.id });
    return system;
  }

  #process(process: BackendProcess): V2Process {
    if (!(process instanceof V2Process)) throw new HcsError("INVALID_ARGUMENT", "this process handle belongs to the other HCS library (vmcompute.dll)");
    if (process.closed) throw new HcsError("HANDLE_CLOSED", `process ${process.pid} is closed`, { systemId: process.systemId });
    return process;
  }

  async enumerate(query: string | null, timeoutMs: number): Promise<string | undefined> {
    if (query !== null) checkString(query, "query");
    const r = await this.#run("HcsEnumerateComputeSystems", undefined, timeoutMs, (op) =>
      callAsync<number>(this.#f.HcsEnumerateComputeSystems, query, op),
    );
    return r.document;
  }

  async create(id: string, document: string, timeoutMs: number): Promise<BackendSystem> {
    checkString(id, "id");
    checkString(document, "document");
    let handle: NativeHandle | null = null;
    try {
      await this.#run("HcsCreateComputeSystem", id, timeoutMs, async (op) => {
        const out: unknown[] = [null];
        const hr = await callAsync<number>(this.#f.HcsCreateComputeSystem, id, document, op, null, out);
        handle = (out[0] as NativeHandle | null) ?? null;
        return hr;
      });
    } catch (err) {
      // The handle is filled even when the operation later fails; it must still be closed.
      if (handle) {
        const h: NativeHandle = handle;
        if (err instanceof HcsError && err.code === "TIMEOUT") {
          // As hcsshim does on a create timeout: do not leave a half-created VM behind.
          await this.#run("HcsTerminateComputeSystem", id, 30_000, (op) =>
            callAsync<number>(this.#f.HcsTerminateComputeSystem, h, op, null),
          ).catch(() => undefined);
        }
        await callAsync<void>(this.#f.HcsCloseComputeSystem, h);
      }
      throw err;
    }
    if (!handle) throw new HcsError("INTERNAL", `HcsCreateComputeSystem ${id}: succeeded without a handle`, { systemId: id });
    return new V2System(id, handle);
  }

  async open(id: string): Promise<BackendSystem> {
    checkString(id, "id");
    const out: unknown[] = [null];
    const hr = await callAsync<number>(this.#f.HcsOpenComputeSystem, id, GENERIC_ALL, out);
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsOpenComputeSystem", systemId: id });
    const handle = out[0] as NativeHandle | null;
    if (!handle) throw new HcsError("INTERNAL", `HcsOpenComputeSystem ${id}: succeeded without a handle`, { systemId: id });
    return new V2System(id, handle);
  }

  #systemCall(name: "HcsStartComputeSystem" | "HcsShutDownComputeSystem" | "HcsTerminateComputeSystem" | "HcsPauseComputeSystem" | "HcsResumeComputeSystem", system: BackendSystem, timeoutMs: number): Promise<void> {
    const s = this.#system(system);
    return s.calls.track(this.#run(name, s.id, timeoutMs, (op) => callAsync<number>(this.#f[name], s.handle, op, null))).then(() => undefined);
  }

  async start(system: BackendSystem, timeoutMs: number): Promise<void> {
    return this.#systemCall("HcsStartComputeSystem", system, timeoutMs);
  }
  async shutdown(system: BackendSystem, timeoutMs: number): Promise<void> {
    return this.#systemCall("HcsShutDownComputeSystem", system, timeoutMs);
  }
  async terminate(system: BackendSystem, timeoutMs: number): Promise<void> {
    return this.#systemCall("HcsTerminateComputeSystem", system, timeoutMs);
  }
  async pause(system: BackendSystem, timeoutMs: number): Promise<void> {
    return this.#systemCall("HcsPauseComputeSystem", system, timeoutMs);
  }
  async resume(system: BackendSystem, timeoutMs: number): Promise<void> {
    return this.#systemCall("HcsResumeComputeSystem", system, timeoutMs);
  }

  async getProperties(system: BackendSystem, query: string | null, timeoutMs: number): Promise<string | undefined> {
    const s = this.#system(system);
    if (query !== null) checkString(query, "query");
    const r = await s.calls.track(
      this.#run("HcsGetComputeSystemProperties", s.id, timeoutMs, (op) => callAsync<number>(this.#f.HcsGetComputeSystemProperties, s.handle, op, query)),
    );
    return r.document;
  }

  async modify(system: BackendSystem, request: string, timeoutMs: number): Promise<void> {
    const s = this.#system(system);
    checkString(request, "request");
    await s.calls.track(
      this.#run("HcsModifyComputeSystem", s.id, timeoutMs, (op) => callAsync<number>(this.#f.HcsModifyComputeSystem, s.handle, op, request, null)),
    );
  }

  async waitForExit(system: BackendSystem, timeoutMs: number): Promise<string | undefined> {
    const s = this.#system(system);
    const fn = this.#f.HcsWaitForComputeSystemExit;
    if (!fn) throw new HcsError("NOT_IMPLEMENTED", "HcsWaitForComputeSystemExit is not exported by this computecore.dll", { hresult: HRESULT.ERROR_PROC_NOT_FOUND, systemId: s.id });
    const out: unknown[] = [null];
    const hr = await s.calls.track(callAsync<number>(fn, s.handle, toDword(timeoutMs), out));
    const doc = this.#take(out[0]);
    if (isTimeout(hr)) {
      throw new HcsError("TIMEOUT", `HcsWaitForComputeSystemExit ${s.id}: the system did not exit within ${timeoutMs} ms`, {
        hresult: hr,
        operation: "HcsWaitForComputeSystemExit",
        systemId: s.id,
      });
    }
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsWaitForComputeSystemExit", systemId: s.id, resultDocument: doc });
    return doc;
  }

  closeSystem(system: BackendSystem): Promise<void> {
    // Reject rather than throw, like every other backend call.
    if (!(system instanceof V2System)) return Promise.reject(new HcsError("INVALID_ARGUMENT", "this handle belongs to the other HCS library (vmcompute.dll)"));
    system.closed ??= (async () => {
      await system.calls.drain();
      await callAsync<void>(this.#f.HcsCloseComputeSystem, system.handle);
    })();
    return system.closed;
  }

  async createProcess(system: BackendSystem, parameters: string, timeoutMs: number): Promise<BackendProcess> {
    const s = this.#system(system);
    checkString(parameters, "parameters");
    let handle: NativeHandle | null = null;
    let result: OperationResult;
    try {
      result = await s.calls.track(
        this.#run(
          "HcsCreateProcess",
          s.id,
          timeoutMs,
          async (op) => {
            const out: unknown[] = [null];
            const hr = await callAsync<number>(this.#f.HcsCreateProcess, s.handle, parameters, op, null, out);
            handle = (out[0] as NativeHandle | null) ?? null;
            return hr;
          },
          true,
        ),
      );
    } catch (err) {
      if (handle) await callAsync<void>(this.#f.HcsCloseProcess, handle);
      throw err;
    }
    if (!handle) throw new HcsError("INTERNAL", `HcsCreateProcess ${s.id}: succeeded without a handle`, { systemId: s.id });
    const info = result.info;
    return new V2Process(s.id, handle, info?.ProcessId ?? 0, {
      stdin: info?.StdInput ?? null,
      stdout: info?.StdOutput ?? null,
      stderr: info?.StdError ?? null,
    });
  }

  async terminateProcess(process: BackendProcess, timeoutMs: number): Promise<void> {
    const p = this.#process(process);
    await p.calls.track(this.#run("HcsTerminateProcess", p.systemId, timeoutMs, (op) => callAsync<number>(this.#f.HcsTerminateProcess, p.handle, op, null)));
  }

  async signalProcess(process: BackendProcess, options: string, timeoutMs: number): Promise<void> {
    const p = this.#process(process);
    checkString(options, "options");
    await p.calls.track(this.#run("HcsSignalProcess", p.systemId, timeoutMs, (op) => callAsync<number>(this.#f.HcsSignalProcess, p.handle, op, options)));
  }

  async getProcessProperties(process: BackendProcess, timeoutMs: number): Promise<string | undefined> {
    const p = this.#process(process);
    const r = await p.calls.track(
      this.#run("HcsGetProcessProperties", p.systemId, timeoutMs, (op) => callAsync<number>(this.#f.HcsGetProcessProperties, p.handle, op, null)),
    );
    return r.document;
  }

  async waitForProcessExit(process: BackendProcess, timeoutMs: number): Promise<string | undefined> {
    const p = this.#process(process);
    const fn = this.#f.HcsWaitForProcessExit;
    if (!fn) throw new HcsError("NOT_IMPLEMENTED", "HcsWaitForProcessExit is not exported by this computecore.dll", { hresult: HRESULT.ERROR_PROC_NOT_FOUND, systemId: p.systemId });
    const out: unknown[] = [null];
    const hr = await p.calls.track(callAsync<number>(fn, p.handle, toDword(timeoutMs), out));
    const doc = this.#take(out[0]);
    if (isTimeout(hr)) {
      throw new HcsError("TIMEOUT", `HcsWaitForProcessExit ${p.systemId}: process ${p.pid} did not exit within ${timeoutMs} ms`, {
        hresult: hr,
        operation: "HcsWaitForProcessExit",
        systemId: p.systemId,
      });
    }
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsWaitForProcessExit", systemId: p.systemId, resultDocument: doc });
    return doc;
  }

  closeProcess(process: BackendProcess): Promise<void> {
    if (!(process instanceof V2Process)) return Promise.reject(new HcsError("INVALID_ARGUMENT", "this process handle belongs to the other HCS library (vmcompute.dll)"));
    process.closed ??= (async () => {
      await process.calls.drain();
      // The caller owns the pipe handles HCS created (spec 2.2).
      for (const h of [process.stdio.stdin, process.stdio.stdout, process.stdio.stderr]) if (h) this.#closeHandle(h);
      await callAsync<void>(this.#f.HcsCloseProcess, process.handle);
    })();
    return process.closed;
  }

  async grantVmAccess(vmId: string, path: string): Promise<void> {
    checkString(vmId, "vmId");
    checkString(path, "path");
    const hr = await callAsync<number>(this.#f.HcsGrantVmAccess, vmId, path);
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsGrantVmAccess", systemId: vmId });
  }

  async revokeVmAccess(vmId: string, path: string): Promise<void> {
    checkString(vmId, "vmId");
    checkString(path, "path");
    const fn = this.#f.HcsRevokeVmAccess;
    if (!fn) throw new HcsError("NOT_IMPLEMENTED", "HcsRevokeVmAccess is not exported by this computecore.dll", { hresult: HRESULT.ERROR_PROC_NOT_FOUND });
    const hr = await callAsync<number>(fn, vmId, path);
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsRevokeVmAccess", systemId: vmId });
  }

  async getServiceProperties(query: string | null): Promise<string | undefined> {
    if (query !== null) checkString(query, "query");
    const out: unknown[] = [null];
    const hr = await callAsync<number>(this.#f.HcsGetServiceProperties, query, out);
    const doc = this.#take(out[0]);
    if (failed(hr)) throw HcsError.fromHresult(hr, { operation: "HcsGetServiceProperties", resultDocument: doc });
    return doc;
  }
}
