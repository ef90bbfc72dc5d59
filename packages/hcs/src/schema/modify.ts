import { HcsError } from "../errors.js";
import { SCSI_CONTROLLER_GUIDS, SCSI_LUNS_PER_CONTROLLER } from "./lcow.js";
import type { Attachment, ModifySettingRequest } from "./v2.js";

/**
 * A SCSI controller: an index into {@link SCSI_CONTROLLER_GUIDS} (what
 * `buildLcowUtilityVm` uses) or the literal key of the create document
 * (e.g. `"0"` for documents built the pre-2022 hcsshim way).
 */
export type ScsiController = number | string;

function controllerKey(controller: ScsiController): string {
  if (typeof controller === "string") {
    if (!controller || controller.includes("/")) throw new HcsError("INVALID_ARGUMENT", `invalid SCSI controller key ${JSON.stringify(controller)}`);
    return controller;
  }
  const key = SCSI_CONTROLLER_GUIDS[controller];
  if (!Number.isInteger(controller) || key === undefined) {
    throw new HcsError("INVALID_ARGUMENT", `SCSI controller index must be 0..${SCSI_CONTROLLER_GUIDS.length - 1}, got ${controller}`);
  }
  return key;
}

function checkLun(lun: number): number {
  if (!Number.isInteger(lun) || lun < 0 || lun >= SCSI_LUNS_PER_CONTROLLER) {
    throw new HcsError("INVALID_ARGUMENT", `SCSI LUN must be 0..${SCSI_LUNS_PER_CONTROLLER - 1}, got ${lun}`);
  }
  return lun;
}

/** `VirtualMachine/Devices/Scsi/<key>/Attachments/<lun>` (hcsshim `resourcepaths.SCSIResourceFormat`). */
export function scsiResourcePath(controller: ScsiController, lun: number): string {
  return `VirtualMachine/Devices/Scsi/${controllerKey(controller)}/Attachments/${checkLun(lun)}`;
}

/** Options of {@link scsiAddRequest}. */
export interface ScsiAttachOptions {
  /** Controller index or key. Default 0. */
  readonly controller?: ScsiController;
  /** 0..63. */
  readonly lun: number;
  /** Host path of the VHD/VHDX. Grant the VM access first (`grantVmAccess`). */
  readonly path: string;
  /** Default `false`. Layers are attached read-only, scratch disks read-write. */
  readonly readOnly?: boolean;
  /** Default `VirtualDisk`. */
  readonly type?: Attachment["Type"];
}

/** The hot-add request for a SCSI disk (spec 8.5). */
export function scsiAddRequest(options: ScsiAttachOptions): ModifySettingRequest {
  if (!options.path) throw new HcsError("INVALID_ARGUMENT", "path is required to attach a disk");
  return {
    ResourcePath: scsiResourcePath(options.controller ?? 0, options.lun),
    RequestType: "Add",
    Settings: { Type: options.type ?? "VirtualDisk", Path: options.path, ReadOnly: options.readOnly ?? false } satisfies Attachment,
  };
}

/** The hot-remove request: same path, `Remove`, no settings (hcsshim sends none). */
export function scsiRemoveRequest(options: { readonly controller?: ScsiController; readonly lun: number }): ModifySettingRequest {
  return { ResourcePath: scsiResourcePath(options.controller ?? 0, options.lun), RequestType: "Remove" };
}

/** Resizes guest memory (`VirtualMachine/ComputeTopology/Memory/SizeInMB`, Settings: MiB). */
export function memoryUpdateRequest(sizeInMb: number): ModifySettingRequest {
  if (!Number.isInteger(sizeInMb) || sizeInMb <= 0) throw new HcsError("INVALID_ARGUMENT", `sizeInMb must be a positive integer, got ${sizeInMb}`);
  return { ResourcePath: "VirtualMachine/ComputeTopology/Memory/SizeInMB", RequestType: "Update", Settings: sizeInMb + (sizeInMb % 2) };
}
