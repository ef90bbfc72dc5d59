// The fixed-disk VHD footer of Microsoft's "Virtual Hard Disk Image Format Specification":
// 512 big-endian bytes after the disk data. A fixed VHD is the raw disk plus this footer.
import { VhdError } from "../errors.js";
import { copyBytes } from "./bytes.js";

export const VHD_FOOTER_SIZE = 512;
export const VHD_COOKIE = "conectix";
/** Seconds between the Unix epoch and the VHD epoch (2000-01-01T00:00:00Z). */
export const VHD_EPOCH_OFFSET = 946_684_800;

export const VhdDiskType = { FIXED: 2, DYNAMIC: 3, DIFFERENCING: 4 } as const;

export interface ChsGeometry {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

export interface VhdFooter {
  features: number;
  fileFormatVersion: number;
  dataOffset: bigint; // 0xFFFFFFFFFFFFFFFF for fixed disks
  /** Seconds since 2000-01-01 UTC. */
  timestamp: number;
  creatorApplication: string; // 4 ASCII chars
  creatorVersion: number;
  creatorHostOs: string; // "Wi2k" or "Mac "
  originalSize: number;
  currentSize: number;
  geometry: ChsGeometry;
  diskType: number;
  checksum: number;
  uniqueId: Uint8Array; // 16 bytes
  savedState: number;
}

/**
 * CHS geometry exactly as the specification's appendix computes it from the disk size: the
 * sector count is capped at 65535 x 16 x 255, then 17, 31 or 63 sectors per track are tried.
 */
export function chsGeometry(diskBytes: number): ChsGeometry {
  let totalSectors = Math.floor(diskBytes / 512);
  if (totalSectors > 65535 * 16 * 255) totalSectors = 65535 * 16 * 255;
  let sectorsPerTrack: number;
  let heads: number;
  let cylinderTimesHeads: number;
  if (totalSectors >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    heads = Math.floor((cylinderTimesHeads + 1023) / 1024);
    if (heads < 4) heads = 4;
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectorsPerTrack };
}

/** Bytes the CHS geometry of a disk of `diskBytes` addresses. */
export function chsBytes(g: ChsGeometry): number {
  return g.cylinders * g.heads * g.sectorsPerTrack * 512;
}

/**
 * The smallest size >= `minBytes`, a multiple of `align`, whose CHS geometry addresses it
 * exactly. Readers that size a VHD by its geometry (Virtual PC, QEMU for unknown creators)
 * and readers that use the size field (Hyper-V) then agree. Beyond the largest CHS disk
 * (~127 GiB) the geometry saturates, every reader uses the size field, and `minBytes`
 * rounded to `align` is returned.
 */
export function chsExactSize(minBytes: number, align = 4096): number {
  let size = Math.ceil(minBytes / align) * align;
  if (size >= 65535 * 16 * 255 * 512) return size;
  // The gap between exact sizes is at most lcm(sectors * heads * 512, align): a few MiB.
  for (let i = 0; i < 1 << 16; i++, size += align) {
    if (chsBytes(chsGeometry(size)) === size) return size;
  }
  throw new RangeError(`no CHS-exact size near ${minBytes}`);
}

/** One's complement of the byte sum of the footer with the checksum field taken as zero. */
export function vhdChecksum(footer: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < VHD_FOOTER_SIZE; i++) if (i < 64 || i >= 68) sum += footer[i] ?? 0;
  return ~sum >>> 0;
}

