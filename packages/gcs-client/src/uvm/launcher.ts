// What a utility VM needs from the platform that runs it. The bridge protocol is the same
// everywhere; starting the VM, the host side of a SCSI hot-add and the reach into the guest's
// files differ: HCS and Hyper-V sockets on Windows (hcs-launcher.ts), a guest agent in its own
// namespaces on Linux (linux-launcher.ts).
import type { Duplex } from "node:stream";
import type { HostTransport } from "../transport/index.js";

/** Options a launcher gets for one VM (the seed's `lcow.*` names where they exist). */
export interface LaunchOptions {
  /** The VM's name (a compute system id on Windows). */
  name: string;
  /** How long the guest may take to dial the bridge, in ms. */
  timeoutMs: number;
  /** `lcow.kirdpath`: folder of the kernel and initrd (Windows). */
  kirdPath?: string;
  /** `lcow.kernel`: kernel file name in kirdPath. */
  kernel?: string;
  /** `lcow.initrd`: initrd file name in kirdPath. */
  initrd?: string;
  /** `lcow.bootparameters`: extra kernel command line. */
  bootParameters?: string;
  /** SCSI controllers to give the VM (1..4). */
  scsiControllers: number;
}

/** The host side of attaching a disk file at a controller and LUN (HCS ModifyComputeSystem on Windows). */
export interface ScsiAttachment {
  controller: number;
  lun: number;
  hostPath: string;
  readOnly: boolean;
}

/** How a VM ended. */
export interface VmExit {
  /** Exit code of the guest process (Linux) or 0 for an HCS system that stopped. */
  code: number | null;
  signal: string | null;
  /** The tail of the guest's own log output, for error messages. */
  log: string;
}

/** A running VM as the launcher hands it over: connected, not yet negotiated. */
export interface LaunchedVm {
  /** The bridge connection the guest dialled. */
  readonly bridge: Duplex;
  /** Where stdio relay listeners are opened. */
  readonly transport: HostTransport;
  /** The process that is the VM (the guest's namespace holder on Linux), when there is one. */
  readonly pid?: number;
  /** Settles when the VM stops, for whatever reason; never rejects. */
  readonly exited: Promise<VmExit>;
  /** The HCS-side attach of a disk; must happen before the bridge's MappedVirtualDisk Add. */
  attachScsi(attachment: ScsiAttachment): Promise<void>;
  /** The HCS-side detach; after the bridge's SCSIDevice Remove. */
  detachScsi(attachment: ScsiAttachment): Promise<void>;
  /**
   * A host path through which the guest's file at `guestPath` can be reached, or undefined when
   * the guest's files are not visible to the host (a real VM).
   */
  hostPath(guestPath: string): string | undefined;
  /**
   * Notes what the guest has mounted now, so that `terminate` can wait for the host resources
   * behind it to be freed even if the guest dies first. Called after each disk add. Optional.
   */
  recordMounts?(): Promise<void>;
  /** Stops the VM for good and releases what the host holds for it. Idempotent. */
  terminate(): Promise<void>;
}

export interface UtilityVmLauncher {
  /** Short name for messages: `linux`, `hcs`. */
  readonly kind: string;
  launch(options: LaunchOptions): Promise<LaunchedVm>;
}
