// Write side of VHDX: creates a dynamic VHDX and takes the virtual disk's bytes as a
// BlockSink. Payload blocks are allocated on first non-zero write, appended at the end of the
// file in allocation order; the BAT lives in memory and is written by `close()`.
import { open, type FileHandle } from "node:fs/promises";
import { InvariantError, VhdError } from "../errors.js";
import { FileSink, type BlockSink } from "../io/sink.js";
import { encodeVhdxBatEntry, payloadBatIndex, VHDX_BAT_ENTRY_SIZE, vhdxBatGeometry, vhdxBatRegionLength, VhdxPayloadState, type VhdxBatGeometry } from "../format/vhdx-bat.js";
import { MiB } from "../format/vhdx-common.js";
import { encodeVhdxFileIdentifier } from "../format/vhdx-file-identifier.js";
import { derivedGuid, randomGuid, VhdxMetadataGuid, VhdxRegionGuid, ZERO_GUID, type Guid } from "../format/vhdx-guid.js";
import { encodeVhdxHeader, VHDX_HEADER_OFFSETS, VHDX_LOG_VERSION, VHDX_VERSION } from "../format/vhdx-header.js";
import {
  encodeVhdxFileParameters,
  encodeVhdxMetadataTable,
  encodeVhdxSectorSize,
  encodeVhdxVirtualDiskId,
  encodeVhdxVirtualDiskSize,
  VHDX_MAX_BLOCK_SIZE,
  VHDX_MAX_VIRTUAL_SIZE,
  VHDX_METADATA_TABLE_SIZE,
  VHDX_MIN_BLOCK_SIZE,
  type VhdxMetadataEntry,
} from "../format/vhdx-metadata.js";
import { encodeVhdxRegionTable, VHDX_REGION_TABLE_OFFSETS, VHDX_REGION_TABLE_SIZE } from "../format/vhdx-region-table.js";

/** Options of `createVhdx`. */
export interface CreateVhdxOptions {
  /** Virtual disk size in bytes: a positive multiple of `logicalSectorSize`, at most 64 TiB. Required. */
  virtualSize: number;
  /** Payload block size: a power of two from 1 MiB to 256 MiB. If not provided, 1 MiB (what Docker's LCOW sandboxes used). */
  blockSize?: number;
  /** 512 or 4096. If not provided, 512. */
  logicalSectorSize?: 512 | 4096;
  /** 512 or 4096. If not provided, 4096. */
  physicalSectorSize?: 512 | 4096;
  /**
   * Seed for the FileWriteGuid, DataWriteGuid and Virtual Disk ID (each derived with SHA-256
   * from the seed and its own label). With a seed, the same writes give a byte-identical file.
   * If not provided, the three GUIDs are random.
   */
  seed?: string | Uint8Array;
  /** The Virtual Disk ID (Page 83 identity) to use instead of a derived or random one. */
  virtualDiskId?: Guid;
  /**
   * BAT state of blocks never written with non-zero data: "not-present" (what Hyper-V writes
   * for a new dynamic disk) or "zero" (what `qemu-img create` writes; readers MUST return zeros).
   * If not provided, "not-present".
   */
  unallocatedState?: "not-present" | "zero";
  /** Creator string in the file type identifier. If not provided, "lcow". */
  creator?: string;
  /** fsync the file in `close()`. If not provided, false (as cp and tar). */
  fsync?: boolean;
}

/** File layout we write: header section, log, metadata, BAT, then payload blocks. */
const LOG_OFFSET = 1 * MiB;
const LOG_LENGTH = 1 * MiB;
const METADATA_OFFSET = 2 * MiB;
const METADATA_LENGTH = 1 * MiB;
const BAT_OFFSET = 3 * MiB;
/** Span of the zero-check buffer. */
const ZEROS = new Uint8Array(64 * 1024);

function isAllZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i += ZEROS.length) {
    const n = Math.min(ZEROS.length, b.length - i);
    if (Buffer.compare(Buffer.from(b.buffer, b.byteOffset + i, n), Buffer.from(ZEROS.buffer, 0, n)) !== 0) return false;
  }
  return true;
}

