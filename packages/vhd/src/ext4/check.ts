// `check`: an ext4 structural checker that needs no e2fsprogs (so it runs on Windows too).
// It reads only metadata, streams inode tables group by group, and keeps a bit per block and a
// few bytes per inode. Whatever the bytes, it returns a report: every read is bounds-checked,
// every loop is bounded by a count taken from validated geometry, and a malformed structure
// becomes a finding naming it and its offset, never an exception.
import { open } from "node:fs/promises";
import { VhdError, isVhdError } from "../errors.js";
import { decodeVhdFooter, vhdChecksum, VHD_FOOTER_SIZE, VhdDiskType } from "../format/vhd-footer.js";
import { FileBlockSource, openImage, type BlockSource, type ImageFormat } from "../io/block-source.js";
import { CheckContext } from "./check/context.js";
import { checkDirectories } from "./check/dirs.js";
import { FindingCode, FindingList, type CheckReport, type CheckStats, type Finding } from "./check/findings.js";
import { checkBitmaps, checkGroups } from "./check/groups.js";
import { scanInodes } from "./check/inodes.js";
import { checkSuperblock } from "./check/superblock.js";

export { FindingCode, type CheckReport, type CheckStats, type Finding, type FindingSeverity } from "./check/findings.js";

/** Options of `checkExt4`. */
export interface CheckOptions {
  /** Findings kept before the rest are dropped (one TOO_MANY_FINDINGS says how many). If not provided, 1000. */
  maxFindings?: number;
}

function emptyStats(): CheckStats {
  return { blockSize: 0, blocksCount: 0, inodesCount: 0, groups: 0, blocksUsed: 0, inodesUsed: 0, directories: 0, regularFiles: 0, symlinks: 0, specialFiles: 0, blocksRead: 0 };
}

function finish(findings: FindingList, stats: CheckStats): CheckReport {
  const list = findings.finish();
  return { ok: list.every((x) => x.severity !== "error"), findings: list, stats };
}

/**
 * Checks the ext4 filesystem on `source` (its bytes start at offset 0) and reports every
 * structural problem found. Never modifies the source. Rejects only with a `VhdError` of code
 * IO when the source itself cannot be read; a corrupt filesystem resolves with findings.
 */
