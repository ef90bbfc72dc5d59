// koffi, loaded on first use through @lcow/hcs (the one package that loads it) so that importing
// @lcow/gcs-client never needs a native module (it must import cleanly on Linux and macOS, where
// hvsock does not exist). Only the few members we call are typed here.
import { loadKoffi as loadHcsKoffi } from "@lcow/hcs";
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

export function loadKoffi(): Koffi {
  try {
    return loadHcsKoffi() as unknown as Koffi;
  } catch (err) {
    throw new GcsError(
      "UNAVAILABLE",
      "the hvsock transport needs the native FFI module 'koffi' (a dependency of @lcow/hcs), which could not be loaded; its prebuilt binary may not match this platform or Node version.",
      { cause: err },
    );
  }
}