/**
 * A dynamic VHDX being written. `write` may be called concurrently at disjoint positions;
 * blocks are allocated synchronously in call order, so the same sequence of calls always gives
 * the same file. The first I/O failure is sticky: every later call rejects with it.
 */
export class VhdxSink implements BlockSink {
  /** Virtual disk size in bytes (changed only by `setVirtualSize`). */
  get virtualSize(): number {
    return this.geometry.virtualSize;
  }
  /** BAT geometry of the current virtual size. */
  get geometry(): VhdxBatGeometry {
    return this.currentGeometry;
  }
  private currentGeometry: VhdxBatGeometry;
  private readonly initialSize: number;
  /** What the metadata region was made from, so `setVirtualSize` can rewrite it. */
  private metadata!: { blockSize: number; logicalSectorSize: number; physicalSectorSize: number; virtualDiskId: Guid };
  /** payload block -> FileOffsetMB, allocated blocks only: memory follows the data written, not the disk size. */
  private readonly allocated = new Map<number, number>();
  private readonly sink: FileSink;
  private readonly inflight = new Set<Promise<void>>();
  private fileEnd: number;
  private error: unknown;
  private closed = false;

  private constructor(
    private readonly handle: FileHandle,
    readonly path: string,
    private readonly batLength: number,
    private readonly unallocatedState: number,
    private readonly fsync: boolean,
    geometry: VhdxBatGeometry,
  ) {
    this.currentGeometry = geometry;
    this.initialSize = geometry.virtualSize;
    this.sink = new FileSink(handle, path);
    this.fileEnd = BAT_OFFSET + batLength;
  }

  /** @internal Use `createVhdx`. */
  static async create(path: string, options: CreateVhdxOptions): Promise<VhdxSink> {
    const blockSize = options.blockSize ?? MiB;
    const logicalSectorSize = options.logicalSectorSize ?? 512;
    const physicalSectorSize = options.physicalSectorSize ?? 4096;
    const { virtualSize } = options;
    const invalid = (why: string): never => {
      throw new VhdError("INVALID_ARGUMENT", `createVhdx ${path}: ${why}`, { path });
    };
    if (blockSize < VHDX_MIN_BLOCK_SIZE || blockSize > VHDX_MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) invalid(`blockSize ${blockSize} is not a power of two from 1 MiB to 256 MiB`);
    if (logicalSectorSize !== 512 && logicalSectorSize !== 4096) invalid(`logicalSectorSize ${String(logicalSectorSize)} (must be 512 or 4096)`);
    if (physicalSectorSize !== 512 && physicalSectorSize !== 4096) invalid(`physicalSectorSize ${String(physicalSectorSize)} (must be 512 or 4096)`);
    if (!Number.isSafeInteger(virtualSize) || virtualSize <= 0 || virtualSize % logicalSectorSize !== 0) invalid(`virtualSize ${virtualSize} is not a positive multiple of ${logicalSectorSize}`);
    if (virtualSize > VHDX_MAX_VIRTUAL_SIZE) invalid(`virtualSize ${virtualSize} exceeds 64 TiB`);
    const guid = (label: string) => (options.seed === undefined ? randomGuid() : derivedGuid(options.seed, label));
    const fileWriteGuid = guid("FileWriteGuid");
    const dataWriteGuid = guid("DataWriteGuid");
    const virtualDiskId = options.virtualDiskId ?? guid("VirtualDiskId");
    const geometry = vhdxBatGeometry({ virtualSize, blockSize, logicalSectorSize });
    const batLength = vhdxBatRegionLength(geometry);
    const unallocatedState = options.unallocatedState === "zero" ? VhdxPayloadState.ZERO : VhdxPayloadState.NOT_PRESENT;

    let handle: FileHandle;
    try {
      handle = await open(path, "w");
    } catch (err) {
      throw new VhdError("IO", `cannot create ${path}: ${(err as Error).message}`, { path, cause: err });
    }
    const sink = new VhdxSink(handle, path, batLength, unallocatedState, options.fsync ?? false, geometry);
    sink.metadata = { blockSize, logicalSectorSize, physicalSectorSize, virtualDiskId };
    try {
      // Everything but the BAT's allocated entries is final from here on, so the file is a
      // valid empty disk even if `close()` is never reached.
      const head = new Uint8Array(VHDX_REGION_TABLE_OFFSETS[1] + VHDX_REGION_TABLE_SIZE);
      head.set(encodeVhdxFileIdentifier({ creator: options.creator ?? "lcow" }), 0);
      // Both copies current-looking, the second newer, as after the spec's two-step update (2.2.2.1).
      VHDX_HEADER_OFFSETS.forEach((at, i) => head.set(encodeHeader(i, fileWriteGuid, dataWriteGuid), at));
      const regions = encodeVhdxRegionTable({
        entries: [
          { guid: VhdxRegionGuid.BAT, fileOffset: BAT_OFFSET, length: batLength, required: true },
          { guid: VhdxRegionGuid.METADATA, fileOffset: METADATA_OFFSET, length: METADATA_LENGTH, required: true },
        ],
      });
      for (const at of VHDX_REGION_TABLE_OFFSETS) head.set(regions, at);
      await sink.sink.write(head, 0);
      await sink.sink.write(metadataRegion({ ...sink.metadata, virtualSize }), METADATA_OFFSET);
      if (unallocatedState !== 0) {
        for (let first = 0; first < geometry.totalBatEntries; first += MiB / VHDX_BAT_ENTRY_SIZE) await sink.writeBatSlice(first);
      }
      await handle.truncate(sink.fileEnd);
    } catch (err) {
      await handle.close().catch(() => {});
      throw err instanceof VhdError ? err : new VhdError("IO", `creating ${path}: ${(err as Error).message}`, { path, cause: err });
    }
    return sink;
  }

