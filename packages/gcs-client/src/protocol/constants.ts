// Fixed values of an LCOW bridge (spec §1, §2.3, §3.7.1).

/** The only protocol version that exists (`PvV4`). */
export const PROTOCOL_VERSION = 4;

/** ContainerId of everything aimed at the utility VM itself. */
export const NULL_CONTAINER_ID = "00000000-0000-0000-0000-000000000000";
/** hcsshim never sets ActivityId; it is always the null GUID. */
export const NULL_ACTIVITY_ID = NULL_CONTAINER_ID;

/** vsock port the guest GCS dials for the bridge. */
export const GCS_VSOCK_PORT = 0x4000_0000;
/** First stdio relay port; one new port per stream, never reused on a bridge. */
export const FIRST_STDIO_VSOCK_PORT = GCS_VSOCK_PORT + 1;
/** vsock port of init's boot entropy (the host writes 512 random bytes). */
export const ENTROPY_VSOCK_PORT = 1;
export const ENTROPY_BYTES = 512;
/** vsock port of the GCS's log stream (`vsockexec -o 109 -e 109`). */
export const LOG_VSOCK_PORT = 109;

/** `ProcessId` wait timeout meaning "forever". */
export const INFINITE_WAIT = 0xffff_ffff;
/** `ExitCode` of a process killed by a signal (Go's -1 as u32). */
export const SIGNALLED_EXIT_CODE = 0xffff_ffff;

/**
 * SCSI controller GUIDs the UVM document must use, by controller index 0..3: the guest maps the
 * index in `MappedVirtualDisk.Controller` to a vmbus device through them.
 */
export const SCSI_CONTROLLER_GUIDS = [
  "df6d0690-79e5-55b6-a5ec-c1e2f77f580a",
  "0110f83b-de10-5172-a266-78bca56bf50a",
  "b5d2d8d4-3a75-51bf-945b-3444dc6b8579",
  "305891a9-b251-5dfe-91a2-c25d9212275b",
] as const;
export const SCSI_LUNS_PER_CONTROLLER = 64;

/** The Hyper-V socket service GUID of vsock port `port` (go-winio `VsockServiceID`). */
export function vsockServiceId(port: number): string {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff_ffff) throw new RangeError(`vsock port ${port} is not a u32`);
  return `${port.toString(16).padStart(8, "0")}-facb-11e6-bd58-64006a7986d3`;
}
