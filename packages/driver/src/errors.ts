import { isVhdError } from "@lcow/vhd";

/**
 * Stable error codes of `@lcow/driver`, after containerd's `errdefs` classes. Callers (the CLI,
 * the Docker plugin's `toPluginResponse`) test `err.code`, never the message.
 */
export const DriverErrorCode = {
  /** An argument or option is malformed: a bad layer id, an unknown `lcow.*` option, a bad tar. */
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  /** The layer (or its parent) does not exist. */
  NOT_FOUND: "NOT_FOUND",
  /** A layer with this id exists already. */
  ALREADY_EXISTS: "ALREADY_EXISTS",
  /** The layer is not in a state that allows the operation: it has content already, it has children, it is not mounted. */
  FAILED_PRECONDITION: "FAILED_PRECONDITION",
  /** The operation or mounter is not available on this build or platform. */
  NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
  /** A resource the operation needs is not there right now (a helper, a device); retrying may work. */
  UNAVAILABLE: "UNAVAILABLE",
  /** The layer does not fit: the disk or the image's maximum size is full. */
  RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED",
  /** Stored data is damaged: an image that does not decode, a corrupt layerchain.json or mount record. */
  DATA_LOSS: "DATA_LOSS",
  /** The caller aborted the operation. */
  ABORTED: "ABORTED",
  /** Anything else: an operating-system failure or a foreign throw (kept as `cause`). */
  INTERNAL: "INTERNAL",
} as const;

export type DriverErrorCode = (typeof DriverErrorCode)[keyof typeof DriverErrorCode];

/** The one error class of `@lcow/driver`: a stable `code`, the layer id when there is one, and the `cause`. */
export class DriverError extends Error {
  // Set explicitly (not from the constructor) so the class is recognised across two loaded copies.
  override readonly name = "DriverError";
  readonly code: DriverErrorCode;
  /** The layer id the error is about, when there is one. */
  readonly id: string | undefined;

  constructor(code: DriverErrorCode, message: string, details: { id?: string; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.id = details.id;
  }
}

/** True for a `DriverError`, also when two copies of the package are loaded. */
export function isDriverError(err: unknown): err is DriverError {
  return err instanceof Error && err.name === "DriverError" && typeof (err as { code?: unknown }).code === "string";
}

/** True when `err` is a Node system error with one of `codes` (ENOENT, EEXIST, ...). */
export function isErrno(err: unknown, ...codes: string[]): boolean {
  return err instanceof Error && codes.includes((err as NodeJS.ErrnoException).code ?? "");
}

/**
 * Normalises anything thrown below the driver to a `DriverError` whose message starts with
 * `what` (the operation and its subject): our own errors pass through, `@lcow/vhd` codes map to
 * their class (a bad tar is INVALID_ARGUMENT, a damaged image DATA_LOSS), OS errors by errno.
 */
export function toDriverError(err: unknown, what: string, id?: string): DriverError {
  if (isDriverError(err)) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (isVhdError(err)) {
    const code: DriverErrorCode =
      err.code === "FORMAT_INVALID"
        ? "DATA_LOSS"
        : err.code === "EXT4_DISK_FULL"
          ? "RESOURCE_EXHAUSTED"
          : err.code === "ABORTED"
            ? "ABORTED"
            : err.code === "IO"
              ? ioCode(err.cause)
              : "INVALID_ARGUMENT";
    return new DriverError(code, `${what}: ${message}`, { id, cause: err });
  }
  if (err instanceof Error && "code" in err) return new DriverError(ioCode(err), `${what}: ${message}`, { id, cause: err });
  return new DriverError("INTERNAL", `${what}: ${message}`, { id, cause: err });
}

function ioCode(err: unknown): DriverErrorCode {
  if (isErrno(err, "ENOENT")) return "NOT_FOUND";
  if (isErrno(err, "EEXIST")) return "ALREADY_EXISTS";
  if (isErrno(err, "ENOSPC", "EDQUOT", "EFBIG")) return "RESOURCE_EXHAUSTED";
  return "INTERNAL";
}
