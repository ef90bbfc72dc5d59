// VHD fixed-footer checks, written from the VHD specification (Virtual Hard Disk Image Format
// Specification, "Hard Disk Footer Format" and "CHS Calculation"), independently of src/, so a
// mistake in the writer's footer code is not repeated here. The encoder exists only for the
// mkfs stand-in and the harness self-test.
import { createReadStream } from "node:fs";
import { open, rm, stat } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { run, runOk } from "./exec.js";

export const VHD_FOOTER_SIZE = 512;
/** Seconds between the Unix epoch and the VHD epoch (2000-01-01T00:00:00Z). */
const VHD_EPOCH = 946_684_800;

export interface VhdFooter {
  cookie: string;
  features: number;
  fileFormatVersion: number;
  dataOffset: bigint;
  timestamp: number;
  creatorApplication: string;
  creatorVersion: number;
  creatorHostOs: number;
  originalSize: bigint;
  currentSize: bigint;
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
  diskType: number;
  checksum: number;
  /** Checksum computed over the footer with its checksum field taken as zero. */
  computedChecksum: number;
  uniqueId: string;
  savedState: number;
}

/** CHS geometry exactly as the VHD specification's pseudo-code computes it. */
export function specGeometry(sizeBytes: bigint): { cylinders: number; heads: number; sectorsPerTrack: number } {
  let totalSectors = Number(sizeBytes / 512n);
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

function onesComplementChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i++) if (i < 64 || i >= 68) sum = (sum + b[i]!) >>> 0;
  return ~sum >>> 0;
}

