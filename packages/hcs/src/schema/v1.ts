import { HcsError } from "../errors.js";

/**
 * The 2017 schema-1 `ContainerConfig` that vmcompute.dll takes on hosts before
 * Windows 10 1809 (spec 9; hcsshim v0.5.25). JSON names are the Go field names.
 */
export interface ContainerConfig {
  SystemType: "Container" | "container";
  Name?: string;
  Owner?: string;
  /** `null` for LCOW. */
  Layers: null | { ID: string; Path: string }[];
  HvPartition?: boolean;
  HvRuntime?: HvRuntime;
  ContainerType?: "linux";
  TerminateOnLastHandleClosed?: boolean;
  MappedVirtualDisks?: MappedVirtualDisk[];
  ProcessorCount?: number;
  MemoryMaximumInMB?: number;
}

/** `HvRuntime`: boot files of the utility VM. */
export interface HvRuntime {
  /** Boot files directory, e.g. `C:\Program Files\Linux Containers`. */
  ImagePath: string;
  SkipTemplate?: boolean;
  /** File name under `ImagePath`, e.g. `initrd.img`. */
  LinuxInitrdFile?: string;
  /** File name under `ImagePath`, e.g. `bootx64.efi`. */
  LinuxKernelFile?: string;
}

/** `MappedVirtualDisk`. */
export interface MappedVirtualDisk {
  HostPath?: string;
  ContainerPath: string;
  CreateInUtilityVM?: boolean;
  ReadOnly?: boolean;
  Cache?: "" | "Disabled" | "Enabled" | "Private" | "PrivateAllowSharing";
}

/** `ResourceModificationRequestResponse` for v1 hot-add/remove of a mapped disk. */
export interface ResourceModificationRequest {
  ResourceType: "MappedVirtualDisk";
  RequestType: "Add" | "Remove";
  Settings: MappedVirtualDisk;
}

/** Options of {@link buildLcowContainerConfig}. */
export interface LcowContainerConfigOptions {
  /** Utility VM name (opengcs used `<id>_svm`). */
  readonly name: string;
  readonly owner?: string;
  /** Boot files directory. Default `C:\Program Files\Linux Containers`. */
  readonly imagePath?: string;
  /** Default `initrd.img`. */
  readonly initrdFile?: string;
  /** Default `bootx64.efi`. */
  readonly kernelFile?: string;
  readonly mappedVirtualDisks?: readonly MappedVirtualDisk[];
  readonly processorCount?: number;
  readonly memoryMaximumInMB?: number;
  /** Default `true`. */
  readonly terminateOnLastHandleClosed?: boolean;
}

/** The v1 LCOW utility VM document the 2017 opengcs client sent (spec 9). */
export function buildLcowContainerConfig(options: LcowContainerConfigOptions): ContainerConfig {
  if (!options.name) throw new HcsError("INVALID_ARGUMENT", "name is required");
  return {
    SystemType: "Container",
    Name: options.name,
    ...(options.owner ? { Owner: options.owner } : {}),
    Layers: null,
    HvPartition: true,
    HvRuntime: {
      ImagePath: options.imagePath ?? "C:\\Program Files\\Linux Containers",
      LinuxInitrdFile: options.initrdFile ?? "initrd.img",
      LinuxKernelFile: options.kernelFile ?? "bootx64.efi",
    },
    ContainerType: "linux",
    TerminateOnLastHandleClosed: options.terminateOnLastHandleClosed ?? true,
    ...(options.mappedVirtualDisks?.length ? { MappedVirtualDisks: options.mappedVirtualDisks.map((d) => ({ ...d })) } : {}),
    ...(options.processorCount ? { ProcessorCount: options.processorCount } : {}),
    ...(options.memoryMaximumInMB ? { MemoryMaximumInMB: options.memoryMaximumInMB } : {}),
  };
}

/** v1 hot-add of a disk mounted by the guest at `containerPath`. */
export function mappedVirtualDiskRequest(requestType: "Add" | "Remove", disk: MappedVirtualDisk): ResourceModificationRequest {
  if (!disk.ContainerPath) throw new HcsError("INVALID_ARGUMENT", "ContainerPath is required");
  if (requestType === "Add" && !disk.HostPath) throw new HcsError("INVALID_ARGUMENT", "HostPath is required to add a disk");
  return { ResourceType: "MappedVirtualDisk", RequestType: requestType, Settings: { ...disk } };
}
