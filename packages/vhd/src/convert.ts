import { randomBytes } from "node:crypto";
import { open, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { ConvertOptions, ConvertSummary } from "./api.js";
import { COMPRESSION_SNIFF_BYTES, decompressAuto, detectCompression } from "./compression.js";
import { VhdError } from "./errors.js";
import { chsExactSize, fixedVhdFooter, VHD_FOOTER_SIZE } from "./format/vhd-footer.js";
import { readFileChunks } from "./io/file-source.js";
import type { ImageFormat } from "./io/block-source.js";
import { FileSink, type BlockSink } from "./io/sink.js";
import { VHDX_MAX_VIRTUAL_SIZE } from "./format/vhdx-metadata.js";
import { createVhdx, type VhdxSink } from "./vhdx/writer.js";
import { open as openFile } from "node:fs/promises";
import { tarToExt4, type TarToExt4Result } from "./tar-to-ext4.js";
import { TarSplitRecorder } from "./tarsplit.js";

/** `ConvertOptions.maxDiskSize` when not provided (the ext4 writer's own default). */
const DEFAULT_MAX_DISK_SIZE = 128 * 2 ** 30;

/**
 * Converts a layer tar (plain, gzip or zstd, detected by magic) to an ext4 image at `outPath`.
 * `input` is a file path (read with large reads kept in flight) or a stream of chunks; chunks
 * must not be modified after they are yielded (Node streams never do), because large pieces
 * of file data are written straight from them. `options.format` picks the container: the ext4
 * filesystem followed by a fixed VHD footer ("vhd", the default), the bare filesystem ("raw",
 * also `vhd: false`), or a dynamic VHDX whose virtual disk is the filesystem ("vhdx"). The image
 * is written under a temporary name in the same folder, flushed, and renamed into place, so a
 * failure (bad input, disk full, a read error) leaves no output file and no temporary file behind.
 */
export async function convertTar(input: string | AsyncIterable<Uint8Array>, outPath: string, options: ConvertOptions = {}): Promise<ConvertSummary> {
  const format = imageFormat(options);
  const tmp = join(dirname(outPath), `.${basename(outPath)}.${randomBytes(6).toString("hex")}.tmp`);
  const out = format === "vhdx" ? await VhdxOut.create(tmp, outPath, options) : await FileOut.create(tmp, outPath, format === "vhd");
  const tarsplit = options.tarsplitPath ? new TarSplitRecorder(options.tarsplitPath) : undefined;
  try {
    const source = typeof input === "string" ? await openTarFile(input) : decompressAuto(input);
    const result = await tarToExt4(source, out.sink, {
      ...options,
      tarsplit,
      // Sized so that VHD readers that trust the CHS geometry (QEMU for unknown creators,
      // Virtual PC) see exactly the same disk as Hyper-V, which trusts the size field.
      roundSize: format === "vhd" ? (bytes) => chsExactSize(bytes) : undefined,
    });
    const imageBytes = await out.finish(result, options.fsync ?? false);
    // The record first: an image in place always has its record.
    await tarsplit?.finish();
    await rename(tmp, outPath);
    return { format, entries: result.entries, bytesIn: result.bytesIn, ext4Bytes: result.ext4Bytes, imageBytes };
  } catch (err) {
    await tarsplit?.abort();
    await out.abandon();
    await rm(tmp, { force: true }).catch(() => {});
    if (err instanceof Error && "code" in err && typeof err.code === "string" && !(err instanceof VhdError) && /^E[A-Z]+$/.test(err.code)) {
      throw new VhdError("IO", `converting to ${outPath}: ${err.message}`, { path: outPath, cause: err });
    }
    throw err;
  }
}

/** The container `options` ask for; `format` wins over the older `vhd` flag when both are given. */
function imageFormat(options: ConvertOptions): ImageFormat {
  const format = options.format ?? (options.vhd === false ? "raw" : "vhd");
  if (format !== "vhd" && format !== "raw" && format !== "vhdx") throw new VhdError("INVALID_ARGUMENT", `unknown image format ${JSON.stringify(format)} (expected "vhd", "raw" or "vhdx")`);
  return format;
}

/** The temporary output of one conversion: where the ext4 writer writes, and how it is finished. */
interface ConvertOut {
  sink: BlockSink;
  /** Completes and closes the file; returns its size. */
  finish(result: TarToExt4Result, fsync: boolean): Promise<number>;
  /** Closes the file after a failure (the caller deletes it). */
  abandon(): Promise<void>;
}

/** A raw ext4 image, with or without the fixed VHD footer. */
class FileOut implements ConvertOut {
  private constructor(
    private handle: FileHandle | undefined,
    readonly sink: FileSink,
    private readonly outPath: string,
    private readonly vhd: boolean,
  ) {}

  static async create(tmp: string, outPath: string, vhd: boolean): Promise<FileOut> {
    try {
      const handle = await open(tmp, "wx");
      return new FileOut(handle, new FileSink(handle, outPath), outPath, vhd);
    } catch (err) {
      throw new VhdError("IO", `cannot create ${outPath}: ${(err as Error).message}`, { path: outPath, cause: err });
    }
  }

  async finish(result: TarToExt4Result, fsync: boolean): Promise<number> {
    const handle = this.handle!;
    let imageBytes = result.ext4Bytes;
    if (this.vhd) {
      const footer = fixedVhdFooter(result.ext4Bytes, { unixTime: result.timestamp, uniqueId: result.uuid });
      await this.sink.write(footer, result.ext4Bytes);
      imageBytes += VHD_FOOTER_SIZE;
    }
    // Free blocks at the end were never written: extend the file over them as a hole.
    await handle.truncate(imageBytes);
    if (fsync) await handle.sync();
    this.handle = undefined;
    await handle.close();
    return imageBytes;
  }

  async abandon(): Promise<void> {
    await this.handle?.close().catch(() => {});
    this.handle = undefined;
  }
}

/**
 * A dynamic VHDX. The ext4 size is known only when the writer closes, so the disk is created at
 * the largest size the image may reach (`maxDiskSize`), then shrunk to the filesystem's size;
 * its GUIDs are derived from the filesystem UUID, which makes the file as deterministic as the
 * ext4 image inside it.
 */
class VhdxOut implements ConvertOut {
  private done = false;

  private constructor(readonly sink: VhdxSink) {}

  static async create(tmp: string, outPath: string, options: ConvertOptions): Promise<VhdxOut> {
    // The ext4 writer never exceeds maxDiskSize; a larger virtual disk would only reserve BAT space.
    const max = Math.min(VHDX_MAX_VIRTUAL_SIZE, Math.ceil((options.maxDiskSize ?? DEFAULT_MAX_DISK_SIZE) / 4096) * 4096);
    try {
      return new VhdxOut(await createVhdx(tmp, { virtualSize: max, fsync: options.fsync ?? false }));
    } catch (err) {
      throw err instanceof VhdError && err.code === "IO" ? new VhdError("IO", `cannot create ${outPath}: ${(err.cause as Error | undefined)?.message ?? err.message}`, { path: outPath, cause: err }) : err;
    }
  }

  async finish(result: TarToExt4Result): Promise<number> {
    await this.sink.setVirtualSize(result.ext4Bytes);
    await this.sink.setIdentity(result.uuid);
    this.done = true;
    await this.sink.close();
    return (await stat(this.sink.path)).size;
  }

  async abandon(): Promise<void> {
    if (!this.done) await this.sink.close().catch(() => {});
  }
}

/**
 * A tar file as chunks. A plain tar is read into recycled buffers (the converter copies what it
 * keeps, so no buffer is held past the recycling window); a compressed one goes through the
 * decompressor with fresh buffers, since the decoder may hold its input longer.
 */
async function openTarFile(path: string): Promise<AsyncIterable<Uint8Array>> {
  const head = new Uint8Array(COMPRESSION_SNIFF_BYTES);
  let fh;
  try {
    fh = await openFile(path, "r");
    await fh.read(head, 0, head.length, 0);
  } catch (err) {
    throw new VhdError("IO", `cannot read ${path}: ${(err as Error).message}`, { path, cause: err });
  } finally {
    await fh?.close();
  }
  return detectCompression(head) === "none" ? readFileChunks(path, { recycle: true }) : decompressAuto(readFileChunks(path));
}
