import { DriverError } from "../errors.js";
import type { UtilityVmLauncher } from "@lcow/gcs-client";
import type { LcowOptions, MounterName } from "../options.js";
import { NoneMounter } from "./none.js";
import type { Mounter, MounterContext, MounterFactory } from "./types.js";

export type { Mounter, MounterContext, MounterFactory, MountRequest, MountState } from "./types.js";
export { NoneMounter } from "./none.js";
export { GLOBAL_SVM_NAME } from "./uvm.js";

/**
 * The built-in mounter factories, each loaded lazily so importing the driver loads neither.
 * `kernel` (src/mounters/kernel, Linux as root); `uvm` (src/mounters/uvm.ts): service VMs
 * through HCS on Windows, the guest agent named by `lcow.guest` in its own namespaces on Linux.
 * A caller can pass its own factory (`DriverOptions.mounters`), e.g. with another launcher.
 */
export const BUILTIN_MOUNTERS: Readonly<Partial<Record<MounterName, MounterFactory>>> = {
  none: () => new NoneMounter(),
  kernel: async ({ home, options }) => {
    const { createKernelMounter } = await import("./kernel/index.js");
    // lcow.timeout bounds each tool run, as it bounded each utility VM operation.
    return createKernelMounter({ home, timeoutMs: options.timeoutSeconds * 1000 });
  },
  uvm: async ({ home, options }) => {
    const { createUvmMounter } = await import("./uvm.js");
    return createUvmMounter({ home, options, launcher: await defaultLauncher(options) });
  },
};

/** The platform's utility-VM launcher: HCS on Windows, the `lcow.guest` agent elsewhere. */
async function defaultLauncher(options: LcowOptions): Promise<UtilityVmLauncher> {
  const gcs = await import("@lcow/gcs-client");
  if (process.platform === "win32") return new gcs.HcsLauncher();
  if (!options.guest) {
    throw new DriverError("INVALID_ARGUMENT", "lcow.mounter=uvm on Linux needs the guest agent: set lcow.guest=<path to apps/guest/dist/main.js> (or LCOW_GUEST)");
  }
  const guestCommand = /\.[cm]?js$/.test(options.guest) ? [process.execPath, options.guest] : [options.guest];
  return new gcs.LinuxLauncher({ guestCommand });
}

/** Builds the mounter `name`, preferring a factory the caller supplied. */
export async function createMounter(name: MounterName, context: MounterContext, extra: Partial<Record<MounterName, MounterFactory>> = {}): Promise<Mounter> {
  const factory = extra[name] ?? BUILTIN_MOUNTERS[name];
  if (!factory) throw new DriverError("NOT_IMPLEMENTED", `mounter ${name} is not available in this build (lcow.mounter=${name})`);
  const mounter = await factory(context);
  if (mounter.name !== name) throw new DriverError("INTERNAL", `mounter factory for ${name} returned a ${mounter.name} mounter`);
  return mounter;
}
