/**
 * HCS schema v2 documents as TypeScript types. Field names are exactly the JSON
 * names of hcsshim `internal/hcs/schema2` (spec section 8). Every field is
 * optional in the schema ("omitempty"); we mark required only what HCS needs.
 * Only fields relevant to an LCOW utility VM are typed; others can be added
 * through the index-free extension points where noted.
 */

/** `{"Major":2,"Minor":1}`. */
export interface SchemaVersion {
  Major: number;
  Minor: number;
}

/** The create document (`ComputeSystem`). Exactly one of `VirtualMachine`, `Container`, `HostedSystem`. */
export interface ComputeSystemDocument {
  Owner?: string;
  SchemaVersion: SchemaVersion;
  HostingSystemId?: string;
  VirtualMachine?: VirtualMachine;
  Container?: Record<string, unknown>;
  HostedSystem?: Record<string, unknown>;
  /** `true`: closing the last handle kills the system (crash safety, as hcsshim). */
  ShouldTerminateOnLastHandleClosed?: boolean;
}

/** `VirtualMachine`. */
export interface VirtualMachine {
  Version?: SchemaVersion;
  /** `true`: a guest reboot stops the VM. */
  StopOnReset?: boolean;
  Chipset: Chipset;
  ComputeTopology: Topology;
  Devices?: Devices;
  GuestState?: GuestState;
  StorageQoS?: { IopsMaximum?: number; BandwidthMaximum?: number };
  GuestConnection?: { UseVsock?: boolean; UseConnectedSuspend?: boolean };
}

/** `Chipset`: exactly one of `LinuxKernelDirect` or `Uefi`. */
export interface Chipset {
  Uefi?: Uefi;
  LinuxKernelDirect?: LinuxKernelDirect;
  UseUtc?: boolean;
}

/** Direct kernel boot (build >= 18286). Paths are host paths. */
export interface LinuxKernelDirect {
  /** Uncompressed `vmlinux` or `kernel`. */
  KernelFilePath: string;
  InitRdPath?: string;
  KernelCmdLine?: string;
}

/** UEFI boot, used for LCOW before build 18286 (`BootThis` with `VmbFs`). */
export interface Uefi {
  EnableDebugger?: boolean;
  ApplySecureBootTemplate?: string;
  SecureBootTemplateId?: string;
  BootThis?: { DeviceType?: "VmbFs" | "ScsiDrive" | "Network"; DevicePath?: string; DiskNumber?: number; OptionalData?: string; VmbFsRootPath?: string };
  Console?: string;
}

/** `Topology` (JSON name `ComputeTopology`). */
export interface Topology {
  Memory: VirtualMachineMemory;
  Processor: VirtualMachineProcessor;
}

/** `VirtualMachineMemory`. */
export interface VirtualMachineMemory {
  /** MiB; hcsshim keeps it even (2 MB alignment). */
  SizeInMB: number;
  Backing?: "Physical" | "Virtual" | "Hybrid";
  /** `true`: backed by pageable (virtual) memory. */
  AllowOvercommit?: boolean;
  EnableHotHint?: boolean;
  EnableColdHint?: boolean;
  EnableColdDiscardHint?: boolean;
  EnableDeferredCommit?: boolean;
  LowMmioGapInMB?: number;
  HighMmioBaseInMB?: number;
  HighMmioGapInMB?: number;
}

/** `VirtualMachineProcessor`. */
export interface VirtualMachineProcessor {
  Count: number;
  Limit?: number;
  Weight?: number;
  Reservation?: number;
}

/** `Devices` (LCOW-relevant subset). */
export interface Devices {
  ComPorts?: Record<string, { NamedPipe?: string; OptimizeForDebugger?: boolean }>;
  /** Controller key (hcsshim: one of {@link SCSI_CONTROLLER_GUIDS}) to controller. */
  Scsi?: Record<string, Scsi>;
  VirtualPMem?: { Devices?: Record<string, { HostPath: string; ReadOnly?: boolean; ImageFormat?: "Vhd1" | "Vhdx" }>; MaximumCount?: number; MaximumSizeBytes?: number };
  HvSocket?: HvSocket2;
  Plan9?: Plan9;
}

/** One SCSI controller: LUN (decimal string) to attachment. */
export interface Scsi {
  Attachments?: Record<string, Attachment>;
}

/** `Attachment`. */
export interface Attachment {
  Type: "VirtualDisk" | "PassThru" | "Iso" | "ExtensibleVirtualDisk";
  /** Host path; the VM needs access to it (GrantVmAccess). */
  Path: string;
  ReadOnly?: boolean;
  IgnoreFlushes?: boolean;
  CachingMode?: string;
  NoWriteHardening?: boolean;
  DisableExpansionOptimization?: boolean;
  IgnoreRelativeLocator?: boolean;
  CaptureIoAttributionContext?: boolean;
  SupportCompressedVolumes?: boolean;
  AlwaysAllowSparseFiles?: boolean;
  ExtensibleVirtualDiskType?: string;
}

