// Read side of VHDX: opens and validates a dynamic VHDX (MS-VHDX) and serves its virtual disk
// as a BlockSource. Nothing is written to the file: a non-empty log is replayed into an
// in-memory overlay (MS-VHDX note <5> allows exactly this for read-only opens).
import { open, type FileHandle } from "node:fs/promises";
import { VhdError } from "../errors.js";
import type { BlockSource } from "../io/block-source.js";
import { decodeVhdxBatEntry, isSectorBitmapIndex, payloadBatIndex, VHDX_BAT_ENTRY_SIZE, vhdxBatGeometry, VhdxPayloadState, VhdxSectorBitmapState, type VhdxBatGeometry } from "../format/vhdx-bat.js";
import { MiB } from "../format/vhdx-common.js";
import { decodeVhdxFileIdentifier } from "../format/vhdx-file-identifier.js";
import { isZeroGuid, VhdxMetadataGuid, VhdxRegionGuid, type Guid } from "../format/vhdx-guid.js";
import { decodeVhdxHeader, VHDX_HEADER_OFFSETS, VHDX_HEADER_SIZE, VHDX_LOG_VERSION, VHDX_VERSION, type VhdxHeader } from "../format/vhdx-header.js";
import type { VhdxLogWrite } from "../format/vhdx-log.js";
import {
  decodeVhdxFileParameters,
  decodeVhdxMetadataTable,
  decodeVhdxSectorSize,
  decodeVhdxVirtualDiskId,
  decodeVhdxVirtualDiskSize,
  VHDX_MAX_VIRTUAL_SIZE,
  VHDX_METADATA_TABLE_SIZE,
  type VhdxFileParameters,
  type VhdxMetadataEntry,
} from "../format/vhdx-metadata.js";
import { decodeVhdxRegionTable, VHDX_REGION_TABLE_OFFSETS, VHDX_REGION_TABLE_SIZE, type VhdxRegionEntry } from "../format/vhdx-region-table.js";
import { findActiveSequence } from "./log-replay.js";

/** The header section: file identifier, two headers, two region tables, reserved space. */
const HEADER_SECTION = MiB;
/** Bytes a file needs before anything else can be judged: identifier, headers, region tables. */
const MIN_FILE = VHDX_REGION_TABLE_OFFSETS[1] + VHDX_REGION_TABLE_SIZE;
/** A file (after log replay) larger than this cannot be a valid VHDX: 64 TiB of payload plus its BAT and metadata. */
const MAX_FILE = 2 * VHDX_MAX_VIRTUAL_SIZE;
/** BAT entries per cached slice (64 KiB), and slices kept: bounded memory whatever the disk size. */
const BAT_SLICE_ENTRIES = 8192;
const BAT_CACHE_SLICES = 64;

/** What `VhdxSource.open` learned about the file, for `inspect`/`check`. */
export interface VhdxInfo {
  creator: string;
  /** The header in force and which copy it is (0: at 64 KiB, 1: at 128 KiB). */
  header: VhdxHeader;
  headerIndex: 0 | 1;
  regions: VhdxRegionEntry[];
  metadata: VhdxMetadataEntry[];
  fileParameters: VhdxFileParameters;
  virtualSize: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
  /** The Page 83 identity, when the item is present. */
  virtualDiskId: Guid | undefined;
  geometry: VhdxBatGeometry;
  /** Payload blocks in state FULLY_PRESENT. */
  allocatedBlocks: number;
  /** Log entries replayed in memory at open (0 when the log was empty). */
  replayedLogEntries: number;
  /** Size of the file on disk. */
  fileSize: number;
}

/** The file, as seen after log replay: reads past its end give zeros, replayed writes win. */
class ReplayedFile {
  private readonly lo: number;
  private readonly hi: number;

