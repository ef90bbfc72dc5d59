// @lcow/gcs-client: the host side of the GCS bridge protocol.
export * from "./protocol/index.js";
export { GcsBridge, DEFAULT_RPC_TIMEOUT_MS, DEFAULT_SHUTDOWN_TIMEOUT_MS, type GcsBridgeOptions, type GcsBridgeEvents, type NegotiateResult, type RpcOptions } from "./bridge.js";
export { HRESULT_CODES, codeForHresult } from "./bridge-errors.js";
export { GuestProcess, type ExecuteProcessOptions, type FinishOptions } from "./process.js";
export * from "./transport/index.js";
export * from "./uvm/index.js";
export { KeyedMutex } from "./keyed-mutex.js";
