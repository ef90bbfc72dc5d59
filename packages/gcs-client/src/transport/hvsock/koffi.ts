// koffi, loaded on first use so that importing @lcow/gcs-client never needs a native module (it
// must import cleanly on Linux and macOS, where hvsock does not exist). Only the few members we
// call are typed here.
import { createRequire } from "node:module";
import { GcsError } from "../../errors.js";

/** A bound native function: a synchronous call plus `.async(...args, callback)` on a worker thread. */
export interface NativeFunction {
  (...args: unknown[]): unknown;
  async(...args: unknown[]): void;
}

export interface NativeLibrary {
  func(signature: string): NativeFunction;
}

export interface Koffi {
  load(path: string): NativeLibrary;
  sizeof(type: string): number;
}

let cached: Koffi | undefined;

export function loadKoffi(): Koffi {
  if (cached) return cached;
  let mod: unknown;
  try {
    mod = createRequire(import.meta.url)("koffi");
  } catch (err) {
    throw new GcsError(
      "UNAVAILABLE",
      "the hvsock transport needs the native FFI module 'koffi', which could not be loaded. Install it next to @lcow/gcs-client " +
        "(`pnpm add koffi`); if it is installed, its prebuilt binary may not match this platform or Node version.",
      { cause: err },
    );
  }
  cached = ((mod as { default?: unknown }).default ?? mod) as Koffi;
  return cached;
}
