import path from "node:path";
import type { HcsApi, HcsBackend } from "./backend.js";
import { COMPUTECORE_REQUIRED, ComputecoreBackend, bindComputecore } from "./computecore.js";
import { HcsError } from "./errors.js";
import { loadKoffi, type Koffi, type KoffiFunction, type KoffiLib, type NativeHandle, type StringFreer } from "./native.js";
import { VmcomputeBackend, bindVmcompute } from "./vmcompute.js";

/** Which function frees strings HCS returns (spec 1.2: docs say LocalFree, hcsshim uses CoTaskMemFree). */
export type FreeFunctionName = "LocalFree" | "CoTaskMemFree";

/**
 * Where and how to load HCS. On Windows every field is optional. Elsewhere (tests
 * against a library with the same ABI) give at least one of `computecore`/`vmcompute`.
 */
export interface HcsLibraryOptions {
  /** Path of computecore.dll. Default on Windows: `%SystemRoot%\System32\computecore.dll` (absolute, against DLL planting). */
  readonly computecore?: string;
  /** Path of vmcompute.dll. Default on Windows: `%SystemRoot%\System32\vmcompute.dll`. */
  readonly vmcompute?: string;
  /**
   * Library exporting the free function. Default on Windows: kernel32.dll for `LocalFree`,
   * ole32.dll for `CoTaskMemFree`; elsewhere the HCS library itself.
   */
  readonly freeLibrary?: string;
  /** Free function for returned strings. Default: `LocalFree` for computecore (documented), `CoTaskMemFree` for vmcompute (what hcsshim uses). */
  readonly freeFunction?: FreeFunctionName;
  /** Library exporting `CloseHandle` (process stdio pipes). Default on Windows: kernel32.dll; elsewhere the HCS library. */
  readonly handleLibrary?: string;
  /**
   * Force an API: `v2` = computecore.dll only (no fallback), `v1` = vmcompute.dll only.
   * Default: the `LCOW_HCS_API` environment variable, else `auto` (spec 4).
   */
  readonly api?: "auto" | HcsApi;
}

/** How the library was chosen, for diagnostics and `checkHost()`. */
export interface HcsDetection {
  readonly api: HcsApi;
  /** The library path that was loaded. */
  readonly library: string;
  /** Why computecore.dll was not used, when vmcompute.dll was. */
  readonly fallbackReason?: string;
  /** The free function in use. */
  readonly freeFunction: FreeFunctionName;
}

/** A loaded backend and how it was chosen. */
export interface LoadedHcs {
  readonly backend: HcsBackend;
  readonly detection: HcsDetection;
}

function system32(name: string): string {
  return path.win32.join(process.env["SystemRoot"] ?? "C:\\Windows", "System32", name);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function resolveApi(options: HcsLibraryOptions): "auto" | HcsApi {
  const api = options.api ?? process.env["LCOW_HCS_API"] ?? "auto";
  if (api !== "auto" && api !== "v1" && api !== "v2") {
    throw new HcsError("INVALID_ARGUMENT", `api must be "auto", "v1" or "v2" (LCOW_HCS_API), got ${JSON.stringify(api)}`);
  }
  return api;
}

function bindFree(koffi: Koffi, lib: KoffiLib, name: FreeFunctionName): StringFreer {
  // LocalFree returns NULL on success; CoTaskMemFree returns nothing. Either way we cannot act on a failure.
  const fn = name === "LocalFree" ? lib.func("void *LocalFree(void *mem)") : lib.func("void CoTaskMemFree(void *pv)");
  return (ptr: NativeHandle) => {
    fn(ptr);
  };
}

/**
 * Loads HCS as spec section 4 describes: computecore.dll if it loads *and* exports
 * every required function, else vmcompute.dll for everything (handles of the two
 * DLLs are never mixed). Synchronous: koffi loads libraries synchronously.
 */
export function loadHcs(options: HcsLibraryOptions = {}, koffiLoader: () => Koffi = () => loadKoffi()): LoadedHcs {
  const onWindows = process.platform === "win32";
  const computecore = options.computecore ?? (onWindows ? system32("computecore.dll") : undefined);
  const vmcompute = options.vmcompute ?? (onWindows ? system32("vmcompute.dll") : undefined);
  if (computecore === undefined && vmcompute === undefined) {
    throw new HcsError(
      "UNSUPPORTED_PLATFORM",
      `HCS is available on Windows only (this is ${process.platform}); pass { computecore } or { vmcompute } to load a library with the same ABI`,
    );
  }
  const api = resolveApi(options);
  const koffi = koffiLoader();
  const failures: string[] = [];

  const helpers = (lib: KoffiLib, freeName: FreeFunctionName): { free: StringFreer; closeHandle: KoffiFunction } => {
    const freeLib = options.freeLibrary ?? (onWindows ? (freeName === "LocalFree" ? "kernel32.dll" : "ole32.dll") : undefined);
    const handleLib = options.handleLibrary ?? (onWindows ? "kernel32.dll" : undefined);
    const free = bindFree(koffi, freeLib ? koffi.load(freeLib) : lib, freeName);
    const closeHandle = (handleLib ? koffi.load(handleLib) : lib).func("int32 CloseHandle(void *handle)");
    return { free, closeHandle };
  };

  if (api !== "v1" && computecore !== undefined) {
    let lib: KoffiLib | undefined;
    try {
      lib = koffi.load(computecore);
    } catch (err) {
      // ERROR_MOD_NOT_FOUND (126): a host before Windows 10 1809.
      failures.push(`${computecore}: ${message(err)}`);
    }
    if (lib) {
      try {
        const functions = bindComputecore(koffi, lib);
        const freeFunction = options.freeFunction ?? "LocalFree";
        const { free, closeHandle } = helpers(lib, freeFunction);
        return {
          backend: new ComputecoreBackend(koffi, functions, free, closeHandle, computecore),
          detection: { api: "v2", library: computecore, freeFunction },
        };
      } catch (err) {
        // ERROR_PROC_NOT_FOUND (127) for one of COMPUTECORE_REQUIRED: use vmcompute.dll as a whole.
        failures.push(`${computecore}: ${message(err)} (required: ${COMPUTECORE_REQUIRED.join(", ")})`);
      }
    }
    if (api === "v2") {
      throw new HcsError("LIBRARY_LOAD_FAILED", `computecore.dll is not usable and api "v2" was forced: ${failures.join("; ")}`);
    }
  }

  if (vmcompute !== undefined) {
    try {
      const lib = koffi.load(vmcompute);
      const functions = bindVmcompute(koffi, lib);
      const freeFunction = options.freeFunction ?? "CoTaskMemFree";
      const { free, closeHandle } = helpers(lib, freeFunction);
      return {
        backend: new VmcomputeBackend(koffi, functions, free, closeHandle, vmcompute),
        detection: {
          api: "v1",
          library: vmcompute,
          freeFunction,
          ...(failures.length ? { fallbackReason: failures.join("; ") } : api === "v1" ? { fallbackReason: "api v1 forced" } : {}),
        },
      };
    } catch (err) {
      failures.push(`${vmcompute}: ${message(err)}`);
    }
  }
  throw new HcsError(
    "LIBRARY_LOAD_FAILED",
    `no usable HCS library (is the Hyper-V or Containers feature installed?): ${failures.join("; ") || "no library to try"}`,
  );
}