export async function checkExt4(source: BlockSource, options: CheckOptions = {}): Promise<CheckReport> {
  const findings = new FindingList(options.maxFindings ?? 1000);
  const stats = emptyStats();
  try {
    const geo = await checkSuperblock((buf, pos) => source.read(buf, pos), source.size, findings);
    if (!geo) return finish(findings, stats);
    stats.blockSize = geo.blockSize;
    stats.blocksCount = geo.blocksCount;
    stats.inodesCount = geo.inodesCount;
    stats.groups = geo.groups;
    const ctx = new CheckContext(source, geo, findings, stats);
    const groups = await checkGroups(ctx);
    const dirsPerGroup = await scanInodes(ctx, groups);
    await checkDirectories(ctx);
    await checkBitmaps(ctx, groups, dirsPerGroup);
    return finish(findings, stats);
  } catch (err) {
    if (isVhdError(err)) throw err;
    // A bug of ours must not pass for a verdict on the image: say so, with the cause kept.
    throw new VhdError("FORMAT_INVALID", `ext4 check failed unexpectedly: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}

/** What `checkImage` found, with the container it identified. */
export interface ImageCheckReport extends CheckReport {
  /** The container format, as identified; undefined when the file could not be opened. */
  format: ImageFormat | undefined;
}

/**
 * Checks a disk image file: the container first (a fixed VHD's footer checksum, type and size
 * against the file; a VHDX's headers via `openImage`), then the ext4 filesystem inside.
 * A bad VHD footer is a finding, and the ext4 check still runs on the bytes before it. Resolves
 * with the report (the CLI exits 0 when `ok`); rejects only with a VhdError of code IO when the
 * file cannot be opened or read.
 */
export async function checkImage(path: string, options: CheckOptions = {}): Promise<ImageCheckReport> {
  const containerFindings: Finding[] = [];
  const add = (code: Finding["code"], structure: string, message: string, offset?: number, severity: Finding["severity"] = "error") =>
    containerFindings.push(offset === undefined ? { code, severity, structure, message } : { code, severity, structure, offset, message });

  let format: ImageFormat | undefined;
  let source: BlockSource | undefined;
  const handle = await open(path, "r").catch((err: unknown) => {
    throw new VhdError("IO", `cannot open ${path}: ${(err as Error).message}`, { path, cause: err });
  });
  let fileSize: number;
  let head: Uint8Array;
  let tail: Uint8Array | undefined;
  try {
    fileSize = (await handle.stat()).size;
    head = new Uint8Array(8);
    await handle.read(head, 0, 8, 0);
    if (fileSize >= VHD_FOOTER_SIZE) {
      tail = new Uint8Array(VHD_FOOTER_SIZE);
      await handle.read(tail, 0, VHD_FOOTER_SIZE, fileSize - VHD_FOOTER_SIZE);
    }
  } catch (err) {
    throw new VhdError("IO", `reading ${path}: ${(err as Error).message}`, { path, cause: err });
  } finally {
    await handle.close();
  }

  const isVhdx = Buffer.from(head).toString("latin1") === "vhdxfile";
  const hasCookie = tail !== undefined && Buffer.from(tail.subarray(0, 8)).toString("latin1") === "conectix";
  if (!isVhdx && hasCookie && tail) {
    format = "vhd";
    const footerAt = fileSize - VHD_FOOTER_SIZE;
    const v = new DataView(tail.buffer, tail.byteOffset, VHD_FOOTER_SIZE);
    const stored = v.getUint32(64, false);
    const want = vhdChecksum(tail);
    let diskBytes = footerAt;
    if (stored !== want) {
      add(FindingCode.VHD_FOOTER_CHECKSUM, "VHD footer", `checksum 0x${stored.toString(16)} does not match 0x${want.toString(16)}`, footerAt + 64);
    } else {
      const footer = decodeVhdFooter(tail);
      if (footer.diskType !== VhdDiskType.FIXED) add(FindingCode.VHD_FOOTER_INVALID, "VHD footer", `disk type ${footer.diskType}: only fixed VHDs (2) are supported`, footerAt + 60);
      else if (footer.dataOffset !== 0xffffffffffffffffn) add(FindingCode.VHD_FOOTER_INVALID, "VHD footer", `data offset 0x${footer.dataOffset.toString(16)} (a fixed VHD has none: 0xffffffffffffffff)`, footerAt + 16);
      if (footer.currentSize !== footerAt) {
        add(FindingCode.VHD_FOOTER_INVALID, "VHD footer", `current size ${footer.currentSize} but the file holds ${footerAt} bytes before the footer`, footerAt + 48);
      }
      if (footer.currentSize <= footerAt) diskBytes = footer.currentSize;
    }
    if (footerAt % 512 !== 0) add(FindingCode.VHD_FOOTER_INVALID, "VHD footer", `disk data of ${footerAt} bytes is not a whole number of 512-byte sectors`, footerAt);
    source = await FileBlockSource.open(path, { offset: 0, size: diskBytes });
  } else {
    try {
      const opened = await openImage(path);
      format = opened.format;
      source = opened.source;
      for (const note of opened.notes) add(FindingCode.IMAGE_NOTE, `${opened.format} container`, note, undefined, "warning");
    } catch (err) {
      if (!isVhdError(err) || err.code === "IO") throw err;
      add(FindingCode.IMAGE_INVALID, isVhdx ? "VHDX container" : "image", err.message, err.offset);
    }
  }
  if (!source) return { format, ok: false, findings: containerFindings, stats: emptyStats() };
  try {
    const report = await checkExt4(source, options);
    const findings = [...containerFindings, ...report.findings];
    return { format, ok: findings.every((x) => x.severity !== "error"), findings, stats: report.stats };
  } finally {
    await source.close();
  }
}
