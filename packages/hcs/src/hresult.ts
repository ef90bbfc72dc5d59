/**
 * HRESULT values the Host Compute Service returns, with helpers that compare
 * them across the two HCS code families (documented `0x8037xxxx`, legacy
 * vmcompute `0xC037xxxx`) and the Win32 codes wrapped as `0x8007xxxx`.
 *
 * Values are unsigned 32-bit numbers so they print and compare the way the
 * documentation writes them; koffi hands us signed int32s, see {@link toUnsigned}.
 */

/** Every HRESULT this package knows by name. The key is the symbolic name reported in errors. */
export const HRESULT = {
  /** Success. */
  S_OK: 0x00000000,
  /** Not implemented (what `HcsCancelOperation` documents returning today). */
  E_NOTIMPL: 0x80004001,
  /** Unspecified failure. */
  E_FAIL: 0x80004005,
  /** ERROR_ACCESS_DENIED: file ACL missing (no GrantVmAccess) or caller not privileged. */
  E_ACCESSDENIED: 0x80070005,
  /** ERROR_INVALID_HANDLE: the handle was already closed. */
  E_HANDLE: 0x80070006,
  /** ERROR_INVALID_DATA: a document field HCS rejects (very common for bad JSON fields). */
  ERROR_INVALID_DATA: 0x8007000d,
  /** ERROR_OUTOFMEMORY. */
  E_OUTOFMEMORY: 0x8007000e,
  /** ERROR_NOT_SUPPORTED. */
  ERROR_NOT_SUPPORTED: 0x80070032,
  /** ERROR_INVALID_PARAMETER (E_INVALIDARG). */
  E_INVALIDARG: 0x80070057,
  /** ERROR_MOD_NOT_FOUND: the DLL is missing (computecore.dll before Windows 10 1809). */
  ERROR_MOD_NOT_FOUND: 0x8007007e,
  /** ERROR_PROC_NOT_FOUND: an export is missing from the DLL. */
  ERROR_PROC_NOT_FOUND: 0x8007007f,
  /** ERROR_ALREADY_EXISTS: e.g. a SCSI LUN that is already in use. */
  ERROR_ALREADY_EXISTS: 0x800700b7,
  /** ERROR_NOT_FOUND: an element (attachment, process) does not exist. */
  ERROR_NOT_FOUND: 0x80070490,

  /** The system exited while it was starting. */
  HCS_E_TERMINATED_DURING_START: 0x80370100,
  /** The container OS does not match the host OS. */
  HCS_E_IMAGE_MISMATCH: 0x80370101,
  /** A required feature (Hyper-V, Containers) is not installed. */
  HCS_E_HYPERV_NOT_INSTALLED: 0x80370102,
  /** The system is in the wrong state for the request. */
  HCS_E_INVALID_STATE: 0x80370105,
  /** The system exited unexpectedly. */
  HCS_E_UNEXPECTED_EXIT: 0x80370106,
  /** The system was forcefully terminated. */
  HCS_E_TERMINATED: 0x80370107,
  /** No connection to the guest could be made. */
  HCS_E_CONNECT_FAILED: 0x80370108,
  /** The guest did not answer in time. */
  HCS_E_CONNECTION_TIMEOUT: 0x80370109,
  /** The guest connection was closed. */
  HCS_E_CONNECTION_CLOSED: 0x8037010a,
  /** The guest does not know the message. */
  HCS_E_UNKNOWN_MESSAGE: 0x8037010b,
  /** The guest speaks an unsupported protocol version. */
  HCS_E_UNSUPPORTED_PROTOCOL_VERSION: 0x8037010c,
  /** The JSON document does not parse. */
  HCS_E_INVALID_JSON: 0x8037010d,
  /** No compute system has that id. */
  HCS_E_SYSTEM_NOT_FOUND: 0x8037010e,
  /** A compute system with that id already exists. */
  HCS_E_SYSTEM_ALREADY_EXISTS: 0x8037010f,
  /** The system is not running any more. */
  HCS_E_SYSTEM_ALREADY_STOPPED: 0x80370110,
  /** Protocol error with the guest. */
  HCS_E_PROTOCOL_ERROR: 0x80370111,
  /** A container layer is invalid. */
  HCS_E_INVALID_LAYER: 0x80370112,
  /** The feature needs a Windows Insider build. */
  HCS_E_WINDOWS_INSIDER_REQUIRED: 0x80370113,
  /** The vmcompute service or a feature it needs is unavailable. */
  HCS_E_SERVICE_NOT_AVAILABLE: 0x80370114,
  /** The operation was never used by a call. */
  HCS_E_OPERATION_NOT_STARTED: 0x80370115,
  /** The operation is already tracking a call. */
  HCS_E_OPERATION_ALREADY_STARTED: 0x80370116,
  /** The operation is still running (v2 `HcsGetOperationResult`). */
  HCS_E_OPERATION_PENDING: 0x80370117,
  /** The wait elapsed (v2 `HcsWaitForOperationResult`). */
  HCS_E_OPERATION_TIMEOUT: 0x80370118,
  /** A callback is already registered on the handle. */
  HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET: 0x80370119,
  /** HCS could not allocate the result. */
  HCS_E_OPERATION_RESULT_ALLOCATION_FAILED: 0x8037011a,
  /** The caller is not an administrator or in "Hyper-V Administrators". */
  HCS_E_ACCESS_DENIED: 0x8037011b,
  /** The guest reported a critical error. */
  HCS_E_GUEST_CRITICAL_ERROR: 0x8037011c,
  /** Process information is not available. */
  HCS_E_PROCESS_INFO_NOT_AVAILABLE: 0x8037011d,
  /** The vmcompute service disconnected. */
  HCS_E_SERVICE_DISCONNECT: 0x8037011e,
  /** The process has already exited. */
  HCS_E_PROCESS_ALREADY_STOPPED: 0x8037011f,

  /** vmcompute.dll: accepted, completes later through a notification (hcsshim ErrVmcomputeOperationPending). */
  VMCOMPUTE_E_OPERATION_PENDING: 0xc0370103,
  /** vmcompute.dll form of HCS_E_INVALID_STATE. */
  VMCOMPUTE_E_INVALID_STATE: 0xc0370105,
  /** vmcompute.dll form of HCS_E_UNEXPECTED_EXIT (status of an abnormal exit notification). */
  VMCOMPUTE_E_UNEXPECTED_EXIT: 0xc0370106,
  /** vmcompute.dll form of HCS_E_UNKNOWN_MESSAGE. */
  VMCOMPUTE_E_UNKNOWN_MESSAGE: 0xc037010b,
  /** vmcompute.dll form of HCS_E_INVALID_JSON. */
  VMCOMPUTE_E_INVALID_JSON: 0xc037010d,
  /** vmcompute.dll form of HCS_E_SYSTEM_NOT_FOUND. */
  VMCOMPUTE_E_SYSTEM_NOT_FOUND: 0xc037010e,
  /** vmcompute.dll form of HCS_E_SYSTEM_ALREADY_STOPPED. */
  VMCOMPUTE_E_SYSTEM_ALREADY_STOPPED: 0xc0370110,
} as const;

