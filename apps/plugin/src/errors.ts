// The plugin's one boundary for errors (STYLE item 6): whatever a handler or the driver throws is
// turned into an HTTP status and a graphdriver `{"Err": "..."}` body here, and only here.

/** Codes the plugin itself raises (a bad request from the daemon, a driver not yet initialised). */
export const PluginErrorCode = {
  /** The request body or query is malformed: bad JSON, a missing ID, an unknown option. */
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  /** No such endpoint (the daemon tolerates a 404 from `Capabilities` only). */
  NOT_FOUND: "NOT_FOUND",
  /** The driver is not usable yet: no `--root` was given and `GraphDriver.Init` has not arrived. */
  FAILED_PRECONDITION: "FAILED_PRECONDITION",
  /** The plugin is shutting down. */
  UNAVAILABLE: "UNAVAILABLE",
  /** A foreign throw (a bug): reported with its message, logged with its stack. */
  INTERNAL: "INTERNAL",
} as const;

export type PluginErrorCode = (typeof PluginErrorCode)[keyof typeof PluginErrorCode];

/** The plugin's error class: a stable `code`, the offending input in the message, and the `cause`. */
export class PluginError extends Error {
  override readonly name = "PluginError";
  constructor(
    readonly code: PluginErrorCode,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
  }
}

/**
 * HTTP status per error code. The daemon treats any non-200 as an error and shows `Err`; the
 * status is for logs, curl and humans. Codes are containerd's classes (shared by `@lcow/driver`,
 * `@lcow/vhd` and the kernel mounter) plus the tar/format codes of `@lcow/vhd`, which all mean
 * the layer the daemon sent is bad.
 */
const STATUS_BY_CODE: Record<string, number> = {
  INVALID_ARGUMENT: 400,
  TAR_TRUNCATED: 400,
  TAR_HEADER_INVALID: 400,
  TAR_ENTRY_INVALID: 400,
  COMPRESSION_INVALID: 400,
  STRICT: 400,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  FAILED_PRECONDITION: 412,
  ABORTED: 499,
  NOT_IMPLEMENTED: 501,
  UNAVAILABLE: 503,
  EXT4_DISK_FULL: 507,
};

/** What a failed request is answered with. */
export interface PluginErrorResponse {
  status: number;
  body: { Err: string };
  /** The normalised code, for the log line. */
  code: string;
}

/**
 * Maps any thrown value to the wire: the error's stable `code` picks the status (500 when it
 * has none we know), and `Err` is the message prefixed with the code, so `docker` shows e.g.
 * `NOT_FOUND: layer abc does not exist`. Never returns 200: a 200 `Diff` reply is always read
 * as a tar by the daemon.
 */
export function toPluginResponse(err: unknown): PluginErrorResponse {
  const code = codeOf(err);
  const message = err instanceof Error ? err.message : String(err);
  return { status: STATUS_BY_CODE[code] ?? 500, body: { Err: `${code}: ${message}` }, code };
}

function codeOf(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    // Node system errors (ENOENT, ...) carry an errno name in `code` and a `syscall`; they are
    // failures of our storage, not of the request.
    if (typeof code === "string" && typeof (err as { syscall?: unknown }).syscall !== "string" && /^[A-Z][A-Z0-9_]*$/.test(code)) return code;
    if (typeof code === "string" && code === "ENOENT") return "NOT_FOUND";
    if (typeof code === "string") return "IO";
  }
  return PluginErrorCode.INTERNAL;
}
