/**
 * Stable error codes of `@lcow/vhd`. Callers test `err.code`, never the message.
 */
export const VhdErrorCode = {
  /** An argument or option is malformed (bad size string, unknown value). */
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  /** The tar stream ended in the middle of a header or an entry's data. */
  TAR_TRUNCATED: "TAR_TRUNCATED",
  /** A tar header is malformed: bad checksum, impossible size or number field, bad PAX record. */
  TAR_HEADER_INVALID: "TAR_HEADER_INVALID",
  /** A tar entry cannot be represented: path escapes the root, dangling hard link, symlink too long. */
  TAR_ENTRY_INVALID: "TAR_ENTRY_INVALID",
  /** The compressed input stream is corrupt. */
  COMPRESSION_INVALID: "COMPRESSION_INVALID",
  /** The layer does not fit the maximum disk size, or the format's own limits. */
  EXT4_DISK_FULL: "EXT4_DISK_FULL",
  /** An on-disk structure failed to decode (bad magic, checksum, geometry). */
  FORMAT_INVALID: "FORMAT_INVALID",
  /** A read or write of the operating system failed. */
  IO: "IO",
  /** The caller aborted the operation (its AbortSignal fired). */
  ABORTED: "ABORTED",
  /** A tolerated quirk was met while `strict` was on. */
  STRICT: "STRICT",
} as const;

export type VhdErrorCode = (typeof VhdErrorCode)[keyof typeof VhdErrorCode];

/** The one error class of `@lcow/vhd`: a stable `code`, the offending input in the message, and the `cause`. */
export class VhdError extends Error {
  override readonly name = "VhdError";
  readonly code: VhdErrorCode;
  /** The tar entry or file the error is about, when there is one. */
  readonly path: string | undefined;
  /** Byte offset in the input where the offending structure starts, when known. */
  readonly offset: number | undefined;

  constructor(code: VhdErrorCode, message: string, details: { path?: string; offset?: number; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.path = details.path;
    this.offset = details.offset;
  }
}

/** True for a `VhdError`, also when two copies of the package are loaded. */
export function isVhdError(err: unknown): err is VhdError {
  return err instanceof Error && err.name === "VhdError" && typeof (err as { code?: unknown }).code === "string";
}

/**
 * Raised when the API is used out of order (write before create, ...): a bug in the caller,
 * never a recoverable condition, so it has no code.
 */
export class InvariantError extends Error {
  override readonly name = "InvariantError";
}