  /** Payload blocks allocated so far. */
  get allocatedBlocks(): number {
    return this.allocated.size;
  }

  /**
   * Writes `data` at virtual disk offset `position`. Unallocated blocks get a fresh block at
   * the end of the file unless the bytes meant for them are all zeros (they read as zeros
   * already, which keeps a 20 GB sandbox small). A write past the virtual size is
   * INVALID_ARGUMENT; a write after `close()` is an InvariantError.
   */
  write(data: Uint8Array, position: number): Promise<void> {
    if (this.closed) throw new InvariantError(`VhdxSink ${this.path}: write after close`);
    if (this.error !== undefined) return Promise.reject(this.error);
    if (!Number.isSafeInteger(position) || position < 0 || position + data.length > this.virtualSize) {
      return Promise.reject(new VhdError("INVALID_ARGUMENT", `${this.path}: write of ${data.length} bytes at ${position} is outside the ${this.virtualSize}-byte disk`, { path: this.path, offset: position }));
    }
    const { blockSize } = this.geometry;
    const ops: Promise<void>[] = [];
    // A run of bytes that land back to back in the file; fresh blocks allocated by one sequential
    // write are adjacent, so a large batch becomes one file write.
    let run: { physical: number; start: number; end: number } | undefined;
    const flush = () => {
      if (run) ops.push(this.sink.write(data.subarray(run.start, run.end), run.physical));
      run = undefined;
    };
    for (let done = 0; done < data.length; ) {
      const pos = position + done;
      const block = Math.floor(pos / blockSize);
      const inBlock = pos - block * blockSize;
      const n = Math.min(data.length - done, blockSize - inBlock);
      let mb = this.allocated.get(block);
      if (mb === undefined) {
        if (isAllZero(data.subarray(done, done + n))) {
          flush();
          done += n;
          continue;
        }
        mb = this.fileEnd / MiB;
        this.fileEnd += blockSize;
        this.allocated.set(block, mb);
      }
      const physical = mb * MiB + inBlock;
      if (run && run.physical + (run.end - run.start) === physical) run.end += n;
      else {
        flush();
        run = { physical, start: done, end: done + n };
      }
      done += n;
    }
    flush();
    const p = Promise.all(ops).then(
      () => {},
      (err: unknown) => {
        this.error ??= err;
        throw this.error;
      },
    );
    this.inflight.add(p);
    void p.catch(() => {}).finally(() => this.inflight.delete(p));
    return p;
  }

