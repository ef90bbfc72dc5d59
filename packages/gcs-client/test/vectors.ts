// Golden frames of one bridge session, byte for byte. §5.1 and §5.2 are the spec's hex dumps;
// the other headers are the spec's §5.3 table where it gives them, and otherwise written out
// here from the field tables (§3.x: Go struct order, omitempty) with the Size counted by hand.
// Requests end with the `\n` of hcsshim's json.Encoder; responses have none (json.Marshal).
import { hex } from "./helpers.js";

const NULL = "00000000-0000-0000-0000-000000000000";
/** A container id as the guest requires under a security policy: 64 hex characters. */
export const CONTAINER = "6d2d8ffa3c6b6a7a7ea8cfe25e0e4e2b1c7a21e1c3a9f3fb7d0f39f5c2b1a0e9";

const framed = (header: string, payload: string): Buffer => Buffer.concat([hex(header), Buffer.from(payload, "utf8")]);

export interface Vector {
  name: string;
  bytes: Buffer;
  type: number;
  id: bigint;
  size: number;
  /** The payload as the reader must see it. */
  body: Record<string, unknown>;
}

const vector = (name: string, type: number, id: number, size: number, bytes: Buffer): Vector => {
  const body = JSON.parse(bytes.subarray(16).toString("utf8")) as Record<string, unknown>;
  return { name, bytes, type, id: BigInt(id), size, body };
};

/** §5.1, Id 0, 125 bytes. */
export const NEGOTIATE_REQUEST = vector(
  "NegotiateProtocol request (§5.1)",
  0x10100b01,
  0,
  125,
  hex(
    "01 0b 10 10 7d 00 00 00 00 00 00 00 00 00 00 00",
    "7b 22 43 6f 6e 74 61 69 6e 65 72 49 64 22 3a 22",
    "22 2c 22 41 63 74 69 76 69 74 79 49 64 22 3a 22",
    "30 30 30 30 30 30 30 30 2d 30 30 30 30 2d 30 30",
    "30 30 2d 30 30 30 30 2d 30 30 30 30 30 30 30 30",
    "30 30 30 30 22 2c 22 4d 69 6e 69 6d 75 6d 56 65",
    "72 73 69 6f 6e 22 3a 34 2c 22 4d 61 78 69 6d 75",
    "6d 56 65 72 73 69 6f 6e 22 3a 34 7d 0a",
  ),
);

/** §5.2, Id 0, 342 bytes. */
export const NEGOTIATE_RESPONSE = vector(
  "NegotiateProtocol response (§5.2)",
  0x20100b01,
  0,
  342,
  hex(
    "01 0b 10 20 56 01 00 00 00 00 00 00 00 00 00 00",
    "7b 22 52 65 73 75 6c 74 22 3a 30 2c 22 41 63 74",
    "69 76 69 74 79 49 64 22 3a 22 30 30 30 30 30 30",
    "30 30 2d 30 30 30 30 2d 30 30 30 30 2d 30 30 30",
    "30 2d 30 30 30 30 30 30 30 30 30 30 30 30 22 2c",
    "22 56 65 72 73 69 6f 6e 22 3a 34 2c 22 43 61 70",
    "61 62 69 6c 69 74 69 65 73 22 3a 7b 22 53 75 70",
    "70 6f 72 74 65 64 53 63 68 65 6d 61 56 65 72 73",
    "69 6f 6e 73 22 3a 5b 7b 22 4d 61 6a 6f 72 22 3a",
    "32 2c 22 4d 69 6e 6f 72 22 3a 31 7d 5d 2c 22 52",
    "75 6e 74 69 6d 65 4f 73 54 79 70 65 22 3a 22 4c",
    "69 6e 75 78 22 2c 22 47 75 65 73 74 44 65 66 69",
    "6e 65 64 43 61 70 61 62 69 6c 69 74 69 65 73 22",
    "3a 7b 22 4e 61 6d 65 73 70 61 63 65 41 64 64 52",
    "65 71 75 65 73 74 53 75 70 70 6f 72 74 65 64 22",
    "3a 74 72 75 65 2c 22 53 69 67 6e 61 6c 50 72 6f",
    "63 65 73 73 53 75 70 70 6f 72 74 65 64 22 3a 74",
    "72 75 65 2c 22 44 75 6d 70 53 74 61 63 6b 73 53",
    "75 70 70 6f 72 74 65 64 22 3a 74 72 75 65 2c 22",
    "44 65 6c 65 74 65 43 6f 6e 74 61 69 6e 65 72 53",
    "74 61 74 65 53 75 70 70 6f 72 74 65 64 22 3a 74",
    "72 75 65 7d 7d 7d",
  ),
);

