// Read side of the block-device abstraction: the bytes of a virtual disk, whatever container
// holds them (a raw image, a fixed VHD, a VHDX). The ext4 reader and checker sit on this.
import { readSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { VhdError } from "../errors.js";
import { decodeVhdFooter, VHD_FOOTER_SIZE, VhdDiskType, type VhdFooter } from "../format/vhd-footer.js";

/** Random-access, read-only bytes of a disk. */
export interface BlockSource {
  /** Size of the disk in bytes. */
  readonly size: number;
  /**
   * Fills `buffer` from disk offset `position`; returns the bytes read, fewer only past the end
   * of the disk. Unallocated regions (holes, unallocated VHDX blocks) read as zeros.
   */
  read(buffer: Uint8Array, position: number): Promise<number>;
  /**
   * `read`, synchronously, for sources where that is cheaper than a trip through the thread
   * pool (a file, whose small reads are served from the page cache in about a microsecond).
   * Optional: walkers use it when present and fall back to `read` otherwise.
   */
  readSync?(buffer: Uint8Array, position: number): number;
  /** Releases the underlying file; further reads fail. */
  close(): Promise<void>;
}

/** Reads up to this size are done synchronously (see `FileBlockSource.read`). */
const SYNC_READ_MAX = 256 << 10;

/** A window of a file as a disk: `size` bytes from `offset`. */
export class FileBlockSource implements BlockSource {
  private constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
    private readonly offset: number,
    readonly size: number,
  ) {}

  /** Opens `path`; without `size`, the disk runs to the end of the file. */
  static async open(path: string, window: { offset?: number; size?: number } = {}): Promise<FileBlockSource> {
    let handle: FileHandle;
    try {
      handle = await open(path, "r");
    } catch (err) {
      throw new VhdError("IO", `cannot open ${path}: ${(err as Error).message}`, { path, cause: err });
    }
    const offset = window.offset ?? 0;
    const size = window.size ?? (await handle.stat()).size - offset;
    return new FileBlockSource(handle, path, offset, size);
  }

  async read(buffer: Uint8Array, position: number): Promise<number> {
    // Small reads are synchronous: from the page cache one costs about a microsecond, while an
    // asynchronous read costs ~10 us of main-thread time in promise and thread-pool overhead,
    // which dominated walking a filesystem of small files. Large reads stay asynchronous.
    if (buffer.length <= SYNC_READ_MAX) return this.readSync(buffer, position);
    const want = Math.max(0, Math.min(buffer.length, this.size - position));
    let done = 0;
    try {
      while (done < want) {
        const { bytesRead } = await this.handle.read(buffer, done, want - done, this.offset + position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (err) {
      throw this.readError(err, position + done);
    }
    return this.finish(buffer, done, want);
  }

  readSync(buffer: Uint8Array, position: number): number {
    const want = Math.max(0, Math.min(buffer.length, this.size - position));
    let done = 0;
    try {
      while (done < want) {
        const bytesRead = readSync(this.handle.fd, buffer, done, want - done, this.offset + position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (err) {
      throw this.readError(err, position + done);
    }
    return this.finish(buffer, done, want);
  }

  private readError(err: unknown, position: number): VhdError {
    return new VhdError("IO", `reading ${this.path} at offset ${this.offset + position}: ${(err as Error).message}`, { path: this.path, offset: position, cause: err });
  }

  /** A file shorter than its declared disk (a truncated image) reads as zeros past its end; the ext4 layer reports what that breaks, naming the structure. */
  private finish(buffer: Uint8Array, done: number, want: number): number {
    if (done < want) buffer.fill(0, done, want);
    return want;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/** The container formats lcow reads. */
export type ImageFormat = "raw" | "vhd" | "vhdx";

export interface OpenedImage {
  format: ImageFormat;
  source: BlockSource;
  /** Size of the file holding the image. */
  fileSize: number;
  /** The VHD footer, for `vhd`. */
  footer?: VhdFooter;
  /** Problems noticed while opening that did not prevent it (e.g. one corrupt VHDX header). */
  notes: string[];
}

/**
 * Opens a disk image and identifies its container: a VHDX by its file identifier, a fixed VHD
 * by a valid footer in its last 512 bytes, otherwise a raw disk. A footer that has the cookie
 * but a bad checksum, or a VHD type other than fixed, is a FORMAT_INVALID error.
 */
export async function openImage(path: string): Promise<OpenedImage> {
  const whole = await FileBlockSource.open(path);
  const fileSize = whole.size;
  try {
    const head = new Uint8Array(8);
    await whole.read(head, 0);
    if (Buffer.from(head).toString("latin1") === "vhdxfile") {
      await whole.close();
      const { openVhdxSource } = await import("../vhdx/index.js");
      const { source, notes } = await openVhdxSource(path);
      return { format: "vhdx", source, fileSize, notes };
    }
    if (fileSize >= VHD_FOOTER_SIZE) {
      const tail = new Uint8Array(VHD_FOOTER_SIZE);
      await whole.read(tail, fileSize - VHD_FOOTER_SIZE);
      if (Buffer.from(tail.subarray(0, 8)).toString("latin1") === "conectix") {
        const footer = decodeVhdFooter(tail);
        if (footer.diskType !== VhdDiskType.FIXED) {
          throw new VhdError("FORMAT_INVALID", `${path}: VHD disk type ${footer.diskType} (only fixed VHDs, type 2, are supported)`, { path });
        }
        if (footer.currentSize > fileSize - VHD_FOOTER_SIZE) {
          throw new VhdError("FORMAT_INVALID", `${path}: VHD footer says ${footer.currentSize} bytes but the file holds ${fileSize - VHD_FOOTER_SIZE}`, { path, offset: fileSize - VHD_FOOTER_SIZE });
        }
        await whole.close();
        const source = await FileBlockSource.open(path, { offset: 0, size: footer.currentSize });
        return { format: "vhd", source, fileSize, footer, notes: [] };
      }
    }
    return { format: "raw", source: whole, fileSize, notes: [] };
  } catch (err) {
    await whole.close().catch(() => {});
    throw err;
  }
}
