import { HRESULT, formatHresult, hcsCode, hresultName, normalizeHresult, toUnsigned, type HresultName } from "./hresult.js";

/**
 * Stable error codes of `@lcow/hcs`. Callers test `err.code`, never the message.
 */
export const HCS_ERROR_CODES = {
  /** HCS exists on Windows only and no library path was given. */
  UNSUPPORTED_PLATFORM: "UNSUPPORTED_PLATFORM",
  /** The optional native dependency `koffi` could not be loaded. */
  KOFFI_MISSING: "KOFFI_MISSING",
  /** Neither computecore.dll nor vmcompute.dll could be loaded with the exports we need. */
  LIBRARY_LOAD_FAILED: "LIBRARY_LOAD_FAILED",
  /** A function this host's HCS library does not export (ERROR_PROC_NOT_FOUND). */
  NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
  /** A caller-supplied value is invalid (embedded NUL, bad LUN, bad timeout, ...). */
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  /** The object was closed; no further calls are possible. */
  HANDLE_CLOSED: "HANDLE_CLOSED",
  /** A wait elapsed (HCS_E_OPERATION_TIMEOUT or our own timer for v1 notifications). */
  TIMEOUT: "TIMEOUT",
  /** No such compute system, process or element. */
  NOT_FOUND: "NOT_FOUND",
  /** A compute system with that id (or a disk at that LUN) already exists. */
  ALREADY_EXISTS: "ALREADY_EXISTS",
  /** The system or process has already stopped. */
  ALREADY_STOPPED: "ALREADY_STOPPED",
  /** The request is not valid in the system's current state. */
  INVALID_STATE: "INVALID_STATE",
  /** Access denied: missing GrantVmAccess, or the caller is not privileged. */
  ACCESS_DENIED: "ACCESS_DENIED",
  /** HCS rejected a document: invalid JSON, invalid data, unsupported request. */
  INVALID_DOCUMENT: "INVALID_DOCUMENT",
  /** Hyper-V, the Containers feature or the vmcompute service is unavailable. */
  SERVICE_UNAVAILABLE: "SERVICE_UNAVAILABLE",
  /** The vmcompute service went away while we waited. */
  SERVICE_DISCONNECTED: "SERVICE_DISCONNECTED",
  /** The system exited while we waited for something else. */
  UNEXPECTED_EXIT: "UNEXPECTED_EXIT",
  /** HCS could not allocate an operation or result. */
  OUT_OF_RESOURCES: "OUT_OF_RESOURCES",
  /** Any other failing HRESULT; see `hresult` and `events`. */
  OPERATION_FAILED: "OPERATION_FAILED",
  /** A bug in this package or an impossible answer from HCS. */
  INTERNAL: "INTERNAL",
} as const;

/** One of {@link HCS_ERROR_CODES}. */
export type HcsErrorCode = (typeof HCS_ERROR_CODES)[keyof typeof HCS_ERROR_CODES];

/** One entry of `ResultError.ErrorEvents` (the fields hcsshim reads; `Data` is ignored as hcsshim does). */
export interface HcsErrorEvent {
  readonly message?: string;
  readonly stackTrace?: string;
  readonly provider?: string;
  readonly eventId?: number;
  readonly flags?: number;
  readonly source?: string;
}

/** The decoded `ResultError` document HCS attaches to failures. */
export interface HcsResultError {
  /** `Error` as an unsigned HRESULT. */
  readonly error?: number;
  readonly errorMessage?: string;
  readonly events: readonly HcsErrorEvent[];
}

/** Options of {@link HcsError}. */
export interface HcsErrorOptions {
  /** The failing HRESULT (stored unsigned). */
  readonly hresult?: number;
  /** The HCS function or high-level operation, e.g. `HcsStartComputeSystem`. */
  readonly operation?: string;
  /** The compute system id, when there is one. */
  readonly systemId?: string;
  /** The decoded result document. */
  readonly result?: HcsResultError;
  readonly cause?: unknown;
}

