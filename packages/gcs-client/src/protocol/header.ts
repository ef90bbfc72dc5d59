// The 16-byte frame header (spec §2.1): little-endian {u32 Type, u32 Size (incl. header), u64 Id}.
import { GcsError } from "../errors.js";

export const HEADER_SIZE = 16;
/** hcsshim's host limit for a guest->host frame (`MaxMsgSize`). Our default is larger on purpose: see frame.ts. */
export const HCSSHIM_MAX_MESSAGE_SIZE = 0x1_0000;

export interface FrameHeader {
  /** Message identifier (request, response or notification type). */
  type: number;
  /** Total frame size: the header plus the payload. */
  size: number;
  /** Sequence id: chosen by the host for a request, echoed by the response, 0 for notifications. */
  id: bigint;
}

export function encodeHeader(header: FrameHeader, into: Uint8Array = new Uint8Array(HEADER_SIZE), at = 0): Uint8Array {
  const view = new DataView(into.buffer, into.byteOffset + at, HEADER_SIZE);
  view.setUint32(0, header.type >>> 0, true); // Type
  view.setUint32(4, header.size >>> 0, true); // Size, header included
  view.setBigUint64(8, header.id, true); // Id
  return into;
}

export function decodeHeader(bytes: Uint8Array, at = 0): FrameHeader {
  if (bytes.length - at < HEADER_SIZE) throw new GcsError("PROTOCOL", `frame header needs ${HEADER_SIZE} bytes, got ${bytes.length - at}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, HEADER_SIZE);
  return { type: view.getUint32(0, true), size: view.getUint32(4, true), id: view.getBigUint64(8, true) };
}
