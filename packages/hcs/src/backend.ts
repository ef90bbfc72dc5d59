import type { NativeHandle } from "./native.js";

/** Which HCS API a backend speaks: `v2` = computecore.dll, `v1` = vmcompute.dll. */
export type HcsApi = "v1" | "v2";

/** A compute system handle owned by one backend. Never pass it to the other backend. */
export interface BackendSystem {
  /** The compute system id given to create/open. */
  readonly id: string;
  /** The backend that produced the handle: the two DLLs' handles are not interchangeable. */
  readonly api: HcsApi;
}

/** Host pipe handles of a process created with `CreateStd*Pipe` (closed by `closeProcess`). */
export interface ProcessStdio {
  readonly stdin: NativeHandle | null;
  readonly stdout: NativeHandle | null;
  readonly stderr: NativeHandle | null;
}

/** A process handle owned by one backend. */
export interface BackendProcess {
  readonly api: HcsApi;
  readonly systemId: string;
  readonly pid: number;
  readonly stdio: ProcessStdio;
}

/**
 * The calls both DLL bindings implement, each already asynchronous (off the JS
 * thread), with HRESULT failures turned into `HcsError`s. Documents travel as
 * JSON strings; `ComputeSystem` adds types and the lifetime rules on top.
 *
 * `timeoutMs` is a DWORD or `Infinity`.
 */
export interface HcsBackend {
  readonly api: HcsApi;
  /** The library path the backend was loaded from. */
  readonly library: string;
  /** Whether the optional newer exports are present (Windows Server 2022 / "Windows 10 2104"+). */
  readonly optional: { readonly waitForSystemExit: boolean; readonly waitForProcessExit: boolean };

  enumerate(query: string | null, timeoutMs: number): Promise<string | undefined>;
  create(id: string, document: string, timeoutMs: number): Promise<BackendSystem>;
  open(id: string): Promise<BackendSystem>;
  start(system: BackendSystem, timeoutMs: number): Promise<void>;
  shutdown(system: BackendSystem, timeoutMs: number): Promise<void>;
  terminate(system: BackendSystem, timeoutMs: number): Promise<void>;
  pause(system: BackendSystem, timeoutMs: number): Promise<void>;
  resume(system: BackendSystem, timeoutMs: number): Promise<void>;
  getProperties(system: BackendSystem, query: string | null, timeoutMs: number): Promise<string | undefined>;
  modify(system: BackendSystem, request: string, timeoutMs: number): Promise<void>;
  /** Resolves with the `SystemExitStatus` JSON once the system stopped. v2 without the optional export throws NOT_IMPLEMENTED. */
  waitForExit(system: BackendSystem, timeoutMs: number): Promise<string | undefined>;
  /** Waits for running calls on the handle, then releases it. Idempotent per handle. */
  closeSystem(system: BackendSystem): Promise<void>;

  createProcess(system: BackendSystem, parameters: string, timeoutMs: number): Promise<BackendProcess>;
  terminateProcess(process: BackendProcess, timeoutMs: number): Promise<void>;
  signalProcess(process: BackendProcess, options: string, timeoutMs: number): Promise<void>;
  getProcessProperties(process: BackendProcess, timeoutMs: number): Promise<string | undefined>;
  /** Resolves with the `ProcessStatus` JSON once the process exited. Throws NOT_IMPLEMENTED where unsupported. */
  waitForProcessExit(process: BackendProcess, timeoutMs: number): Promise<string | undefined>;
  /** Waits for running calls, closes the stdio pipes and the process handle. Idempotent. */
  closeProcess(process: BackendProcess): Promise<void>;

  grantVmAccess(vmId: string, path: string): Promise<void>;
  /** v2 only; v1 throws NOT_IMPLEMENTED. */
  revokeVmAccess(vmId: string, path: string): Promise<void>;
  getServiceProperties(query: string | null): Promise<string | undefined>;
}