  /**
   * Shrinks the virtual disk to `size` bytes before `close()`, for writers that learn the disk's
   * size only at the end (the ext4 converter writes into a disk sized for the largest image it
   * may make). `size` must be a positive multiple of the logical sector size, at most the size
   * given at creation, and cover every block written so far (INVALID_ARGUMENT otherwise).
   * The metadata region is rewritten at once; the BAT region keeps the length reserved at
   * creation (MS-VHDX 2.2.3 only requires it to be large enough), and its entries past the new
   * size are cleared to NOT_PRESENT. Waits for pending writes; rejects with the sticky error.
   */
  async setVirtualSize(size: number): Promise<void> {
    if (this.closed) throw new InvariantError(`VhdxSink ${this.path}: setVirtualSize after close`);
    await Promise.allSettled([...this.inflight]);
    if (this.error !== undefined) throw this.error;
    const { logicalSectorSize } = this.metadata;
    const invalid = (why: string): never => {
      throw new VhdError("INVALID_ARGUMENT", `${this.path}: virtual size ${size} ${why}`, { path: this.path });
    };
    if (!Number.isSafeInteger(size) || size <= 0 || size % logicalSectorSize !== 0) invalid(`is not a positive multiple of ${logicalSectorSize}`);
    if (size > this.initialSize) invalid(`exceeds the ${this.initialSize} bytes the file was created for`);
    const geometry = vhdxBatGeometry({ virtualSize: size, blockSize: this.geometry.blockSize, logicalSectorSize });
    for (const block of this.allocated.keys()) {
      if (block >= geometry.dataBlocksCount) invalid(`would drop payload block ${block}, which holds data`);
    }
    const oldEntries = this.geometry.totalBatEntries;
    this.currentGeometry = geometry;
    try {
      await this.sink.write(metadataRegion({ ...this.metadata, virtualSize: size }), METADATA_OFFSET);
      // Entries past the new disk are outside the BAT a reader walks; clear them anyway so the
      // file holds no stale ZERO states (only written when unallocatedState is "zero").
      if (this.unallocatedState !== 0 && oldEntries > geometry.totalBatEntries) {
        const zeros = new Uint8Array(MiB);
        for (let at = geometry.totalBatEntries * VHDX_BAT_ENTRY_SIZE, end = oldEntries * VHDX_BAT_ENTRY_SIZE; at < end; at += zeros.length) {
          await this.sink.write(zeros.subarray(0, Math.min(zeros.length, end - at)), BAT_OFFSET + at);
        }
      }
    } catch (err) {
      this.error ??= err;
      throw this.error;
    }
  }

  /**
   * Replaces the FileWriteGuid, DataWriteGuid and Virtual Disk ID with ones derived from `seed`
   * (as `CreateVhdxOptions.seed` does), for writers that learn their identity only at the end
   * (the converter derives it from the input). Rewrites both headers and the metadata region.
   */
  async setIdentity(seed: string | Uint8Array): Promise<void> {
    if (this.closed) throw new InvariantError(`VhdxSink ${this.path}: setIdentity after close`);
    if (this.error !== undefined) throw this.error;
    this.metadata = { ...this.metadata, virtualDiskId: derivedGuid(seed, "VirtualDiskId") };
    try {
      for (const [i, at] of VHDX_HEADER_OFFSETS.entries()) await this.sink.write(encodeHeader(i, derivedGuid(seed, "FileWriteGuid"), derivedGuid(seed, "DataWriteGuid")), at);
      await this.sink.write(metadataRegion({ ...this.metadata, virtualSize: this.virtualSize }), METADATA_OFFSET);
    } catch (err) {
      this.error ??= err;
      throw this.error;
    }
  }

  /** Encodes and writes the 1 MiB of BAT holding entry `first` onwards. */
  private async writeBatSlice(first: number): Promise<void> {
    const perSlice = MiB / VHDX_BAT_ENTRY_SIZE;
    const n = Math.min(perSlice, this.geometry.totalBatEntries - first);
    const out = new Uint8Array(n * VHDX_BAT_ENTRY_SIZE);
    for (let i = 0; i < n; i++) {
      const index = first + i;
      // Sector bitmap entries stay NOT_PRESENT (0): a dynamic disk must not have them (2.5.1.2).
      if ((index + 1) % (this.geometry.chunkRatio + 1) === 0) continue;
      const block = index - Math.floor(index / (this.geometry.chunkRatio + 1));
      const mb = this.allocated.get(block);
      encodeVhdxBatEntry(mb === undefined ? { state: this.unallocatedState, fileOffsetMB: 0 } : { state: VhdxPayloadState.FULLY_PRESENT, fileOffsetMB: mb }, out, i * VHDX_BAT_ENTRY_SIZE);
    }
    await this.sink.write(out, BAT_OFFSET + first * VHDX_BAT_ENTRY_SIZE);
  }

