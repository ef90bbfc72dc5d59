// Payloads of the bridge RPCs an LCOW host uses (spec §3), as TypeScript types plus builders
// that produce objects whose key order is the Go struct order hcsshim puts on the wire, with
// Go's `omitempty` applied (zero, false and empty values left out). Both sides must read an
// absent field as its zero value.
import type { ProcessParameters as HcsProcessParameters } from "@lcow/hcs";
import { NULL_ACTIVITY_ID, NULL_CONTAINER_ID, PROTOCOL_VERSION, INFINITE_WAIT } from "./constants.js";

/** Flattened into every request (`RequestBase`). */
export interface RequestBase {
  ContainerId: string;
  ActivityId: string;
}

/** Flattened into every response (`MessageResponseBase`); `Result` is a signed HRESULT. */
export interface ResponseBase {
  Result: number;
  ActivityId?: string;
  ErrorMessage?: string;
  ErrorRecords?: ErrorRecord[];
}

export interface ErrorRecord {
  Result: number;
  Message: string;
  StackTrace?: string;
  ModuleName: string;
  FileName: string;
  Line: number;
  FunctionName?: string;
}

// ---- NegotiateProtocol ----

export interface NegotiateProtocolRequest extends RequestBase {
  MinimumVersion: number;
  MaximumVersion: number;
}

export interface GcsCapabilities {
  SendHostCreateMessage?: boolean;
  SendHostStartMessage?: boolean;
  HvSocketConfigOnStartup?: boolean;
  SendLifecycleNotifications?: boolean;
  ModifyServiceSettingsSupported?: boolean;
  SupportedSchemaVersions?: Array<{ Major: number; Minor: number }>;
  RuntimeOsType?: string;
  GuestDefinedCapabilities?: Record<string, unknown>;
}

export interface NegotiateProtocolResponse extends ResponseBase {
  Version: number;
  Capabilities: GcsCapabilities;
}

/** NegotiateProtocol is the one request sent with an empty ContainerId. */
export function negotiateProtocolRequest(min = PROTOCOL_VERSION, max = PROTOCOL_VERSION): NegotiateProtocolRequest {
  return { ContainerId: "", ActivityId: NULL_ACTIVITY_ID, MinimumVersion: min, MaximumVersion: max };
}

/** What the Linux GCS answers (its capability set of hcsshim 2026-08; spec §5.2). */
export function linuxCapabilities(): GcsCapabilities {
  return {
    SupportedSchemaVersions: [{ Major: 2, Minor: 1 }],
    RuntimeOsType: "Linux",
    GuestDefinedCapabilities: {
      NamespaceAddRequestSupported: true,
      SignalProcessSupported: true,
      DumpStacksSupported: true,
      DeleteContainerStateSupported: true,
    },
  };
}

// ---- ModifySettings ----

export type RequestType = "Add" | "Remove" | "Update" | "PreAdd";
export type ResourceType = "MappedVirtualDisk" | "SCSIDevice" | "CombinedLayers" | (string & {});

export interface ModificationRequest<S = unknown> {
  RequestType?: RequestType;
  ResourceType: ResourceType;
  Settings?: S;
}

export interface ModifySettingsRequest<S = unknown> extends RequestBase {
  Request: ModificationRequest<S>;
}

/** `LCOWMappedVirtualDisk`: a SCSI disk mounted (or only attached) in the guest. */
export interface MappedVirtualDisk {
  MountPath?: string;
  Lun?: number;
  Controller?: number;
  Partition?: number;
  ReadOnly?: boolean;
  Encrypted?: boolean;
  Options?: string[];
  BlockDev?: boolean;
  EnsureFilesystem?: boolean;
  Filesystem?: string;
}

/** `SCSIDevice`: the guest-side unplug of a disk (Remove only). */
export interface ScsiDevice {
  Controller?: number;
  Lun?: number;
}

/** `LCOWCombinedLayers`: an overlay of layer paths (top-most first) with an optional scratch. */
export interface CombinedLayers {
  ContainerID?: string;
  ContainerRootPath?: string;
  Layers?: Array<{ Path: string }>;
  ScratchPath?: string;
}

/** Drops Go's omitempty zero values, keeping key order. */
function omitEmpty<T extends object>(value: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined || v === 0 || v === false || v === "" || (Array.isArray(v) && v.length === 0)) continue;
    out[k] = v;
  }
  return out as T;
}

export function mappedVirtualDisk(disk: MappedVirtualDisk): MappedVirtualDisk {
  // Struct order: MountPath, Lun, Controller, Partition, ReadOnly, Encrypted, Options, BlockDev, ..., EnsureFilesystem, Filesystem.
  return omitEmpty({
    MountPath: disk.MountPath,
    Lun: disk.Lun,
    Controller: disk.Controller,
    Partition: disk.Partition,
    ReadOnly: disk.ReadOnly,
    Encrypted: disk.Encrypted,
    Options: disk.Options,
    BlockDev: disk.BlockDev,
    EnsureFilesystem: disk.EnsureFilesystem,
    Filesystem: disk.Filesystem,
  });
}

