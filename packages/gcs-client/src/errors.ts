/**
 * Stable error codes of `@lcow/gcs-client`. Callers test `err.code`, never the message.
 */
export const GcsErrorCode = {
  /** A frame or payload that breaks the bridge protocol: bad size, bad type, bad JSON, unknown response id. */
  PROTOCOL: "PROTOCOL",
  /** A frame larger than the limit chosen for the connection (`maxMessageSize`). */
  MESSAGE_TOO_LARGE: "MESSAGE_TOO_LARGE",
  /** The guest answered with a failing HRESULT; see `hresult` and `records`. */
  RPC_FAILED: "RPC_FAILED",
  /** The guest speaks no protocol version we support (only 4 exists), or is not a Linux GCS. */
  UNSUPPORTED_VERSION: "UNSUPPORTED_VERSION",
  /** A wait ran out: an RPC, a connection from the guest, a process exit. */
  TIMEOUT: "TIMEOUT",
  /** The bridge or a stdio channel closed (or the guest died) before the answer came. */
  CLOSED: "CLOSED",
  /** A caller-supplied value is invalid (a LUN out of range, a non-absolute guest path, ...). */
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  /** No such process, disk or layer in the guest or in the handle's tables. */
  NOT_FOUND: "NOT_FOUND",
  /** The thing exists already (a LUN in use, a mount path taken). */
  ALREADY_EXISTS: "ALREADY_EXISTS",
  /** The guest does not implement the RPC (E_NOTIMPL), or it was sent before NegotiateProtocol. */
  NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
  /** The caller aborted the wait (an AbortSignal). A sent request stays registered; its answer is dropped. */
  CANCELLED: "CANCELLED",
  /** A host resource could not be had: a listen failed, a socket call failed. */
  UNAVAILABLE: "UNAVAILABLE",
  /** The transport or operation is not available on this platform. */
  UNSUPPORTED_PLATFORM: "UNSUPPORTED_PLATFORM",
  /** A utility VM failed to start or exited unexpectedly. */
  VM_FAILED: "VM_FAILED",
  /** A bug in this package, or a foreign throw (kept as `cause`). */
  INTERNAL: "INTERNAL",
} as const;

export type GcsErrorCode = (typeof GcsErrorCode)[keyof typeof GcsErrorCode];

/** One `ErrorRecords` entry of a failed guest response. */
export interface GcsErrorRecord {
  Result: number;
  Message: string;
  StackTrace?: string;
  ModuleName?: string;
  FileName?: string;
  Line?: number;
  FunctionName?: string;
}

export interface GcsErrorDetails {
  /** The guest's HRESULT, unsigned (`0x80004005`), for RPC_FAILED. */
  hresult?: number;
  /** The guest's `ErrorRecords`, for RPC_FAILED. */
  records?: readonly GcsErrorRecord[];
  /** The RPC or operation, e.g. `ModifySettings`. */
  operation?: string;
  cause?: unknown;
}

/** The one error class of `@lcow/gcs-client`. */
export class GcsError extends Error {
  // Set explicitly so the class is recognised when two copies of the package are loaded.
  override readonly name = "GcsError";
  readonly code: GcsErrorCode;
  readonly hresult: number | undefined;
  readonly records: readonly GcsErrorRecord[];
  readonly operation: string | undefined;

  constructor(code: GcsErrorCode, message: string, details: GcsErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.hresult = details.hresult === undefined ? undefined : details.hresult >>> 0;
    this.records = details.records ?? [];
    this.operation = details.operation;
  }
}

/** True for a `GcsError`, also across two loaded copies of the package. */
export function isGcsError(err: unknown): err is GcsError {
  return err instanceof Error && err.name === "GcsError" && typeof (err as { code?: unknown }).code === "string";
}

/** Wraps a foreign throw as INTERNAL (keeping it as `cause`); a GcsError passes through. */
export function toGcsError(err: unknown, what: string): GcsError {
  if (isGcsError(err)) return err;
  return new GcsError("INTERNAL", `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
