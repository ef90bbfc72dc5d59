import { DriverError } from "../errors.js";
import type { MounterName } from "../options.js";
import { NoneMounter } from "./none.js";
import type { Mounter, MounterContext, MounterFactory } from "./types.js";

export type { Mounter, MounterContext, MounterFactory, MountRequest, MountState } from "./types.js";
export { NoneMounter } from "./none.js";

/**
 * The built-in mounter factories. `kernel` (src/mounters/kernel, Linux as root) is loaded lazily,
 * so importing the driver never loads it. `uvm` is not built yet: naming it is NOT_IMPLEMENTED
 * unless the caller passes its own factory (`DriverOptions.mounters`).
 */
export const BUILTIN_MOUNTERS: Readonly<Partial<Record<MounterName, MounterFactory>>> = {
  none: () => new NoneMounter(),
  kernel: async ({ home, options }) => {
    const { createKernelMounter } = await import("./kernel/index.js");
    // lcow.timeout bounds each tool run, as it bounded each utility VM operation.
    return createKernelMounter({ home, timeoutMs: options.timeoutSeconds * 1000 });
  },
};

/** Builds the mounter `name`, preferring a factory the caller supplied. */
export async function createMounter(name: MounterName, context: MounterContext, extra: Partial<Record<MounterName, MounterFactory>> = {}): Promise<Mounter> {
  const factory = extra[name] ?? BUILTIN_MOUNTERS[name];
  if (!factory) throw new DriverError("NOT_IMPLEMENTED", `mounter ${name} is not available in this build (lcow.mounter=${name})`);
  const mounter = await factory(context);
  if (mounter.name !== name) throw new DriverError("INTERNAL", `mounter factory for ${name} returned a ${mounter.name} mounter`);
  return mounter;
}