  /**
   * Waits for pending writes, writes the BAT slices that changed, sizes the file to its last
   * block (unwritten parts of blocks stay holes), optionally fsyncs, and closes the file.
   * Rejects with the sticky error if a write failed (the file is then closed but incomplete).
   * A second call does nothing.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await Promise.allSettled([...this.inflight]);
      if (this.error !== undefined) throw this.error;
      const perSlice = MiB / VHDX_BAT_ENTRY_SIZE;
      const slices = new Set<number>();
      for (const block of this.allocated.keys()) slices.add(Math.floor(payloadBatIndex(this.geometry, block) / perSlice));
      for (const s of [...slices].sort((a, b) => a - b)) await this.writeBatSlice(s * perSlice);
      try {
        await this.handle.truncate(this.fileEnd);
        if (this.fsync) await this.handle.sync();
      } catch (err) {
        throw new VhdError("IO", `finishing ${this.path}: ${(err as Error).message}`, { path: this.path, cause: err });
      }
    } finally {
      await this.handle.close().catch(() => {});
    }
  }
}

/** Header copy `i` (0 or 1) as we write them: both current-looking, the second newer, no log. */
function encodeHeader(i: number, fileWriteGuid: Guid, dataWriteGuid: Guid): Uint8Array {
  return encodeVhdxHeader({ sequenceNumber: BigInt(i + 1), fileWriteGuid, dataWriteGuid, logGuid: ZERO_GUID, logVersion: VHDX_LOG_VERSION, version: VHDX_VERSION, logLength: LOG_LENGTH, logOffset: LOG_OFFSET });
}

/** The metadata region's used part: table, then the five system items packed from 64 KiB. */
function metadataRegion(p: { blockSize: number; virtualSize: number; logicalSectorSize: number; physicalSectorSize: number; virtualDiskId: Guid }): Uint8Array {
  const items: [string, Uint8Array, { isVirtualDisk: boolean }][] = [
    [VhdxMetadataGuid.FILE_PARAMETERS, encodeVhdxFileParameters({ blockSize: p.blockSize, leaveBlocksAllocated: false, hasParent: false }), { isVirtualDisk: false }],
    [VhdxMetadataGuid.VIRTUAL_DISK_SIZE, encodeVhdxVirtualDiskSize(p.virtualSize), { isVirtualDisk: true }],
    [VhdxMetadataGuid.VIRTUAL_DISK_ID, encodeVhdxVirtualDiskId(p.virtualDiskId), { isVirtualDisk: true }],
    [VhdxMetadataGuid.LOGICAL_SECTOR_SIZE, encodeVhdxSectorSize(p.logicalSectorSize), { isVirtualDisk: true }],
    [VhdxMetadataGuid.PHYSICAL_SECTOR_SIZE, encodeVhdxSectorSize(p.physicalSectorSize), { isVirtualDisk: true }],
  ];
  const entries: VhdxMetadataEntry[] = [];
  let at = VHDX_METADATA_TABLE_SIZE;
  for (const [itemId, bytes, flags] of items) {
    entries.push({ itemId, offset: at, length: bytes.length, isUser: false, isVirtualDisk: flags.isVirtualDisk, isRequired: true });
    at += bytes.length;
  }
  const out = new Uint8Array(at);
  out.set(encodeVhdxMetadataTable(entries), 0);
  for (const [i, [, bytes]] of items.entries()) out.set(bytes, entries[i]!.offset);
  return out;
}

/**
 * Creates (or truncates) `path` as an empty dynamic VHDX of `options.virtualSize` bytes and
 * returns a sink for its virtual disk. Call `close()` to write the BAT; until then the file
 * reads as an empty disk. Bad options are INVALID_ARGUMENT; OS failures IO.
 */
export function createVhdx(path: string, options: CreateVhdxOptions): Promise<VhdxSink> {
  return VhdxSink.create(path, options);
}
