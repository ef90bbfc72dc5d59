// SOCKADDR_HV (spec §1.2): 36 bytes, little-endian, no padding:
//   0  u16  Family    34 (AF_HYPERV)
//   2  u16  Reserved  0
//   4  GUID VmId      the utility VM's RuntimeId
//   20 GUID ServiceId VsockServiceID(port)
// A GUID is stored in Windows' in-memory layout: Data1 u32 LE, Data2 u16 LE, Data3 u16 LE, then
// Data4's 8 bytes as written, so `40000000-facb-11e6-bd58-64006a7986d3` is
// `00 00 00 40 cb fa e6 11 bd 58 64 00 6a 79 86 d3`.
import { GcsError } from "../../errors.js";

export const AF_HYPERV = 34;
export const SOCKADDR_HV_SIZE = 36;

const GUID_TEXT = /^\{?([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})\}?$/i;

/** True for `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, braces allowed. */
export function isGuid(text: string): boolean {
  return typeof text === "string" && GUID_TEXT.test(text);
}

/** A GUID string as its 16 bytes in Windows' in-memory layout. */
export function encodeGuid(text: string, into: Uint8Array = new Uint8Array(16), at = 0): Uint8Array {
  const m = GUID_TEXT.exec(typeof text === "string" ? text : "");
  if (!m) throw new GcsError("INVALID_ARGUMENT", `${JSON.stringify(text)} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)`);
  const view = new DataView(into.buffer, into.byteOffset + at, 16);
  view.setUint32(0, parseInt(m[1]!, 16), true); // Data1
  view.setUint16(4, parseInt(m[2]!, 16), true); // Data2
  view.setUint16(6, parseInt(m[3]!, 16), true); // Data3
  const data4 = m[4]! + m[5]!; // 16 hex digits, byte order as written
  for (let i = 0; i < 8; i++) view.setUint8(8 + i, parseInt(data4.slice(2 * i, 2 * i + 2), 16));
  return into;
}

/** The inverse of encodeGuid, lower case without braces. */
export function decodeGuid(bytes: Uint8Array, at = 0): string {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, 16);
  const hex = (n: number, width: number): string => n.toString(16).padStart(width, "0");
  const data4 = [...bytes.subarray(at + 8, at + 16)].map((b) => hex(b, 2)).join("");
  return `${hex(view.getUint32(0, true), 8)}-${hex(view.getUint16(4, true), 4)}-${hex(view.getUint16(6, true), 4)}-${data4.slice(0, 4)}-${data4.slice(4)}`;
}

/** The 36-byte SOCKADDR_HV for binding to `serviceId` on partition `vmId`. */
export function encodeSockaddrHv(vmId: string, serviceId: string): Buffer {
  const out = Buffer.alloc(SOCKADDR_HV_SIZE);
  out.writeUInt16LE(AF_HYPERV, 0); // Family
  out.writeUInt16LE(0, 2); // Reserved
  encodeGuid(vmId, out, 4); // VmId
  encodeGuid(serviceId, out, 20); // ServiceId
  return out;
}
