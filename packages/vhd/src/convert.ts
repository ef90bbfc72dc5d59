import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { ConvertOptions, ConvertSummary } from "./api.js";
import { COMPRESSION_SNIFF_BYTES, decompressAuto, detectCompression } from "./compression.js";
import { VhdError } from "./errors.js";
import { chsExactSize, fixedVhdFooter, VHD_FOOTER_SIZE } from "./format/vhd-footer.js";
import { readFileChunks } from "./io/file-source.js";
import { FileSink } from "./io/sink.js";
import { open as openFile } from "node:fs/promises";
import { tarToExt4 } from "./tar-to-ext4.js";

/**
 * Converts a layer tar (plain, gzip or zstd, detected by magic) to an ext4 image at `outPath`.
 * `input` is a file path (read with large reads kept in flight) or a stream of chunks; chunks
 * must not be modified after they are yielded (Node streams never do), because large pieces
 * of file data are written straight from them. The image is an ext4 filesystem
 * followed by a fixed VHD footer unless `options.vhd === false`. The image is written under a
 * temporary name in the same folder, flushed, and renamed into place, so a failure (bad input,
 * disk full, a read error) leaves no output file and no temporary file behind.
 */
export async function convertTar(input: string | AsyncIterable<Uint8Array>, outPath: string, options: ConvertOptions = {}): Promise<ConvertSummary> {
  const vhd = options.vhd ?? true;
  const tmp = join(dirname(outPath), `.${basename(outPath)}.${randomBytes(6).toString("hex")}.tmp`);
  let handle;
  try {
    handle = await open(tmp, "wx");
  } catch (err) {
    throw new VhdError("IO", `cannot create ${outPath}: ${(err as Error).message}`, { path: outPath, cause: err });
  }
  try {
    const source = typeof input === "string" ? await openTarFile(input) : decompressAuto(input);
    const result = await tarToExt4(source, new FileSink(handle, outPath), {
      ...options,
      // Sized so that VHD readers that trust the CHS geometry (QEMU for unknown creators,
      // Virtual PC) see exactly the same disk as Hyper-V, which trusts the size field.
      roundSize: vhd ? (bytes) => chsExactSize(bytes) : undefined,
    });
    let imageBytes = result.ext4Bytes;
    if (vhd) {
      const footer = fixedVhdFooter(result.ext4Bytes, { unixTime: result.timestamp, uniqueId: result.uuid });
      await new FileSink(handle, outPath).write(footer, result.ext4Bytes);
      imageBytes += VHD_FOOTER_SIZE;
    }
    // Free blocks at the end were never written: extend the file over them as a hole.
    await handle.truncate(imageBytes);
    if (options.fsync) await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, outPath);
    return { entries: result.entries, bytesIn: result.bytesIn, ext4Bytes: result.ext4Bytes, imageBytes };
  } catch (err) {
    await handle?.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    if (err instanceof Error && "code" in err && typeof err.code === "string" && !(err instanceof VhdError) && /^E[A-Z]+$/.test(err.code)) {
      throw new VhdError("IO", `converting to ${outPath}: ${err.message}`, { path: outPath, cause: err });
    }
    throw err;
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