  constructor(
    readonly handle: FileHandle,
    readonly path: string,
    readonly physicalSize: number,
    private readonly overlay: readonly VhdxLogWrite[],
  ) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const w of overlay) {
      lo = Math.min(lo, w.fileOffset);
      hi = Math.max(hi, w.fileOffset + ("data" in w ? w.data.length : w.zeroLength));
    }
    this.lo = lo;
    this.hi = hi;
  }

  /** Fills `buf` from file offset `pos` (always the whole buffer). */
  async read(buf: Uint8Array, pos: number): Promise<void> {
    const want = Math.max(0, Math.min(buf.length, this.physicalSize - pos));
    let done = 0;
    try {
      while (done < want) {
        const { bytesRead } = await this.handle.read(buf, done, want - done, pos + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (err) {
      throw new VhdError("IO", `reading ${this.path} at offset ${pos + done}: ${(err as Error).message}`, { path: this.path, offset: pos + done, cause: err });
    }
    if (done < buf.length) buf.fill(0, done);
    if (this.overlay.length === 0 || pos >= this.hi || pos + buf.length <= this.lo) return;
    // In log order, so a later entry's update of the same sector wins, as on-disk replay would.
    for (const w of this.overlay) {
      const len = "data" in w ? w.data.length : w.zeroLength;
      const s = Math.max(pos, w.fileOffset);
      const e = Math.min(pos + buf.length, w.fileOffset + len);
      if (s >= e) continue;
      if ("data" in w) buf.set(w.data.subarray(s - w.fileOffset, e - w.fileOffset), s - pos);
      else buf.fill(0, s - pos, e - pos);
    }
  }

  async readNew(length: number, pos: number): Promise<Uint8Array> {
    const b = new Uint8Array(length);
    await this.read(b, pos);
    return b;
  }
}

/** One bit per MiB of the file, to find structures that overlap (MS-VHDX 2.1: all objects are 1 MiB aligned and disjoint). */
class MiBMap {
  private readonly bits: Uint8Array;
  private readonly owners = new Map<number, string>();
  constructor(
    private readonly units: number,
    private readonly path: string,
  ) {
    this.bits = new Uint8Array(Math.ceil(units / 8));
  }

  /** Claims [offset, offset + length) for `what`; an overlap with an earlier claim is FORMAT_INVALID. */
  claim(offset: number, length: number, what: string): void {
    const first = Math.floor(offset / MiB);
    const end = Math.min(this.units, Math.ceil((offset + length) / MiB));
    for (let u = first; u < end; u++) {
      const m = 1 << (u & 7);
      if (this.bits[u >> 3]! & m) {
        const other = this.ownerOf(u);
        throw new VhdError("FORMAT_INVALID", `${this.path}: ${what} at file offset ${offset} overlaps ${other}`, { path: this.path, offset });
      }
      this.bits[u >> 3]! |= m;
    }
    // Payload blocks are many; only name the few big structures, find blocks by elimination.
    if (this.owners.size < 64) this.owners.set(first, `${what} at file offset ${offset}`);
  }

  private ownerOf(unit: number): string {
    let best: [number, string] | undefined;
    for (const [u, name] of this.owners) if (u <= unit && (!best || u > best[0])) best = [u, name];
    return best ? `${best[1]} (or a payload block after it)` : "another structure";
  }
}

/** A dynamic VHDX opened read-only as a block source. */
export class VhdxSource implements BlockSource {
  readonly size: number;
  private readonly batCache = new Map<number, Promise<Uint8Array>>();

  private constructor(
    private readonly file: ReplayedFile,
    private readonly batOffset: number,
    /** What was learned while opening. */
    readonly info: VhdxInfo,
    /** Tolerated problems, e.g. "header 1 corrupt, using header 2". */
    readonly notes: string[],
  ) {
    this.size = info.virtualSize;
  }

  /**
   * Opens and validates `path`: file identifier; both headers (the valid one with the larger
   * SequenceNumber wins, one corrupt copy is a note, two an error); log replay in memory;
   * region table; metadata; every BAT entry (state, bounds, overlaps). Differencing disks and
   * unknown required regions or metadata items are refused. Every refusal is a `VhdError`
   * (`FORMAT_INVALID`, or `IO`) naming the structure and its file offset.
   */
  static async open(path: string): Promise<VhdxSource> {
    let handle: FileHandle;
    try {
      handle = await open(path, "r");
    } catch (err) {
      throw new VhdError("IO", `cannot open ${path}: ${(err as Error).message}`, { path, cause: err });
    }
    try {
      return await VhdxSource.validate(handle, path);
    } catch (err) {
      await handle.close().catch(() => {});
      // The structure decoders know offsets but not the file: name it here, once.
      if (err instanceof VhdError && err.path === undefined) throw new VhdError(err.code, `${path}: ${err.message}`, { path, offset: err.offset, cause: err });
      throw err;
    }
  }

  private static async validate(handle: FileHandle, path: string): Promise<VhdxSource> {
    const notes: string[] = [];
    const bad = (what: string, offset?: number): never => {
      throw new VhdError("FORMAT_INVALID", `${path}: ${what}`, { path, offset });
    };
    const fileSize = (await handle.stat()).size;
    if (fileSize < MIN_FILE) bad(`file is ${fileSize} bytes, truncated before the end of the VHDX header section (${MIN_FILE} bytes needed)`, fileSize);
    const raw = new ReplayedFile(handle, path, fileSize, []);

    const { creator } = decodeVhdxFileIdentifier(await raw.readNew(520, 0));

    // Headers: MS-VHDX 2.2.2, current = valid with the greater SequenceNumber.
    const headers: (VhdxHeader | undefined)[] = [];
    const headerErrors: string[] = [];
    for (const [i, at] of VHDX_HEADER_OFFSETS.entries()) {
      try {
        headers.push(decodeVhdxHeader(await raw.readNew(VHDX_HEADER_SIZE, at), at));
      } catch (err) {
        headers.push(undefined);
        headerErrors.push(`header ${i + 1}: ${(err as Error).message}`);
      }
    }
    const [h1, h2] = headers;
    let headerIndex: 0 | 1;
    if (h1 && h2) {
      if (h1.sequenceNumber === h2.sequenceNumber) {
        // The spec leaves no current header here; identical copies are harmless, so accept those.
        const same = h1.fileWriteGuid === h2.fileWriteGuid && h1.dataWriteGuid === h2.dataWriteGuid && h1.logGuid === h2.logGuid && h1.logOffset === h2.logOffset && h1.logLength === h2.logLength && h1.version === h2.version && h1.logVersion === h2.logVersion;
        if (!same) bad(`VHDX headers at ${VHDX_HEADER_OFFSETS[0]} and ${VHDX_HEADER_OFFSETS[1]} differ but have the same SequenceNumber ${h1.sequenceNumber}`, VHDX_HEADER_OFFSETS[0]);
        headerIndex = 0;
      } else {
        headerIndex = h1.sequenceNumber > h2.sequenceNumber ? 0 : 1;
      }
    } else if (h1 || h2) {
      headerIndex = h1 ? 0 : 1;
      notes.push(`VHDX ${headerErrors[0]}; using header ${headerIndex + 1}`);
    } else {
      throw new VhdError("FORMAT_INVALID", `${path}: both VHDX headers are corrupt (${headerErrors.join("; ")})`, { path, offset: VHDX_HEADER_OFFSETS[0] });
    }
    const header = headers[headerIndex]!;
    const headerAt = VHDX_HEADER_OFFSETS[headerIndex];
    if (header.version !== VHDX_VERSION) bad(`VHDX header at ${headerAt}: Version ${header.version} is not supported (only ${VHDX_VERSION})`, headerAt);
    const hasLog = !isZeroGuid(header.logGuid) && header.logLength > 0;
    if (hasLog && header.logVersion !== VHDX_LOG_VERSION) bad(`VHDX header at ${headerAt}: LogVersion ${header.logVersion} is not supported`, headerAt);
    if (header.logOffset % MiB !== 0 || header.logLength % MiB !== 0) bad(`VHDX header at ${headerAt}: log at ${header.logOffset} length ${header.logLength} is not 1 MiB aligned`, headerAt);
    if (header.logLength > 0 && header.logOffset < HEADER_SECTION) bad(`VHDX header at ${headerAt}: log at ${header.logOffset} lies inside the header section`, headerAt);
    if (header.logLength > 0 && header.logOffset + header.logLength > fileSize) bad(`VHDX log at file offset ${header.logOffset} length ${header.logLength} lies outside the file (${fileSize} bytes)`, header.logOffset);

    // Log replay (MS-VHDX 2.3.3), into memory only.
    let overlay: VhdxLogWrite[] = [];
    let logicalSize = fileSize;
    let replayedLogEntries = 0;
    if (hasLog) {
      const log = await raw.readNew(header.logLength, header.logOffset);
      const active = findActiveSequence(log, header.logGuid);
      if (!active) bad(`VHDX log at file offset ${header.logOffset}: LogGuid ${header.logGuid} is set but the log holds no valid sequence`, header.logOffset);
      const { head } = active!;
      if (fileSize < head.flushedFileOffset) bad(`file is ${fileSize} bytes but its log says at least ${head.flushedFileOffset} were stable: truncated`, fileSize);
      overlay = active!.entries.flatMap((e) => e.writes);
      for (const w of overlay) {
        const end = w.fileOffset + ("data" in w ? w.data.length : w.zeroLength);
        // The file identifier and headers are never written through the log (2.2.1, 2.2.2).
        if (w.fileOffset < VHDX_REGION_TABLE_OFFSETS[0]) bad(`VHDX log entry writes file offset ${w.fileOffset}, inside the file identifier or headers`, header.logOffset);
        logicalSize = Math.max(logicalSize, end);
      }
      logicalSize = Math.max(logicalSize, head.lastFileOffset);
      if (logicalSize > MAX_FILE) bad(`VHDX log extends the file to ${logicalSize} bytes, beyond any valid VHDX`, header.logOffset);
      replayedLogEntries = active!.entries.length;
      notes.push(`replayed ${replayedLogEntries} VHDX log entr${replayedLogEntries === 1 ? "y" : "ies"} in memory (the file was not modified)`);
    }
    const file = new ReplayedFile(handle, path, fileSize, overlay);
    const claims = new MiBMap(Math.ceil(logicalSize / MiB), path);
    claims.claim(0, HEADER_SECTION, "VHDX header section");
    if (header.logLength > 0) claims.claim(header.logOffset, header.logLength, "VHDX log");

    // Region table: copy 1, else copy 2 (both are rewritten together through the log).
    let regions: VhdxRegionEntry[] | undefined;
    const regionErrors: string[] = [];
    for (const at of VHDX_REGION_TABLE_OFFSETS) {
      try {
        regions = decodeVhdxRegionTable(await file.readNew(VHDX_REGION_TABLE_SIZE, at), at).entries;
        break;
      } catch (err) {
        regionErrors.push((err as Error).message);
      }
    }
    if (!regions) throw new VhdError("FORMAT_INVALID", `${path}: both VHDX region tables are corrupt (${regionErrors.join("; ")})`, { path, offset: VHDX_REGION_TABLE_OFFSETS[0] });
    if (regionErrors.length > 0) notes.push(`VHDX region table 1 corrupt (${regionErrors[0]}); using region table 2`);
    const seen = new Set<string>();
    let bat: VhdxRegionEntry | undefined;
    let meta: VhdxRegionEntry | undefined;
    for (const r of regions) {
      const name = r.guid === VhdxRegionGuid.BAT ? "BAT region" : r.guid === VhdxRegionGuid.METADATA ? "metadata region" : `region ${r.guid}`;
      if (seen.has(r.guid)) bad(`VHDX region table lists ${name} twice`, VHDX_REGION_TABLE_OFFSETS[0]);
      seen.add(r.guid);
      if (r.fileOffset % MiB !== 0 || r.fileOffset < MiB || r.length % MiB !== 0) bad(`VHDX ${name} at file offset ${r.fileOffset} length ${r.length} is not 1 MiB aligned after the header section`, r.fileOffset);
      if (r.fileOffset + r.length > logicalSize) bad(`VHDX ${name} at file offset ${r.fileOffset} length ${r.length} lies outside the file (${logicalSize} bytes)`, r.fileOffset);
      claims.claim(r.fileOffset, r.length, `VHDX ${name}`);
      if (r.guid === VhdxRegionGuid.BAT) bat = r;
      else if (r.guid === VhdxRegionGuid.METADATA) meta = r;
      else if (r.required) bad(`VHDX ${name} is marked required and is not supported`, r.fileOffset);
    }
    if (!bat) bad("VHDX region table has no BAT region", VHDX_REGION_TABLE_OFFSETS[0]);
    if (!meta) bad("VHDX region table has no metadata region", VHDX_REGION_TABLE_OFFSETS[0]);
    if (meta!.length < VHDX_METADATA_TABLE_SIZE) bad(`VHDX metadata region at file offset ${meta!.fileOffset} is shorter than its table`, meta!.fileOffset);

    // Metadata (MS-VHDX 2.6).
    const metaAt = meta!.fileOffset;
    const metadata = decodeVhdxMetadataTable(await file.readNew(VHDX_METADATA_TABLE_SIZE, metaAt), metaAt);
    const items = new Map<string, Uint8Array>();
    const spans: [number, number, string][] = [];
    for (const e of metadata) {
      const key = `${e.itemId}/${e.isUser}`;
      if (items.has(key)) bad(`VHDX metadata table lists item ${e.itemId} twice`, metaAt);
      if (e.offset + e.length > meta!.length) bad(`VHDX metadata item ${e.itemId} at region offset ${e.offset} length ${e.length} lies outside the metadata region`, metaAt + e.offset);
      if (e.length > 0) spans.push([e.offset, e.offset + e.length, e.itemId]);
      items.set(key, e.length > 0 ? await file.readNew(e.length, metaAt + e.offset) : new Uint8Array(0));
      const known = (Object.values(VhdxMetadataGuid) as string[]).includes(e.itemId) && !e.isUser;
      if (!known && e.isRequired) bad(`VHDX metadata item ${e.itemId} is marked required and is not supported`, metaAt + e.offset);
    }
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i]![0] < spans[i - 1]![1]) bad(`VHDX metadata item ${spans[i]![2]} overlaps item ${spans[i - 1]![2]}`, metaAt + spans[i]![0]);
    }
    const item = (guid: string) => items.get(`${guid}/false`);
    const itemAt = (guid: string) => metaAt + (metadata.find((e) => e.itemId === guid && !e.isUser)?.offset ?? 0);
    const need = (guid: string, name: string): Uint8Array => item(guid) ?? bad(`VHDX metadata item ${name} is missing`, metaAt);
    const fileParameters = decodeVhdxFileParameters(need(VhdxMetadataGuid.FILE_PARAMETERS, "File Parameters"), itemAt(VhdxMetadataGuid.FILE_PARAMETERS));
    if (fileParameters.hasParent || item(VhdxMetadataGuid.PARENT_LOCATOR)) {
      bad(`VHDX metadata item ${fileParameters.hasParent ? "File Parameters has HasParent set" : "Parent Locator is present"}: differencing disks are not supported`, itemAt(fileParameters.hasParent ? VhdxMetadataGuid.FILE_PARAMETERS : VhdxMetadataGuid.PARENT_LOCATOR));
    }
    const virtualSize = decodeVhdxVirtualDiskSize(need(VhdxMetadataGuid.VIRTUAL_DISK_SIZE, "Virtual Disk Size"), itemAt(VhdxMetadataGuid.VIRTUAL_DISK_SIZE));
    const logicalSectorSize = decodeVhdxSectorSize(need(VhdxMetadataGuid.LOGICAL_SECTOR_SIZE, "Logical Sector Size"), "Logical", itemAt(VhdxMetadataGuid.LOGICAL_SECTOR_SIZE));
    const phys = item(VhdxMetadataGuid.PHYSICAL_SECTOR_SIZE);
    const physicalSectorSize = phys ? decodeVhdxSectorSize(phys, "Physical", itemAt(VhdxMetadataGuid.PHYSICAL_SECTOR_SIZE)) : logicalSectorSize;
    if (!phys) notes.push("VHDX metadata item Physical Sector Size is missing; assuming the logical sector size");
    const idBytes = item(VhdxMetadataGuid.VIRTUAL_DISK_ID);
    const virtualDiskId = idBytes ? decodeVhdxVirtualDiskId(idBytes, itemAt(VhdxMetadataGuid.VIRTUAL_DISK_ID)) : undefined;
    if (!idBytes) notes.push("VHDX metadata item Virtual Disk ID is missing");
    const vdsAt = itemAt(VhdxMetadataGuid.VIRTUAL_DISK_SIZE);
    if (virtualSize === 0 || virtualSize % logicalSectorSize !== 0) bad(`VHDX metadata item Virtual Disk Size: ${virtualSize} is not a positive multiple of the logical sector size ${logicalSectorSize}`, vdsAt);
    if (virtualSize > VHDX_MAX_VIRTUAL_SIZE) bad(`VHDX metadata item Virtual Disk Size: ${virtualSize} exceeds 64 TiB`, vdsAt);

    // BAT (MS-VHDX 2.5): one pass in slices to check every entry; reads later fetch slices lazily.
    const geometry = vhdxBatGeometry({ virtualSize, blockSize: fileParameters.blockSize, logicalSectorSize });
    if (geometry.totalBatEntries * VHDX_BAT_ENTRY_SIZE > bat!.length) bad(`VHDX BAT region at file offset ${bat!.fileOffset} holds ${bat!.length / VHDX_BAT_ENTRY_SIZE} entries, ${geometry.totalBatEntries} needed`, bat!.fileOffset);
    let allocatedBlocks = 0;
    const { blockSize } = geometry;
    for (let first = 0; first < geometry.totalBatEntries; first += BAT_SLICE_ENTRIES) {
      const n = Math.min(BAT_SLICE_ENTRIES, geometry.totalBatEntries - first);
      const slice = await file.readNew(n * VHDX_BAT_ENTRY_SIZE, bat!.fileOffset + first * VHDX_BAT_ENTRY_SIZE);
      for (let i = 0; i < n; i++) {
        const index = first + i;
        const e = decodeVhdxBatEntry(slice, i * VHDX_BAT_ENTRY_SIZE);
        const entryAt = bat!.fileOffset + index * VHDX_BAT_ENTRY_SIZE;
        if (isSectorBitmapIndex(geometry, index)) {
          if (e.state === VhdxSectorBitmapState.NOT_PRESENT) continue;
          bad(`VHDX BAT entry ${index} (sector bitmap block): state ${e.state} ${e.state === VhdxSectorBitmapState.PRESENT ? "belongs to differencing disks" : "is not defined"}`, entryAt);
        }
        const block = index - Math.floor(index / (geometry.chunkRatio + 1));
        switch (e.state) {
          case VhdxPayloadState.NOT_PRESENT:
          case VhdxPayloadState.UNDEFINED:
          case VhdxPayloadState.ZERO:
          case VhdxPayloadState.UNMAPPED:
            continue;
          case VhdxPayloadState.FULLY_PRESENT: {
            const at = e.fileOffsetMB * MiB;
            const needed = Math.min(blockSize, virtualSize - block * blockSize);
            if (at < HEADER_SECTION || at + needed > logicalSize) bad(`VHDX BAT entry ${index} (payload block ${block}) points to file offset ${at}, outside the file (${logicalSize} bytes)`, entryAt);
            claims.claim(at, blockSize, `VHDX payload block ${block} (BAT entry ${index})`);
            allocatedBlocks++;
            continue;
          }
          case VhdxPayloadState.PARTIALLY_PRESENT:
            bad(`VHDX BAT entry ${index} (payload block ${block}): state PARTIALLY_PRESENT belongs to differencing disks`, entryAt);
            break;
          default:
            bad(`VHDX BAT entry ${index} (payload block ${block}): state ${e.state} is reserved`, entryAt);
        }
      }
    }

    const info: VhdxInfo = {
      creator,
      header,
      headerIndex,
      regions,
      metadata,
      fileParameters,
      virtualSize,
      logicalSectorSize,
      physicalSectorSize,
      virtualDiskId,
      geometry,
      allocatedBlocks,
      replayedLogEntries,
      fileSize,
    };
    return new VhdxSource(file, bat!.fileOffset, info, notes);
  }

  /** The BAT entry of payload block `block`, through a small slice cache. */
  private async payloadEntry(block: number): Promise<{ state: number; fileOffsetMB: number }> {
    const index = payloadBatIndex(this.info.geometry, block);
    const sliceNo = Math.floor(index / BAT_SLICE_ENTRIES);
    let slice = this.batCache.get(sliceNo);
    if (slice) {
      // Refresh its place in the insertion-ordered map: least recently used goes first.
      this.batCache.delete(sliceNo);
    } else {
      const first = sliceNo * BAT_SLICE_ENTRIES;
      const n = Math.min(BAT_SLICE_ENTRIES, this.info.geometry.totalBatEntries - first);
      slice = this.file.readNew(n * VHDX_BAT_ENTRY_SIZE, this.batOffset + first * VHDX_BAT_ENTRY_SIZE);
      if (this.batCache.size >= BAT_CACHE_SLICES) this.batCache.delete(this.batCache.keys().next().value!);
    }
    this.batCache.set(sliceNo, slice);
    return decodeVhdxBatEntry(await slice, (index - sliceNo * BAT_SLICE_ENTRIES) * VHDX_BAT_ENTRY_SIZE);
  }

  async read(buffer: Uint8Array, position: number): Promise<number> {
    const want = Math.max(0, Math.min(buffer.length, this.size - position));
    const { blockSize } = this.info.geometry;
    let done = 0;
    while (done < want) {
      const pos = position + done;
      const block = Math.floor(pos / blockSize);
      const inBlock = pos - block * blockSize;
      let n = Math.min(want - done, blockSize - inBlock);
      const e = await this.payloadEntry(block);
      if (e.state !== VhdxPayloadState.FULLY_PRESENT) {
        // NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED: zeros are an allowed reading of all four.
        buffer.fill(0, done, done + n);
      } else {
        // Merge following blocks that sit right after this one in the file into one read.
        const physical = e.fileOffsetMB * MiB + inBlock;
        let next = block + 1;
        while (done + n < want) {
          const f = await this.payloadEntry(next);
          if (f.state !== VhdxPayloadState.FULLY_PRESENT || f.fileOffsetMB * MiB !== physical + n) break;
          n = Math.min(want - done, n + blockSize);
          next++;
        }
        await this.file.read(buffer.subarray(done, done + n), physical);
      }
      done += n;
    }
    return want;
  }

  async close(): Promise<void> {
    this.batCache.clear();
    await this.file.handle.close();
  }
}

/**
 * Opens a VHDX file as a read-only disk (see `VhdxSource.open`); `notes` lists tolerated
 * problems, such as one corrupt header or an in-memory log replay.
 */
export async function openVhdxSource(path: string): Promise<{ source: VhdxSource; notes: string[] }> {
  const source = await VhdxSource.open(path);
  return { source, notes: source.notes };
}