/** Encodes the footer; `checksum` is ignored and computed. */
export function encodeVhdFooter(f: Omit<VhdFooter, "checksum">): Uint8Array {
  const out = new Uint8Array(VHD_FOOTER_SIZE);
  const v = new DataView(out.buffer);
  out.set(Buffer.from(VHD_COOKIE, "latin1"), 0); // Cookie
  v.setUint32(8, f.features, false); // Features
  v.setUint32(12, f.fileFormatVersion, false); // File Format Version
  v.setBigUint64(16, f.dataOffset, false); // Data Offset
  v.setUint32(24, f.timestamp >>> 0, false); // Time Stamp
  out.set(Buffer.from(f.creatorApplication.padEnd(4, " ").slice(0, 4), "latin1"), 28); // Creator Application
  v.setUint32(32, f.creatorVersion, false); // Creator Version
  out.set(Buffer.from(f.creatorHostOs.padEnd(4, " ").slice(0, 4), "latin1"), 36); // Creator Host OS
  v.setBigUint64(40, BigInt(f.originalSize), false); // Original Size
  v.setBigUint64(48, BigInt(f.currentSize), false); // Current Size
  v.setUint16(56, f.geometry.cylinders, false); // Disk Geometry: cylinders
  out[58] = f.geometry.heads; // Disk Geometry: heads
  out[59] = f.geometry.sectorsPerTrack; // Disk Geometry: sectors per track
  v.setUint32(60, f.diskType, false); // Disk Type
  out.set(f.uniqueId.subarray(0, 16), 68); // Unique Id
  out[84] = f.savedState; // Saved State
  v.setUint32(64, vhdChecksum(out), false); // Checksum
  return out;
}

/** Decodes and verifies a footer: a wrong cookie or checksum is FORMAT_INVALID. */
export function decodeVhdFooter(bytes: Uint8Array): VhdFooter {
  if (bytes.length !== VHD_FOOTER_SIZE) throw new VhdError("FORMAT_INVALID", `VHD footer: need 512 bytes, got ${bytes.length}`);
  const cookie = Buffer.from(bytes.subarray(0, 8)).toString("latin1");
  if (cookie !== VHD_COOKIE) throw new VhdError("FORMAT_INVALID", `VHD footer: bad cookie ${JSON.stringify(cookie)}`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, VHD_FOOTER_SIZE);
  const checksum = v.getUint32(64, false);
  const want = vhdChecksum(bytes);
  if (checksum !== want) {
    throw new VhdError("FORMAT_INVALID", `VHD footer: checksum 0x${checksum.toString(16)} does not match 0x${want.toString(16)}`);
  }
  return {
    features: v.getUint32(8, false),
    fileFormatVersion: v.getUint32(12, false),
    dataOffset: v.getBigUint64(16, false),
    timestamp: v.getUint32(24, false),
    creatorApplication: Buffer.from(bytes.subarray(28, 32)).toString("latin1"),
    creatorVersion: v.getUint32(32, false),
    creatorHostOs: Buffer.from(bytes.subarray(36, 40)).toString("latin1"),
    originalSize: Number(v.getBigUint64(40, false)),
    currentSize: Number(v.getBigUint64(48, false)),
    geometry: { cylinders: v.getUint16(56, false), heads: bytes[58] ?? 0, sectorsPerTrack: bytes[59] ?? 0 },
    diskType: v.getUint32(60, false),
    checksum,
    uniqueId: copyBytes(bytes, 68, 84),
    savedState: bytes[84] ?? 0,
  };
}

/** The footer lcow writes after a raw disk of `diskBytes` (a multiple of 512). */
export function fixedVhdFooter(diskBytes: number, options: { unixTime: number; uniqueId: Uint8Array }): Uint8Array {
  if (diskBytes % 512 !== 0) throw new VhdError("INVALID_ARGUMENT", `VHD disk size ${diskBytes} is not a multiple of 512`);
  return encodeVhdFooter({
    features: 2, // "reserved" bit, which the specification says must always be set
    fileFormatVersion: 0x00010000,
    dataOffset: 0xffffffffffffffffn, // fixed disks have no dynamic header
    timestamp: Math.max(0, options.unixTime - VHD_EPOCH_OFFSET),
    creatorApplication: "lcow",
    creatorVersion: 0x00010000,
    creatorHostOs: "Wi2k",
    originalSize: diskBytes,
    currentSize: diskBytes,
    geometry: chsGeometry(diskBytes),
    diskType: VhdDiskType.FIXED,
    uniqueId: options.uniqueId,
    savedState: 0,
  });
}