/** §5.3: MappedVirtualDisk Add, id 1, 278 bytes (Controller 0 is omitted, as Go's omitempty does). */
export const MAPPED_DISK_ADD = vector(
  "ModifySettings MappedVirtualDisk Add (§5.3)",
  0x10100a01,
  1,
  278,
  framed(
    "01 0a 10 10 16 01 00 00 01 00 00 00 00 00 00 00",
    `{"ContainerId":"${NULL}","ActivityId":"${NULL}","Request":{"RequestType":"Add","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/run/mounts/scsi/m0","Lun":1,"ReadOnly":true,"Options":["ro"]}}}\n`,
  ),
);

/** §5.3 + §3.3: ExecuteProcess, id 2, 449 bytes, stdio ports 0x40000001..3. */
export const EXECUTE_PROCESS = vector(
  "ExecuteProcess request (§3.3, §5.3)",
  0x10100501,
  2,
  449,
  framed(
    "01 05 10 10 c1 01 00 00 02 00 00 00 00 00 00 00",
    `{"ContainerId":"${NULL}","ActivityId":"${NULL}","Settings":{"ProcessParameters":"{\\"CommandArgs\\":[\\"/bin/sh\\",\\"-c\\",\\"cat; exit 3\\"],\\"WorkingDirectory\\":\\"/\\",\\"Environment\\":{\\"PATH\\":\\"/usr/bin:/bin\\"},\\"CreateStdInPipe\\":true,\\"CreateStdOutPipe\\":true,\\"CreateStdErrPipe\\":true}","VsockStdioRelaySettings":{"StdIn":1073741825,"StdOut":1073741826,"StdErr":1073741827}}}\n`,
  ),
);

/** §5.3: the ExecuteProcess response, id 2, 96 bytes. */
export const EXECUTE_PROCESS_RESPONSE = vector(
  "ExecuteProcess response (§5.3)",
  0x20100501,
  2,
  96,
  framed("01 05 10 20 60 00 00 00 02 00 00 00 00 00 00 00", `{"Result":0,"ActivityId":"${NULL}","ProcessId":412}`),
);

/** §5.3: WaitForProcess, id 3, 164 bytes, infinite timeout. */
export const WAIT_FOR_PROCESS = vector(
  "WaitForProcess request (§5.3)",
  0x10100601,
  3,
  164,
  framed("01 06 10 10 a4 00 00 00 03 00 00 00 00 00 00 00", `{"ContainerId":"${NULL}","ActivityId":"${NULL}","ProcessId":412,"TimeoutInMs":4294967295}\n`),
);

/** §5.3: the WaitForProcess response, id 3, 93 bytes, exit code 3. */
export const WAIT_FOR_PROCESS_RESPONSE = vector(
  "WaitForProcess response (§5.3)",
  0x20100601,
  3,
  93,
  framed("01 06 10 20 5d 00 00 00 03 00 00 00 00 00 00 00", `{"Result":0,"ActivityId":"${NULL}","ExitCode":3}`),
);

/** §3.7.3: CombinedLayers Add, id 4 (top-most layer first). */
export const COMBINED_LAYERS_ADD = vector(
  "ModifySettings CombinedLayers Add (§3.7.3)",
  0x10100a01,
  4,
  487,
  framed(
    "01 0a 10 10 e7 01 00 00 04 00 00 00 00 00 00 00",
    `{"ContainerId":"${NULL}","ActivityId":"${NULL}","Request":{"RequestType":"Add","ResourceType":"CombinedLayers","Settings":{"ContainerRootPath":"/run/gcs/c/${CONTAINER}/rootfs","Layers":[{"Path":"/run/mounts/scsi/m1"},{"Path":"/run/mounts/scsi/m0"}],"ScratchPath":"/run/mounts/scsi/m2/scratch/${CONTAINER}"}}}\n`,
  ),
);

/** §3.7.3: CombinedLayers Remove, id 5: only ContainerRootPath. */
export const COMBINED_LAYERS_REMOVE = vector(
  "ModifySettings CombinedLayers Remove (§3.7.3)",
  0x10100a01,
  5,
  308,
  framed(
    "01 0a 10 10 34 01 00 00 05 00 00 00 00 00 00 00",
    `{"ContainerId":"${NULL}","ActivityId":"${NULL}","Request":{"RequestType":"Remove","ResourceType":"CombinedLayers","Settings":{"ContainerRootPath":"/run/gcs/c/${CONTAINER}/rootfs"}}}\n`,
  ),
);

/** §3.7.1: MappedVirtualDisk Remove, id 6: the same settings as the Add. */
export const MAPPED_DISK_REMOVE = vector(
  "ModifySettings MappedVirtualDisk Remove (§3.7.1)",
  0x10100a01,
  6,
  281,
  framed(
    "01 0a 10 10 19 01 00 00 06 00 00 00 00 00 00 00",
    `{"ContainerId":"${NULL}","ActivityId":"${NULL}","Request":{"RequestType":"Remove","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/run/mounts/scsi/m0","Lun":1,"ReadOnly":true,"Options":["ro"]}}}\n`,
  ),
);

