// The guest's one error class, and the one place where errors become bridge HRESULTs (spec
// §2.3). Handlers throw GuestErrors (or anything: foreign throws are normalised here), and the
// connection turns them into the failed response's Result, ErrorMessage and ErrorRecords.
import { isDriverError } from "@lcow/driver/kernel";
import { Hresult, toWireHresult, type ErrorRecord } from "@lcow/gcs-client/protocol";

/** Stable codes of guest errors. Each maps to one HRESULT in `HRESULT_OF`. */
export const GuestErrorCode = {
  /** A request other than NegotiateProtocol on a connection that has not negotiated. */
  NOT_NEGOTIATED: "NOT_NEGOTIATED",
  /** An RPC, resource type or option this guest does not implement. */
  NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
  /** NegotiateProtocol with a version range that excludes 4. */
  UNSUPPORTED_VERSION: "UNSUPPORTED_VERSION",
  /** A payload, or the JSON inside a string field, does not parse or has a field of the wrong type. */
  INVALID_JSON: "INVALID_JSON",
  /** A well-formed request with a value we cannot use (a relative path, a LUN out of range). */
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  /** No such process (never started, or already waited for). */
  NOT_FOUND: "NOT_FOUND",
  /** The ContainerId names no container (this guest runs none). */
  SYSTEM_NOT_FOUND: "SYSTEM_NOT_FOUND",
  /** WaitForProcess ran out of TimeoutInMs. */
  TIMEOUT: "TIMEOUT",
  /** The thing exists already (a mount path in use, a LUN holding another disk). */
  ALREADY_EXISTS: "ALREADY_EXISTS",
  /** The bridge connection closed while the request waited. */
  CLOSED: "CLOSED",
  /** The work failed: a mount, an exec, a dial. */
  FAILED: "FAILED",
  /** A bug, or a foreign throw (kept as `cause`). */
  INTERNAL: "INTERNAL",
} as const;

export type GuestErrorCode = (typeof GuestErrorCode)[keyof typeof GuestErrorCode];

/** The HRESULT each code is answered with (the real guest's choices, hcsshim gcserr). */
const HRESULT_OF: Record<GuestErrorCode, number> = {
  NOT_NEGOTIATED: Hresult.E_NOTIMPL,
  NOT_IMPLEMENTED: Hresult.E_NOTIMPL,
  UNSUPPORTED_VERSION: Hresult.VMCOMPUTE_UNSUPPORTED_PROTOCOL_VERSION,
  INVALID_JSON: Hresult.VMCOMPUTE_INVALID_JSON,
  INVALID_ARGUMENT: Hresult.E_INVALIDARG,
  NOT_FOUND: Hresult.ERROR_NOT_FOUND,
  SYSTEM_NOT_FOUND: Hresult.VMCOMPUTE_SYSTEM_NOT_FOUND,
  TIMEOUT: Hresult.VMCOMPUTE_TIMEOUT,
  ALREADY_EXISTS: Hresult.E_FAIL,
  CLOSED: Hresult.E_FAIL,
  FAILED: Hresult.E_FAIL,
  INTERNAL: Hresult.E_FAIL,
};

export class GuestError extends Error {
  // Set explicitly so the class is recognised when two copies are loaded.
  override readonly name = "GuestError";
  readonly code: GuestErrorCode;

  constructor(code: GuestErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

export function isGuestError(err: unknown): err is GuestError {
  return err instanceof Error && err.name === "GuestError" && typeof (err as { code?: unknown }).code === "string";
}

/**
 * Normalises anything thrown by a handler: GuestErrors pass through; the driver's primitives'
 * errors keep their message (a mount's stderr) as FAILED, or INVALID_ARGUMENT; anything else is
 * FAILED with `what` in front (an OS error while doing the work is a failed request, not a bug).
 */
export function toGuestError(err: unknown, what: string): GuestError {
  if (isGuestError(err)) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (isDriverError(err)) return new GuestError(err.code === "INVALID_ARGUMENT" ? "INVALID_ARGUMENT" : "FAILED", `${what}: ${message}`, { cause: err });
  return new GuestError("FAILED", `${what}: ${message}`, { cause: err });
}

/** The unsigned HRESULT a guest error is answered with. */
export function hresultOf(err: GuestError): number {
  return HRESULT_OF[err.code];
}

/**
 * The failure fields of a response (spec §2.3): the signed Result, the message, and one
 * ErrorRecords entry. `Line` is 4294967295, the real guest's "unknown", since a JS stack has no
 * single line to name.
 */
export function failureFields(err: GuestError, functionName: string): { Result: number; ErrorMessage: string; ErrorRecords: ErrorRecord[] } {
  const result = toWireHresult(hresultOf(err));
  return {
    Result: result,
    ErrorMessage: err.message,
    ErrorRecords: [{ Result: result, Message: err.message, ModuleName: "lcow-guest", FileName: "", Line: 0xffff_ffff, FunctionName: functionName }],
  };
}
