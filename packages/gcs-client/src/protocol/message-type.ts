// Message identifiers of the GCS bridge (hcsshim internal/gcs/prot/protocol.go; spec §2.2).
// Layout of the 32-bit `Type`: kind (4 bits) | category (8) | message id (12) | version (8).

/** Kind bits (top nibble). */
export const MessageKind = {
  REQUEST: 0x1000_0000,
  RESPONSE: 0x2000_0000,
  NOTIFICATION: 0x3000_0000,
} as const;

export const KIND_MASK = 0xf000_0000;

/** Categories: ComputeSystem (everything LCOW uses) and ComputeService (Windows GCS only). */
const COMPUTE_SYSTEM = 0x0010_0000;
const COMPUTE_SERVICE = 0x0020_0000;

const proc = (category: number, index: number): number => (category | (index << 8) | 0x01) >>> 0;

/** The RPCs, without kind bits (`RPCCreate = ComputeSystem | 1<<8 | 1`, and so on). */
export const Rpc = {
  Create: proc(COMPUTE_SYSTEM, 1),
  Start: proc(COMPUTE_SYSTEM, 2),
  ShutdownGraceful: proc(COMPUTE_SYSTEM, 3),
  ShutdownForced: proc(COMPUTE_SYSTEM, 4),
  ExecuteProcess: proc(COMPUTE_SYSTEM, 5),
  WaitForProcess: proc(COMPUTE_SYSTEM, 6),
  SignalProcess: proc(COMPUTE_SYSTEM, 7),
  ResizeConsole: proc(COMPUTE_SYSTEM, 8),
  GetProperties: proc(COMPUTE_SYSTEM, 9),
  ModifySettings: proc(COMPUTE_SYSTEM, 10),
  NegotiateProtocol: proc(COMPUTE_SYSTEM, 11),
  DumpStacks: proc(COMPUTE_SYSTEM, 12),
  DeleteContainerState: proc(COMPUTE_SYSTEM, 13),
  UpdateContainer: proc(COMPUTE_SYSTEM, 14),
  LifecycleNotification: proc(COMPUTE_SYSTEM, 15),
  ModifyServiceSettings: proc(COMPUTE_SERVICE, 1),
} as const;

export type RpcName = keyof typeof Rpc;

/** The only notification type: a container's state changed (`0x30100101`). */
export const CONTAINER_NOTIFICATION = (MessageKind.NOTIFICATION | proc(COMPUTE_SYSTEM, 1)) >>> 0;

/** Wire type of a request for `rpc`. */
export const requestType = (rpc: number): number => (MessageKind.REQUEST | rpc) >>> 0;
/** Wire type of the response to a request of wire type `type` (the guest sets the top nibble to 2). */
export const responseTypeOf = (type: number): number => (MessageKind.RESPONSE | (type & 0x0fff_ffff)) >>> 0;
/** The RPC (no kind bits) of a wire type. */
export const rpcOf = (type: number): number => (type & 0x0fff_ffff) >>> 0;
/** The kind bits of a wire type. */
export const kindOf = (type: number): number => (type & KIND_MASK) >>> 0;

const NAMES = new Map<number, RpcName>(Object.entries(Rpc).map(([name, value]) => [value, name as RpcName]));

/** The RPC's name (`ModifySettings`) for a wire type of any kind, or its hex for an unknown one. */
export function rpcName(type: number): string {
  return NAMES.get(rpcOf(type)) ?? `0x${(type >>> 0).toString(16).padStart(8, "0")}`;
}