export function scsiDevice(device: ScsiDevice): ScsiDevice {
  return omitEmpty({ Controller: device.Controller, Lun: device.Lun });
}

export function combinedLayers(layers: CombinedLayers): CombinedLayers {
  return omitEmpty({
    ContainerID: layers.ContainerID,
    ContainerRootPath: layers.ContainerRootPath,
    Layers: layers.Layers?.map((l) => ({ Path: l.Path })),
    ScratchPath: layers.ScratchPath,
  });
}

export function modifySettingsRequest<S>(request: ModificationRequest<S>, containerId = NULL_CONTAINER_ID): ModifySettingsRequest<S> {
  const inner = omitEmpty({ RequestType: request.RequestType, ResourceType: request.ResourceType }) as ModificationRequest<S>;
  if (request.Settings !== undefined) inner.Settings = request.Settings;
  return { ContainerId: containerId, ActivityId: NULL_ACTIVITY_ID, Request: inner };
}

// ---- ExecuteProcess / WaitForProcess / SignalProcess ----

/**
 * `ProcessParameters` (sent double-encoded: a JSON string inside the payload): hcsshim sends the
 * HCS schema's ProcessParameters for UVM processes, so it is that type, plus the guest's
 * `CreateInUtilityVM` (its `IsExternal`).
 */
export interface ProcessParameters extends HcsProcessParameters {
  CreateInUtilityVM?: boolean;
}

export interface VsockStdioRelaySettings {
  StdIn?: number;
  StdOut?: number;
  StdErr?: number;
}

export interface ExecuteProcessRequest extends RequestBase {
  Settings: {
    ProcessParameters: string;
    VsockStdioRelaySettings: VsockStdioRelaySettings;
  };
}

export interface ExecuteProcessResponse extends ResponseBase {
  ProcessId: number;
}

export function processParameters(p: ProcessParameters): ProcessParameters {
  // Struct order of hcsschema.ProcessParameters, then the guest's extra field.
  return omitEmpty({
    ApplicationName: p.ApplicationName,
    CommandLine: p.CommandLine,
    CommandArgs: p.CommandArgs,
    User: p.User,
    WorkingDirectory: p.WorkingDirectory,
    Environment: p.Environment,
    EmulateConsole: p.EmulateConsole,
    CreateStdInPipe: p.CreateStdInPipe,
    CreateStdOutPipe: p.CreateStdOutPipe,
    CreateStdErrPipe: p.CreateStdErrPipe,
    ConsoleSize: p.ConsoleSize,
    CreateInUtilityVM: p.CreateInUtilityVM,
  });
}

/** For Linux only `VsockStdioRelaySettings` is sent, present (maybe `{}`) even without pipes. */
export function executeProcessRequest(params: ProcessParameters, ports: VsockStdioRelaySettings, containerId = NULL_CONTAINER_ID): ExecuteProcessRequest {
  return {
    ContainerId: containerId,
    ActivityId: NULL_ACTIVITY_ID,
    Settings: {
      ProcessParameters: JSON.stringify(processParameters(params)),
      VsockStdioRelaySettings: omitEmpty({ StdIn: ports.StdIn, StdOut: ports.StdOut, StdErr: ports.StdErr }),
    },
  };
}

export interface WaitForProcessRequest extends RequestBase {
  ProcessId: number;
  TimeoutInMs: number;
}

export interface WaitForProcessResponse extends ResponseBase {
  ExitCode: number;
}

export function waitForProcessRequest(processId: number, timeoutInMs = INFINITE_WAIT, containerId = NULL_CONTAINER_ID): WaitForProcessRequest {
  return { ContainerId: containerId, ActivityId: NULL_ACTIVITY_ID, ProcessId: processId, TimeoutInMs: timeoutInMs };
}

export interface SignalProcessRequest extends RequestBase {
  ProcessId: number;
  Options?: { Signal?: number };
}

// ---- Shutdown, DumpStacks, notifications ----

/** ShutdownGraceful / ShutdownForced / DumpStacks carry only the base. */
export function baseRequest(containerId = NULL_CONTAINER_ID): RequestBase {
  return { ContainerId: containerId, ActivityId: NULL_ACTIVITY_ID };
}

export interface DumpStacksResponse extends ResponseBase {
  GuestStacks?: string;
}

export interface ContainerNotification extends RequestBase {
  Type: string;
  Operation: string;
  Result: number;
  ResultInfo?: string;
}
