import { createRequire } from "node:module";
import type * as KoffiModule from "koffi";
import { HcsError } from "./errors.js";

/** The koffi module namespace. */
export type Koffi = typeof KoffiModule;
/** A loaded shared library. */
export type KoffiLib = KoffiModule.IKoffiLib;
/** A bound native function (sync call plus `.async`). */
export type KoffiFunction = ReturnType<KoffiLib["func"]>;
/** A koffi C type. */
export type KoffiType = ReturnType<Koffi["opaque"]>;
/** A koffi registered callback. */
export type KoffiCallback = ReturnType<Koffi["register"]>;

/**
 * An opaque native handle (`HCS_SYSTEM`, `HCS_OPERATION`, ...) as koffi returns it.
 * Never inspect or fabricate one; pass it back to the library that produced it.
 */
export type NativeHandle = object;

let cachedKoffi: Koffi | undefined;

/**
 * Loads koffi on first use, so importing `@lcow/hcs` never touches native code
 * (it must import cleanly on Linux and macOS). `requireFn` exists for tests.
 */
export function loadKoffi(requireFn?: (id: string) => unknown): Koffi {
  if (!requireFn && cachedKoffi) return cachedKoffi;
  const req = requireFn ?? createRequire(import.meta.url);
  let mod: unknown;
  try {
    mod = req("koffi");
  } catch (err) {
    throw new HcsError(
      "KOFFI_MISSING",
      "@lcow/hcs needs the native FFI module 'koffi', which could not be loaded. Install it next to @lcow/hcs " +
        "(`pnpm add koffi` / `npm install koffi`); if it is installed, its prebuilt binary may not match this platform or Node version.",
      { cause: err },
    );
  }
  const koffi = ((mod as { default?: unknown }).default ?? mod) as Koffi;
  if (!requireFn) cachedKoffi = koffi;
  return koffi;
}

/** The C types shared by both DLL bindings. Named koffi types are process-global, so they are declared once. */
export interface NativeTypes {
  /** `HCS_SYSTEM`/`HCS_PROCESS`/`HCS_OPERATION`/`HCS_CALLBACK`: pointer-sized opaque handles. */
  readonly handle: KoffiType;
  /** `HCS_PROCESS_INFORMATION`, 32 bytes on x64 (spec 2.2). */
  readonly processInformation: KoffiType;
  /** vmcompute `HCS_NOTIFICATION_CALLBACK` (spec 3.3). */
  readonly notificationCallback: KoffiType;
}

let cachedTypes: NativeTypes | undefined;

/** Declares (once) and returns the shared native types. */
export function nativeTypes(koffi: Koffi): NativeTypes {
  cachedTypes ??= {
    handle: koffi.pointer("HCS_HANDLE", koffi.opaque()),
    processInformation: koffi.struct("HCS_PROCESS_INFORMATION", {
      ProcessId: "uint32",
      Reserved: "uint32",
      StdInput: "void *",
      StdOutput: "void *",
      StdError: "void *",
    }),
    notificationCallback: koffi.proto(
      "void HCS_NOTIFICATION_CALLBACK(uint32 notificationType, void *context, int32 notificationStatus, const char16_t *notificationData)",
    ),
  };
  return cachedTypes;
}

/** The decoded `HCS_PROCESS_INFORMATION`. */
export interface NativeProcessInformation {
  ProcessId: number;
  Reserved: number;
  StdInput: NativeHandle | null;
  StdOutput: NativeHandle | null;
  StdError: NativeHandle | null;
}

/**
 * Runs a bound function on a koffi worker thread and resolves with its return value.
 * HCS calls can block for minutes; they must never run on the JS thread (spec 1.4).
 */
export function callAsync<T>(fn: KoffiFunction, ...args: unknown[]): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    fn.async(...args, (err: unknown, result: T) => (err ? reject(err) : resolve(result)));
  });
}

/** Frees a string HCS allocated (LocalFree or CoTaskMemFree, see the library options). */
export type StringFreer = (ptr: NativeHandle) => void;

/**
 * Decodes a callee-allocated UTF-16 string from a `PWSTR *` out-parameter and frees it
 * exactly once, even if decoding throws. `null` (no document) gives `undefined`.
 */
export function takeString(koffi: Koffi, free: StringFreer, ptr: unknown): string | undefined {
  if (ptr === null || ptr === undefined) return undefined;
  try {
    return koffi.decode(ptr, "char16_t", -1) as string;
  } finally {
    free(ptr as NativeHandle);
  }
}

/**
 * Rejects strings HCS cannot receive: an embedded NUL would silently truncate the
 * UTF-16 string (hcsshim fails such strings with EINVAL before calling).
 */
export function checkString(value: string, what: string): string {
  if (typeof value !== "string") throw new HcsError("INVALID_ARGUMENT", `${what} must be a string`);
  if (value.includes("\0")) throw new HcsError("INVALID_ARGUMENT", `${what} must not contain a NUL character`);
  return value;
}

/** `timeoutMs` as a Win32 DWORD: `Infinity` is INFINITE (0xFFFFFFFF); anything else must be an integer below it. */
export function toDword(timeoutMs: number): number {
  if (timeoutMs === Infinity) return 0xffffffff;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs >= 0xffffffff) {
    throw new HcsError("INVALID_ARGUMENT", `timeoutMs must be a non-negative integer below 2^32-1 or Infinity, got ${timeoutMs}`);
  }
  return timeoutMs;
}

/**
 * Keeps track of native calls still running against one handle, so the handle is
 * closed only after they all returned: hcsshim records access violations inside
 * computecore.dll when a handle was closed under a running call (spec 1.4).
 */
export class InFlight {
  readonly #running = new Set<Promise<unknown>>();

  /** Registers a native call; the returned promise is the same call. */
  track<T>(call: Promise<T>): Promise<T> {
    this.#running.add(call);
    const done = (): void => {
      this.#running.delete(call);
    };
    call.then(done, done);
    return call;
  }

  /** Number of native calls still running. */
  get size(): number {
    return this.#running.size;
  }

  /** Resolves once every tracked call has returned (successfully or not). */
  async drain(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
  }
}