export function decodeFooter(b: Uint8Array): VhdFooter {
  if (b.length !== VHD_FOOTER_SIZE) throw new Error(`footer must be 512 bytes, got ${b.length}`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ascii = (o: number, n: number) => Buffer.from(b.subarray(o, o + n)).toString("latin1");
  return {
    cookie: ascii(0, 8),
    features: v.getUint32(8),
    fileFormatVersion: v.getUint32(12),
    dataOffset: v.getBigUint64(16),
    timestamp: v.getUint32(24),
    creatorApplication: ascii(28, 4),
    creatorVersion: v.getUint32(32),
    creatorHostOs: v.getUint32(36),
    originalSize: v.getBigUint64(40),
    currentSize: v.getBigUint64(48),
    cylinders: v.getUint16(56),
    heads: v.getUint8(58),
    sectorsPerTrack: v.getUint8(59),
    diskType: v.getUint32(60),
    checksum: v.getUint32(64),
    computedChecksum: onesComplementChecksum(b),
    uniqueId: Buffer.from(b.subarray(68, 84)).toString("hex"),
    savedState: v.getUint8(84),
  };
}

/** Test-only encoder (for the mkfs stand-in and self-tests). */
export function encodeFooter(size: bigint, o: { creatorApplication?: string; timestamp?: number; uniqueId?: Uint8Array } = {}): Uint8Array {
  const b = new Uint8Array(VHD_FOOTER_SIZE);
  const v = new DataView(b.buffer);
  b.set(Buffer.from("conectix", "latin1"), 0);
  v.setUint32(8, 2); // features: reserved bit, always set
  v.setUint32(12, 0x0001_0000); // file format version 1.0
  v.setBigUint64(16, 0xffff_ffff_ffff_ffffn); // data offset: none for a fixed disk
  v.setUint32(24, Math.max(0, (o.timestamp ?? VHD_EPOCH) - VHD_EPOCH));
  b.set(Buffer.from((o.creatorApplication ?? "lcow").padEnd(4, "\0").slice(0, 4), "latin1"), 28);
  v.setUint32(32, 0x0001_0000);
  v.setUint32(36, 0x5769_326b); // "Wi2k"
  v.setBigUint64(40, size);
  v.setBigUint64(48, size);
  const g = specGeometry(size);
  v.setUint16(56, g.cylinders);
  v.setUint8(58, g.heads);
  v.setUint8(59, g.sectorsPerTrack);
  v.setUint32(60, 2); // fixed disk
  b.set(o.uniqueId ?? new Uint8Array(16).fill(0x11), 68);
  v.setUint32(64, onesComplementChecksum(b));
  return b;
}

export async function readFooter(imagePath: string): Promise<VhdFooter> {
  const size = (await stat(imagePath)).size;
  const fh = await open(imagePath, "r");
  try {
    const b = new Uint8Array(VHD_FOOTER_SIZE);
    await fh.read(b, 0, VHD_FOOTER_SIZE, size - VHD_FOOTER_SIZE);
    return decodeFooter(b);
  } finally {
    await fh.close();
  }
}

export async function qemuVirtualSize(imagePath: string): Promise<{ virtualSize: number; info: unknown }> {
  const r = await runOk("qemu-img", ["info", "-f", "vpc", "--output", "json", imagePath]);
  const info = JSON.parse(r.stdout) as { "virtual-size": number };
  return { virtualSize: info["virtual-size"], info };
}

async function sha256OfRange(path: string, end?: number): Promise<string> {
  const h = createHash("sha256");
  const s = createReadStream(path, end === undefined ? { highWaterMark: 1 << 20 } : end === 0 ? { start: 1, end: 0 } : { end: end - 1, highWaterMark: 1 << 20 });
  for await (const chunk of s) h.update(chunk as Buffer);
  return h.digest("hex");
}

export interface VhdCheckResult {
  footer: VhdFooter;
  ext4Bytes: number;
  qemuVirtualSize: number;
  /** The `qemu-img convert -O raw` output, when `keepRaw` (the caller removes it). */
  rawPath: string;
}

/**
 * Checks a `layer.vhd` (ext4 + fixed footer): the footer is well formed per the spec (cookie,
 * checksum, fixed type, sizes = ext4 bytes, CHS as the spec computes it); `qemu-img info -f vpc`
 * reports a virtual size equal to the ext4 size; `qemu-img convert -f vpc -O raw` gives back
 * exactly the bytes before the footer. `workDir` receives the raw copy (deleted afterwards).
 * Throws an Error listing every failed expectation.
 */
export async function vhdChecks(imagePath: string, workDir: string, opts: { keepRaw?: boolean } = {}): Promise<VhdCheckResult> {
  const fileSize = (await stat(imagePath)).size;
  const ext4Bytes = fileSize - VHD_FOOTER_SIZE;
  const problems: string[] = [];
  const footer = await readFooter(imagePath);
  const expectGeom = specGeometry(BigInt(ext4Bytes));
  const want = (what: string, got: unknown, exp: unknown) => {
    if (got !== exp) problems.push(`${what}: got ${String(got)}, want ${String(exp)}`);
  };
  want("footer cookie", footer.cookie, "conectix");
  want("footer checksum", footer.checksum, footer.computedChecksum);
  want("footer disk type (2 = fixed)", footer.diskType, 2);
  want("footer data offset", footer.dataOffset, 0xffff_ffff_ffff_ffffn);
  want("footer file format version", footer.fileFormatVersion, 0x0001_0000);
  want("footer current size", footer.currentSize, BigInt(ext4Bytes));
  want("footer original size", footer.originalSize, BigInt(ext4Bytes));
  want("footer CHS", `${footer.cylinders}/${footer.heads}/${footer.sectorsPerTrack}`, `${expectGeom.cylinders}/${expectGeom.heads}/${expectGeom.sectorsPerTrack}`);
  want("ext4 size is a multiple of 4096", ext4Bytes % 4096, 0);

  // qemu refuses a footer with a bad checksum; report that next to the footer problems.
  let q: { virtualSize: number; info: unknown } = { virtualSize: -1, info: null };
  try {
    q = await qemuVirtualSize(imagePath);
  } catch (e) {
    problems.push(`qemu-img info -f vpc failed: ${(e as Error).message.split("\n").filter(Boolean).slice(-1)[0]}`);
  }
  const raw = join(workDir, "qemu-raw.img");
  if (q.virtualSize >= 0) {
    want(`qemu-img info -f vpc virtual-size (creator ${JSON.stringify(footer.creatorApplication)})`, q.virtualSize, ext4Bytes);
    await runOk("qemu-img", ["convert", "-f", "vpc", "-O", "raw", imagePath, raw]);
    const rawSize = (await stat(raw)).size;
    want("qemu-img convert -O raw output size", rawSize, ext4Bytes);
    if (rawSize === ext4Bytes) {
      const [a, b] = await Promise.all([sha256OfRange(raw), sha256OfRange(imagePath, ext4Bytes)]);
      want("sha256 of qemu-img raw output vs image minus footer", a, b);
    }
  }
  if (!opts.keepRaw) await rm(raw, { force: true });
  if (problems.length) throw new Error(`VHD checks failed for ${imagePath}:\n  ${problems.join("\n  ")}\nqemu-img info: ${JSON.stringify(q.info)}`);
  return { footer, ext4Bytes, qemuVirtualSize: q.virtualSize, rawPath: raw };
}

/** Byte-identity check for determinism, through `cmp`: resolves to null when identical, else cmp's report. */
export async function filesDiffer(a: string, b: string): Promise<string | null> {
  const r = await run("cmp", [a, b]);
  if (r.code === 0) return null;
  return (r.stdout + r.stderr).trim() || `cmp exited ${r.code}`;
}
