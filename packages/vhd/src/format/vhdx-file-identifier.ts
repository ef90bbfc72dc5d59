// MS-VHDX 2.2.1 File Type Identifier: the first 64 KiB of the file, never rewritten after
// creation, so a torn write elsewhere can never make the file unrecognisable.
import { VhdError } from "../errors.js";

/** Offset of the file type identifier. */
export const VHDX_FILE_IDENTIFIER_OFFSET = 0;
/** Bytes the identifier occupies (the structure is 520 bytes; the rest of the 64 KiB is reserved). */
export const VHDX_FILE_IDENTIFIER_SIZE = 64 * 1024;
/** The signature, "vhdxfile" in ASCII. */
export const VHDX_SIGNATURE = "vhdxfile";

/** The decoded file type identifier. */
export interface VhdxFileIdentifier {
  /** Who created the file (UTF-16, for diagnostics only: the spec forbids acting on it). */
  creator: string;
}

/** Encodes the 64 KiB identifier; `creator` is cut to 255 UTF-16 units so a NUL still fits. */
export function encodeVhdxFileIdentifier(id: VhdxFileIdentifier): Uint8Array {
  const out = new Uint8Array(VHDX_FILE_IDENTIFIER_SIZE);
  out.set(Buffer.from(VHDX_SIGNATURE, "latin1"), 0x00); // Signature
  out.set(Buffer.from(id.creator.slice(0, 255), "utf16le"), 0x08); // Creator (512 bytes)
  return out;
}

/** Decodes the identifier from at least its first 520 bytes; a wrong signature is FORMAT_INVALID. */
export function decodeVhdxFileIdentifier(bytes: Uint8Array): VhdxFileIdentifier {
  if (bytes.length < 8 + 512) throw new VhdError("FORMAT_INVALID", `VHDX file identifier: need 520 bytes, got ${bytes.length}`, { offset: 0 });
  const sig = Buffer.from(bytes.subarray(0x00, 0x08)).toString("latin1");
  if (sig !== VHDX_SIGNATURE) throw new VhdError("FORMAT_INVALID", `VHDX file identifier: bad signature ${JSON.stringify(sig)}`, { offset: 0 });
  const creator = Buffer.from(bytes.subarray(0x08, 0x08 + 512)).toString("utf16le");
  const nul = creator.indexOf("\0");
  return { creator: nul < 0 ? creator : creator.slice(0, nul) };
}
