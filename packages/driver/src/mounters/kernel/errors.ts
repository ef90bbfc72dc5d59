// The kernel mounter's errors. `@lcow/driver` has one error class (`DriverError`, STYLE item 5);
// until the core's `src/errors.ts` lands, this file is the only place that builds errors here,
// so switching to `DriverError` is an edit of this file alone. The codes are containerd's classes.

/** Stable codes raised by the kernel mounter. Callers test `err.code`, never the message. */
export const KernelMountErrorCode = {
  /** The request or the persisted state is malformed (not absolute paths, unknown state version). */
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  /** A layer folder holds neither `layer.vhd` nor `sandbox.vhdx`. */
  NOT_FOUND: "NOT_FOUND",
  /** The request cannot be honoured as given: too many layers for overlayfs, a mount still busy on unmount. */
  FAILED_PRECONDITION: "FAILED_PRECONDITION",
  /** A tool is missing or timed out, or the kernel lacks loop, overlay or FUSE support. */
  UNAVAILABLE: "UNAVAILABLE",
  /** A tool (losetup, mount, umount, qemu-storage-daemon) failed; its stderr is in the message. */
  MOUNT_FAILED: "MOUNT_FAILED",
} as const;

export type KernelMountErrorCode = (typeof KernelMountErrorCode)[keyof typeof KernelMountErrorCode];

/** An error of the kernel mounter: a stable `code`, what was being done in the message, and the `cause`. */
export class KernelMountError extends Error {
  override readonly name = "KernelMountError";
  readonly code: KernelMountErrorCode;

  constructor(code: KernelMountErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** True for a `KernelMountError`, also when two copies of the package are loaded. */
export function isKernelMountError(err: unknown): err is KernelMountError {
  return err instanceof Error && err.name === "KernelMountError" && typeof (err as { code?: unknown }).code === "string";
}