/** `HvSocket2`. */
export interface HvSocket2 {
  HvSocketConfig?: HvSocketSystemConfig;
}

/** `HvSocketSystemConfig`: SDDL strings and the per-service table. */
export interface HvSocketSystemConfig {
  DefaultBindSecurityDescriptor?: string;
  DefaultConnectSecurityDescriptor?: string;
  /** Service GUID to its configuration. */
  ServiceTable?: Record<string, HvSocketServiceConfig>;
}

/** `HvSocketServiceConfig`. */
export interface HvSocketServiceConfig {
  BindSecurityDescriptor?: string;
  ConnectSecurityDescriptor?: string;
  AllowWildcardBinds?: boolean;
  Disabled?: boolean;
}

/** `Plan9`. */
export interface Plan9 {
  Shares?: { Name: string; AccessName?: string; Path: string; Port?: number; Flags?: number; AllowedFiles?: string[] }[];
}

/** `GuestState` (VMGS / confidential boot only). */
export interface GuestState {
  GuestStateFilePath?: string;
  GuestStateFileType?: string;
  RuntimeStateFilePath?: string;
  ForceTransientState?: boolean;
}

/** `ModifySettingRequest` for `HcsModifyComputeSystem`. */
export interface ModifySettingRequest {
  ResourcePath?: string;
  RequestType?: "Add" | "Remove" | "Update" | "PreAdd";
  Settings?: unknown;
  GuestRequest?: unknown;
}

/** Property types a `PropertyQuery` can ask for. */
export type PropertyType =
  | "Memory"
  | "GuestMemory"
  | "Statistics"
  | "ProcessList"
  | "TerminateOnLastHandleClosed"
  | "SharedMemoryRegion"
  | "GuestConnection"
  | "ICHeartbeatStatus"
  | "ProcessorTopology"
  | "CpuGroup"
  | "SystemGUID";

/** `PropertyQuery`; `{}` returns the basic properties. */
export interface PropertyQuery {
  PropertyTypes?: PropertyType[];
  Queries?: Record<string, unknown>;
}

/** `Properties` answer (the fields HCS always or commonly fills). */
export interface ComputeSystemProperties {
  Id: string;
  SystemType?: string;
  RuntimeOsType?: string;
  Name?: string;
  Owner?: string;
  /** The Hyper-V VM GUID, used for the hvsocket listeners. */
  RuntimeId?: string;
  SystemGUID?: string;
  State?: string;
  Stopped?: boolean;
  ExitType?: string;
  TerminateOnLastHandleClosed?: boolean;
  [field: string]: unknown;
}

/** Enumerate query (`SystemQuery`). */
export interface SystemQuery {
  Ids?: string[];
  Names?: string[];
  Types?: string[];
  Owners?: string[];
}

/** `SystemExitStatus`. */
export interface SystemExitStatus {
  /** HRESULT (signed) of the exit. */
  Status?: number;
  ExitType?: "None" | "GracefulExit" | "ForcedExit" | "UnexpectedExit" | "Unknown" | (string & {});
}

/** `ProcessParameters` for `HcsCreateProcess`. */
export interface ProcessParameters {
  ApplicationName?: string;
  CommandLine?: string;
  CommandArgs?: string[];
  User?: string;
  WorkingDirectory?: string;
  Environment?: Record<string, string>;
  EmulateConsole?: boolean;
  CreateStdInPipe?: boolean;
  CreateStdOutPipe?: boolean;
  CreateStdErrPipe?: boolean;
  /** `[height, width]`. */
  ConsoleSize?: [number, number];
}

/** `ProcessStatus`. */
export interface ProcessStatus {
  ProcessId: number;
  Exited: boolean;
  ExitCode: number;
  LastWaitResult?: number;
}

/** Console signals for `HcsSignalProcess`. */
export type ProcessSignal = "CtrlC" | "CtrlBreak" | "CtrlClose" | "CtrlLogOff" | "CtrlShutdown";

/** `BasicInformation` of the service properties. */
export interface BasicInformation {
  SupportedSchemaVersions?: SchemaVersion[];
  [field: string]: unknown;
}

/** `ServiceProperties`: `{"Properties":[<BasicInformation>]}` for `{"PropertyTypes":["Basic"]}`. */
export interface ServiceProperties {
  Properties?: BasicInformation[];
}
