import { GcsError } from "../errors.js";

/** vsock ports are u32 on the wire (`VsockStdioRelaySettings`). */
export function checkPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff_ffff) {
    throw new GcsError("INVALID_ARGUMENT", `${what}: port must be an integer from 0 to 2^32-1, got ${port}`);
  }
}
