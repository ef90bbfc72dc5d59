// The one place where guest results become our error codes (STYLE item 6). Everything else in
// the package throws GcsError with a code chosen here or at the failing call.
import { GcsError, type GcsErrorCode, type GcsErrorRecord } from "./errors.js";
import { Hresult, formatHresult } from "./protocol/hresult.js";

/**
 * Guest HRESULTs with a meaning a caller can act on. Anything else is RPC_FAILED; every guest
 * failure, mapped or not, carries `hresult` and `records`, so `err.hresult !== undefined` tells
 * a guest's answer from a local failure.
 */
export const HRESULT_CODES: ReadonlyMap<number, GcsErrorCode> = new Map<number, GcsErrorCode>([
  // Unknown pid for Wait/Signal, or an external process already reaped by an earlier wait.
  [Hresult.ERROR_NOT_FOUND, "NOT_FOUND"],
  // Unknown container id (also what SignalProcess answers for a UVM process).
  [Hresult.VMCOMPUTE_SYSTEM_NOT_FOUND, "NOT_FOUND"],
  [Hresult.VMCOMPUTE_SYSTEM_ALREADY_EXISTS, "ALREADY_EXISTS"],
  [Hresult.E_INVALIDARG, "INVALID_ARGUMENT"],
  // The guest could not parse what we sent: our bug or a field it does not know, either way the input.
  [Hresult.VMCOMPUTE_INVALID_JSON, "INVALID_ARGUMENT"],
  // WaitForProcess ran out of its TimeoutInMs.
  [Hresult.VMCOMPUTE_TIMEOUT, "TIMEOUT"],
  [Hresult.VMCOMPUTE_UNSUPPORTED_PROTOCOL_VERSION, "UNSUPPORTED_VERSION"],
  // Unknown RPC, or anything sent before NegotiateProtocol (also: a GCS started without -v4).
  [Hresult.E_NOTIMPL, "NOT_IMPLEMENTED"],
  [Hresult.VMCOMPUTE_UNKNOWN_MESSAGE, "NOT_IMPLEMENTED"],
]);

/** Our code for a guest HRESULT (signed or unsigned). */
export function codeForHresult(hresult: number): GcsErrorCode {
  return HRESULT_CODES.get(hresult >>> 0) ?? "RPC_FAILED";
}

/**
 * The error for a response whose `Result` is not 0: names the RPC, the HRESULT and the guest's
 * ErrorMessage. `hint` is appended when we can guess the cause (e.g. a missing negotiate()).
 */
export function rpcFailure(rpc: string, payload: Record<string, unknown>, hint?: string): GcsError {
  const hresult = (payload["Result"] as number) >>> 0;
  const guestMessage = typeof payload["ErrorMessage"] === "string" && payload["ErrorMessage"] !== "" ? payload["ErrorMessage"] : "no error message";
  return new GcsError(codeForHresult(hresult), `${rpc} failed in the guest with ${formatHresult(hresult)}: ${guestMessage}${hint ? ` (${hint})` : ""}`, {
    hresult,
    records: errorRecords(payload["ErrorRecords"]),
    operation: rpc,
  });
}

/** `ErrorRecords`, keeping only entries shaped like records: a broken list must not hide the failure. */
function errorRecords(value: unknown): GcsErrorRecord[] {
  if (!Array.isArray(value)) return [];
  return value.filter(
    (r): r is GcsErrorRecord => typeof r === "object" && r !== null && typeof (r as GcsErrorRecord).Result === "number" && typeof (r as GcsErrorRecord).Message === "string",
  );
}