/**
 * §3.7.2: SCSIDevice Remove, id 7, controller 2 LUN 1. The spec's prose shows ResourceType
 * first; Go marshals ModificationRequest in struct order, RequestType first (as §5.3 shows).
 */
export const SCSI_DEVICE_REMOVE = vector(
  "ModifySettings SCSIDevice Remove (§3.7.2)",
  0x10100a01,
  7,
  222,
  framed(
    "01 0a 10 10 de 00 00 00 07 00 00 00 00 00 00 00",
    `{"ContainerId":"${NULL}","ActivityId":"${NULL}","Request":{"RequestType":"Remove","ResourceType":"SCSIDevice","Settings":{"Controller":2,"Lun":1}}}\n`,
  ),
);

/** §3.5: SignalProcess (SIGTERM) of a UVM process, id 8, through GcsBridge.request(). */
export const SIGNAL_PROCESS = vector(
  "SignalProcess request (§3.5)",
  0x10100701,
  8,
  163,
  framed("01 07 10 10 a3 00 00 00 08 00 00 00 00 00 00 00", `{"ContainerId":"${NULL}","ActivityId":"${NULL}","ProcessId":412,"Options":{"Signal":15}}\n`),
);

/** §5.3's error response (its "…" filled in), answering the SignalProcess: 0xC037010E. */
export const ERROR_RESPONSE = vector(
  "error response (§5.3)",
  0x20100701,
  8,
  315,
  framed(
    "01 07 10 20 3b 01 00 00 08 00 00 00 00 00 00 00",
    `{"Result":-1070137074,"ActivityId":"${NULL}","ErrorMessage":"HRESULT: 0xc037010e","ErrorRecords":[{"Result":-1070137074,"Message":"HRESULT: 0xc037010e","StackTrace":"goroutine 1","ModuleName":"gcs","FileName":"bridge_v2.go","Line":394,"FunctionName":"signalProcessV2"}]}`,
  ),
);

/** §3.9: DumpStacks, id 9. */
export const DUMP_STACKS = vector(
  "DumpStacks request (§3.9)",
  0x10100c01,
  9,
  123,
  framed("01 0c 10 10 7b 00 00 00 09 00 00 00 00 00 00 00", `{"ContainerId":"${NULL}","ActivityId":"${NULL}"}\n`),
);

export const DUMP_STACKS_RESPONSE = vector(
  "DumpStacks response (§3.9)",
  0x20100c01,
  9,
  134,
  framed("01 0c 10 20 86 00 00 00 09 00 00 00 00 00 00 00", `{"Result":0,"ActivityId":"${NULL}","GuestStacks":"goroutine 1 [running]:\\nmain.main()\\n"}`),
);

/** §3.11 / §5.3: a container notification, Id 0. */
export const CONTAINER_NOTIFICATION_FRAME = vector(
  "container notification (§3.11, §5.3)",
  0x30100101,
  0,
  204,
  framed("01 01 10 30 cc 00 00 00 00 00 00 00 00 00 00 00", `{"ContainerId":"${CONTAINER}","ActivityId":"${NULL}","Type":"UnexpectedExit","Operation":"None","Result":0}`),
);

/** §3.10: ShutdownGraceful of the UVM, the first request of its bridge (id 0). */
export const SHUTDOWN_GRACEFUL = vector(
  "ShutdownGraceful request (§3.10)",
  0x10100301,
  0,
  123,
  framed("01 03 10 10 7b 00 00 00 00 00 00 00 00 00 00 00", `{"ContainerId":"${NULL}","ActivityId":"${NULL}"}\n`),
);

/** §3.10: ShutdownForced of the UVM (id 0). */
export const SHUTDOWN_FORCED = vector(
  "ShutdownForced request (§3.10)",
  0x10100401,
  0,
  123,
  framed("01 04 10 10 7b 00 00 00 00 00 00 00 00 00 00 00", `{"ContainerId":"${NULL}","ActivityId":"${NULL}"}\n`),
);

/** Every vector, for the decoder tests. */
export const ALL_VECTORS: readonly Vector[] = [
  NEGOTIATE_REQUEST,
  NEGOTIATE_RESPONSE,
  MAPPED_DISK_ADD,
  EXECUTE_PROCESS,
  EXECUTE_PROCESS_RESPONSE,
  WAIT_FOR_PROCESS,
  WAIT_FOR_PROCESS_RESPONSE,
  COMBINED_LAYERS_ADD,
  COMBINED_LAYERS_REMOVE,
  MAPPED_DISK_REMOVE,
  SCSI_DEVICE_REMOVE,
  SIGNAL_PROCESS,
  ERROR_RESPONSE,
  DUMP_STACKS,
  DUMP_STACKS_RESPONSE,
  CONTAINER_NOTIFICATION_FRAME,
  SHUTDOWN_GRACEFUL,
  SHUTDOWN_FORCED,
];
