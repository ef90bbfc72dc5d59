/**
 * `@lcow/hcs`: koffi bindings to the Windows Host Compute Service
 * (computecore.dll, with vmcompute.dll fallback), typed schema documents for an
 * LCOW utility VM, and HRESULT errors. Importing is side-effect free on every OS;
 * native code loads on first use.
 */
export { ComputeSystem, type ComputeSystemCallOptions, type CreateDocument, type HcsSelector } from "./compute-system.js";
export { HcsProcess, type WaitOptions } from "./process.js";
export { Hcs, DEFAULT_TIMEOUT_MS, getHcs, setDefaultHcs, type HcsOptions } from "./hcs.js";
export type { HcsApi, ProcessStdio } from "./backend.js";
export type { FreeFunctionName, HcsDetection, HcsLibraryOptions } from "./library.js";
export { HcsError, HCS_ERROR_CODES, codeForHresult, parseResultError, type HcsErrorCode, type HcsErrorEvent, type HcsResultError } from "./errors.js";
export {
  HRESULT,
  INFINITE,
  failed,
  formatHresult,
  hcsCode,
  hresultName,
  isAlreadyStopped,
  isNotFound,
  isNotSupported,
  isPending,
  isTimeout,
  normalizeHresult,
  toSigned,
  toUnsigned,
  type HresultName,
} from "./hresult.js";
export { grantVmAccess, revokeVmAccess } from "./grant.js";
export { BUILD_KERNEL_DIRECT, BUILD_RS5, checkHost, supportedSchemaVersions, supportsSchema, type CheckHostOptions, type HostCheck } from "./service.js";
export { V1_NOTIFICATION } from "./vmcompute.js";
export { COMPUTECORE_REQUIRED } from "./computecore.js";
export type { NativeHandle } from "./native.js";
// The one place koffi is loaded; @lcow/gcs-client's AF_HYPERV transport binds Winsock through it.
export { loadKoffi, type Koffi, type KoffiLib, type KoffiFunction } from "./native.js";
export * from "./schema/index.js";