/**
 * The one error class of `@lcow/hcs`.
 *
 * `code` is stable; `hresult` (unsigned), `hresultHex` and `hresultName` identify
 * the HCS failure; `events` are the decoded `ErrorEvents`.
 */
export class HcsError extends Error {
  /** Stable code from {@link HCS_ERROR_CODES}. */
  readonly code: HcsErrorCode;
  /** The HRESULT as an unsigned 32-bit number, when the failure came from HCS. */
  readonly hresult: number | undefined;
  /** hcsshim's comparison form of `hresult` (Win32 code for `0x8007xxxx`), see `normalizeHresult`. */
  readonly win32OrHresult: number | undefined;
  /** The HCS function or operation that failed. */
  readonly operation: string | undefined;
  /** The compute system the failure concerns. */
  readonly systemId: string | undefined;
  /** `ErrorMessage` of the result document. */
  readonly errorMessage: string | undefined;
  /** `ErrorEvents` of the result document (empty when HCS sent none). */
  readonly events: readonly HcsErrorEvent[];

  constructor(code: HcsErrorCode, message: string, options: HcsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    // Set explicitly so the class is recognisable even when two copies of the package are loaded.
    this.name = "HcsError";
    this.code = code;
    this.hresult = options.hresult === undefined ? undefined : toUnsigned(options.hresult);
    this.win32OrHresult = options.hresult === undefined ? undefined : normalizeHresult(options.hresult);
    this.operation = options.operation;
    this.systemId = options.systemId;
    this.errorMessage = options.result?.errorMessage;
    this.events = options.result?.events ?? [];
  }

  /** `0x80370110` form of `hresult`. */
  get hresultHex(): string | undefined {
    return this.hresult === undefined ? undefined : formatHresult(this.hresult);
  }

  /** Symbolic name of `hresult` from the HRESULT table, when known. */
  get hresultName(): HresultName | undefined {
    return this.hresult === undefined ? undefined : hresultName(this.hresult);
  }

  /**
   * Builds the error for a failing HRESULT: the code comes from {@link codeForHresult},
   * the message follows hcsshim's `"<op> <id>: <message>"` plus one line per event.
   */
  static fromHresult(hr: number, context: { operation: string; systemId?: string; resultDocument?: string | undefined; cause?: unknown }): HcsError {
    const result = parseResultError(context.resultDocument);
    const name = hresultName(hr);
    const what = result?.errorMessage || name || "HCS call failed";
    const head = `${context.operation}${context.systemId ? ` ${context.systemId}` : ""}: ${what} (${formatHresult(hr)}${name && what !== name ? ` ${name}` : ""})`;
    const lines = (result?.events ?? []).map(formatEvent);
    return new HcsError(codeForHresult(hr), [head, ...lines].join("\n"), {
      hresult: hr,
      operation: context.operation,
      ...(context.systemId === undefined ? {} : { systemId: context.systemId }),
      ...(result === undefined ? {} : { result }),
      cause: context.cause,
    });
  }
}

function formatEvent(e: HcsErrorEvent): string {
  const parts = [`[Event Detail: ${e.message ?? ""}`];
  if (e.stackTrace) parts.push(`Stack Trace: ${e.stackTrace}`);
  if (e.provider) parts.push(`Provider: ${e.provider}`);
  if (e.eventId) parts.push(`EventID: ${e.eventId}`);
  if (e.flags) parts.push(`flags: ${e.flags}`);
  if (e.source) parts.push(`Source: ${e.source}`);
  return `${parts.join(" ")}]`;
}

