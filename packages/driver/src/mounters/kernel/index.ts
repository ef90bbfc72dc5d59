// Public surface of the `kernel` mounter (Linux, root): layer.vhd via read-only loop devices,
// sandbox.vhdx via qemu-storage-daemon's FUSE export and a loop device, ext4 mounts and an
// overlayfs union. See mounter.ts for the layout and state.ts for the state format. Also the
// entry of `@lcow/driver/kernel`: the per-disk primitives (disk.ts) that apps/guest shares.
export { createKernelMounter, recoverKernelMount, MAX_LOWER_LAYERS, type KernelMounterOptions } from "./mounter.js";
export { parseKernelMountState, JOURNAL_NAME, type KernelMountState, type Step as KernelMountStep, type MountStep, type QsdStep } from "./state.js";
export {
  kernelTools,
  StepLog,
  inspectDiskImage,
  ext4SizeOfVhd,
  mountImage,
  mountLayerVhd,
  startVhdxExport,
  exportImagePath,
  mountSandboxVhdx,
  mountOverlay,
  unmount,
  undoStep,
  undoSteps,
  VHD_FOOTER_SIZE,
  MAX_MOUNT_DATA,
  type KernelTools,
  type KernelToolOptions,
  type StepRecorder,
  type DiskImageKind,
  type ImageMountOptions,
  type VhdxExportPaths,
  type OverlaySpec,
  type UndoOptions,
} from "./disk.js";
export { readMounts, isMountPoint, type MountEntry } from "./proc.js";
export { DriverError, isDriverError, DriverErrorCode } from "../../errors.js";