/** A symbolic HRESULT name from {@link HRESULT}. */
export type HresultName = keyof typeof HRESULT;

const NAME_BY_VALUE: ReadonlyMap<number, HresultName> = new Map(
  (Object.entries(HRESULT) as [HresultName, number][]).map(([name, value]) => [value, name]),
);

/** `INFINITE` for the `timeoutMs` parameters of HCS waits. */
export const INFINITE = 0xffffffff;

/** Reinterprets a (possibly signed) 32-bit HRESULT as unsigned, as the documentation writes them. */
export function toUnsigned(hr: number): number {
  return hr >>> 0;
}

/** Reinterprets an HRESULT as the signed int32 that `ResultError.Error` carries. */
export function toSigned(hr: number): number {
  return hr | 0;
}

/** `true` for a failing HRESULT (`< 0` as a signed int32). Any non-negative value is success. */
export function failed(hr: number): boolean {
  return (hr | 0) < 0;
}

/** `0x80370110` style: `0x` and eight upper-case hex digits. */
export function formatHresult(hr: number): string {
  return `0x${toUnsigned(hr).toString(16).toUpperCase().padStart(8, "0")}`;
}

/** The symbolic name of a known HRESULT, else `undefined`. */
export function hresultName(hr: number): HresultName | undefined {
  return NAME_BY_VALUE.get(toUnsigned(hr));
}

/**
 * hcsshim's comparison form: a FACILITY_WIN32 HRESULT (`0x8007xxxx`) becomes its
 * 16-bit Win32 error code, anything else keeps all 32 bits (unsigned).
 */
export function normalizeHresult(hr: number): number {
  const u = toUnsigned(hr);
  return (u & 0x1fff0000) === 0x00070000 ? u & 0xffff : u;
}

const FACILITY_HCS = 0x37;

/** The low word of an HCS-facility HRESULT of either family (`0x8037xxxx` or `0xC037xxxx`), else `undefined`. */
export function hcsCode(hr: number): number | undefined {
  const u = toUnsigned(hr);
  return (u >>> 31) === 1 && ((u >>> 16) & 0x1fff) === FACILITY_HCS ? u & 0xffff : undefined;
}

function hresultOf(value: unknown): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value === "object" && value !== null && "hresult" in value) {
    const hr = (value as { hresult: unknown }).hresult;
    return typeof hr === "number" ? hr : undefined;
  }
  return undefined;
}

/** Operation still pending: v1 `0xC0370103` or v2 `HCS_E_OPERATION_PENDING`, in either family. Accepts an HRESULT or an error carrying `hresult`. */
export function isPending(value: unknown): boolean {
  const hr = hresultOf(value);
  if (hr === undefined) return false;
  const code = hcsCode(hr);
  return code === 0x0103 || code === 0x0117;
}

/**
 * The system (or process) is already stopped, in either family; like hcsshim's
 * `IsAlreadyStopped`, ERROR_NOT_FOUND counts too.
 */
export function isAlreadyStopped(value: unknown): boolean {
  const hr = hresultOf(value);
  if (hr === undefined) return false;
  const code = hcsCode(hr);
  return code === 0x0110 || code === 0x011f || toUnsigned(hr) === HRESULT.ERROR_NOT_FOUND;
}

/** No such system (either family) or element (ERROR_NOT_FOUND), like hcsshim's `IsNotExist`. */
export function isNotFound(value: unknown): boolean {
  const hr = hresultOf(value);
  if (hr === undefined) return false;
  return hcsCode(hr) === 0x010e || toUnsigned(hr) === HRESULT.ERROR_NOT_FOUND;
}

/** The request or document is not understood: invalid JSON, invalid data, not supported, unknown message. */
export function isNotSupported(value: unknown): boolean {
  const hr = hresultOf(value);
  if (hr === undefined) return false;
  const code = hcsCode(hr);
  const u = toUnsigned(hr);
  return code === 0x010d || code === 0x010b || u === HRESULT.ERROR_INVALID_DATA || u === HRESULT.ERROR_NOT_SUPPORTED;
}

/** A v2 wait elapsed (`HCS_E_OPERATION_TIMEOUT` in either family). */
export function isTimeout(value: unknown): boolean {
  const hr = hresultOf(value);
  return hr !== undefined && hcsCode(hr) === 0x0118;
}