const HRESULT_CODES: ReadonlyMap<number, HcsErrorCode> = new Map<number, HcsErrorCode>([
  [HRESULT.E_ACCESSDENIED, "ACCESS_DENIED"],
  [HRESULT.E_HANDLE, "HANDLE_CLOSED"],
  [HRESULT.ERROR_INVALID_DATA, "INVALID_DOCUMENT"],
  [HRESULT.ERROR_NOT_SUPPORTED, "INVALID_DOCUMENT"],
  [HRESULT.E_INVALIDARG, "INVALID_ARGUMENT"],
  [HRESULT.E_OUTOFMEMORY, "OUT_OF_RESOURCES"],
  [HRESULT.ERROR_PROC_NOT_FOUND, "NOT_IMPLEMENTED"],
  [HRESULT.E_NOTIMPL, "NOT_IMPLEMENTED"],
  [HRESULT.ERROR_NOT_FOUND, "NOT_FOUND"],
  [HRESULT.ERROR_ALREADY_EXISTS, "ALREADY_EXISTS"],
]);

// Keyed by the low word so both HCS families (0x8037xxxx, 0xC037xxxx) map alike.
const HCS_CODES: ReadonlyMap<number, HcsErrorCode> = new Map<number, HcsErrorCode>([
  [0x0100, "UNEXPECTED_EXIT"],
  [0x0102, "SERVICE_UNAVAILABLE"],
  [0x0105, "INVALID_STATE"],
  [0x0106, "UNEXPECTED_EXIT"],
  [0x0107, "UNEXPECTED_EXIT"],
  [0x010b, "INVALID_DOCUMENT"],
  [0x010d, "INVALID_DOCUMENT"],
  [0x010e, "NOT_FOUND"],
  [0x010f, "ALREADY_EXISTS"],
  [0x0110, "ALREADY_STOPPED"],
  [0x0114, "SERVICE_UNAVAILABLE"],
  [0x0118, "TIMEOUT"],
  [0x011a, "OUT_OF_RESOURCES"],
  [0x011b, "ACCESS_DENIED"],
  [0x011e, "SERVICE_DISCONNECTED"],
  [0x011f, "ALREADY_STOPPED"],
]);

/** The one place that maps an HRESULT to an {@link HcsErrorCode}. */
export function codeForHresult(hr: number): HcsErrorCode {
  const hcs = hcsCode(hr);
  if (hcs !== undefined) return HCS_CODES.get(hcs) ?? "OPERATION_FAILED";
  return HRESULT_CODES.get(toUnsigned(hr)) ?? "OPERATION_FAILED";
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/**
 * Decodes a `ResultError` document (spec 6.3). Returns `undefined` for an absent,
 * empty or non-JSON document: a v2 failure may carry nothing but the HRESULT.
 */
export function parseResultError(doc: string | undefined): HcsResultError | undefined {
  if (!doc || !doc.trim()) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(doc);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const o = value as Record<string, unknown>;
  const events = Array.isArray(o["ErrorEvents"]) ? o["ErrorEvents"] : [];
  const error = num(o["Error"]);
  const errorMessage = str(o["ErrorMessage"]);
  return {
    ...(error === undefined ? {} : { error: toUnsigned(error) }),
    ...(errorMessage === undefined ? {} : { errorMessage }),
    events: events
      .filter((e): e is Record<string, unknown> => typeof e === "object" && e !== null)
      .map((e) => {
        const ev: { -readonly [K in keyof HcsErrorEvent]: HcsErrorEvent[K] } = {};
        const message = str(e["Message"]);
        const stackTrace = str(e["StackTrace"]);
        const provider = str(e["Provider"]);
        const eventId = num(e["EventId"]);
        const flags = num(e["Flags"]);
        const source = str(e["Source"]);
        if (message !== undefined) ev.message = message;
        if (stackTrace !== undefined) ev.stackTrace = stackTrace;
        if (provider !== undefined) ev.provider = provider;
        if (eventId !== undefined) ev.eventId = eventId;
        if (flags !== undefined) ev.flags = flags;
        if (source !== undefined) ev.source = source;
        return ev;
      }),
  };
}

/** Wraps anything thrown by foreign code as an `INTERNAL` HcsError, keeping it as `cause`. */
export function toHcsError(err: unknown, operation?: string): HcsError {
  if (err instanceof HcsError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new HcsError("INTERNAL", operation ? `${operation}: ${message}` : message, {
    cause: err,
    ...(operation === undefined ? {} : { operation }),
  });
}
