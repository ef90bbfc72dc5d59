// Public surface of the `kernel` mounter (Linux, root): layer.vhd via read-only loop devices,
// sandbox.vhdx via qemu-storage-daemon's FUSE export and a loop device, ext4 mounts and an
// overlayfs union. See mounter.ts for the layout and state.ts for the state format.
export { createKernelMounter, recoverKernelMount, MAX_LOWER_LAYERS, type KernelMounterOptions } from "./mounter.js";
export { parseKernelMountState, JOURNAL_NAME, type KernelMountState, type Step as KernelMountStep } from "./state.js";
