// Fixed values of an LCOW bridge (spec §1, §2.3, §3.7.1).
import { LCOW_VSOCK_PORTS } from "@lcow/hcs";

/** The only protocol version that exists (`PvV4`). */
export const PROTOCOL_VERSION = 4;

/** ContainerId of everything aimed at the utility VM itself. */
export const NULL_CONTAINER_ID = "00000000-0000-0000-0000-000000000000";
/** hcsshim never sets ActivityId; it is always the null GUID. */
export const NULL_ACTIVITY_ID = NULL_CONTAINER_ID;

/** vsock port the guest GCS dials for the bridge. */
export const GCS_VSOCK_PORT = LCOW_VSOCK_PORTS.gcs;
/** First stdio relay port; one new port per stream, never reused on a bridge. */
export const FIRST_STDIO_VSOCK_PORT = GCS_VSOCK_PORT + 1;
/** vsock port of init's boot entropy (the host writes 512 random bytes). */
export const ENTROPY_VSOCK_PORT = LCOW_VSOCK_PORTS.entropy;
export const ENTROPY_BYTES = 512;
/** vsock port of the GCS's log stream (`vsockexec -o 109 -e 109`). */
export const LOG_VSOCK_PORT = LCOW_VSOCK_PORTS.logs;

/** `ProcessId` wait timeout meaning "forever". */
export const INFINITE_WAIT = 0xffff_ffff;
/** `ExitCode` of a process killed by a signal (Go's -1 as u32). */
export const SIGNALLED_EXIT_CODE = 0xffff_ffff;

// The SCSI controller keys and the vsock-port-to-service-GUID mapping are HCS document facts
// too, so they live once, in @lcow/hcs; the bridge re-exports them for guests and clients.
export { SCSI_CONTROLLER_GUIDS, SCSI_LUNS_PER_CONTROLLER, hvSocketServiceId as vsockServiceId } from "@lcow/hcs";
