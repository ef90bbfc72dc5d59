export type { LaunchOptions, LaunchedVm, ScsiAttachment, UtilityVmLauncher, VmExit } from "./launcher.js";
export { LinuxLauncher, waitLoopsReleased, type LinuxLauncherOptions } from "./linux-launcher.js";
export { UtilityVM, SCSI_MOUNT_PREFIX, type AttachedDisk, type RunResult, type UtilityVmOptions } from "./utility-vm.js";
export { tarToVhd, vhdToTar, createSandbox, DEFAULT_SANDBOX_GB } from "./tools.js";
export { HcsLauncher, defaultKirdPath, type HcsLauncherOptions } from "./hcs-launcher.js";
