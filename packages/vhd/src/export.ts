import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { VhdError } from "./errors.js";
import { ext4ToTar, type ExportOptions, type ExportSummary } from "./ext4-to-tar.js";
import { openImage } from "./io/block-source.js";

export interface ExportImageOptions extends ExportOptions {
  /** Compress the tar with gzip. If not provided, false. */
  gzip?: boolean;
}

/**
 * Exports the ext4 filesystem in an image (raw, fixed VHD or VHDX, detected) as a tar, to a
 * file (written under a temporary name and renamed into place) or to a stream such as stdout.
 * A path naming something other than a regular file (`/dev/null`, a FIFO) is written to as it
 * is: renaming a file over it would replace the device.
 */
export async function exportImage(imagePath: string, output: string | Writable, options: ExportImageOptions = {}): Promise<ExportSummary> {
  const special = typeof output === "string" && (await isSpecialFile(output));
  const image = await openImage(imagePath);
  const summary: ExportSummary = { entries: {}, bytesOut: 0 };
  const tmp = typeof output === "string" && !special ? join(dirname(output), `.${basename(output)}.${randomBytes(6).toString("hex")}.tmp`) : undefined;
  try {
    if (tmp && !options.gzip) {
      // A plain file: write each chunk while the next is produced, in recycled buffers.
      await writeChunks(ext4ToTar(image.source, { ...options, recycle: true }, summary), tmp);
      await rename(tmp, output as string);
      return summary;
    }
    const tar = Readable.from(ext4ToTar(image.source, options, summary), { objectMode: false, highWaterMark: 4 << 20 });
    const sink = tmp ? createWriteStream(tmp, { flags: "wx" }) : typeof output === "string" ? createWriteStream(output, { flags: "w" }) : output;
    const stages: NodeJS.ReadWriteStream[] = options.gzip ? [createGzip({ chunkSize: 1 << 20 })] : [];
    await pipeline([tar, ...stages, sink], typeof output === "string" ? {} : { end: output !== process.stdout });
    if (tmp) await rename(tmp, output as string);
    return summary;
  } catch (err) {
    if (tmp) await rm(tmp, { force: true }).catch(() => {});
    if (err instanceof Error && "code" in err && typeof err.code === "string" && !(err instanceof VhdError) && /^E[A-Z]+$/.test(err.code)) {
      throw new VhdError("IO", `exporting ${imagePath}: ${err.message}`, { path: imagePath, cause: err });
    }
    throw err;
  } finally {
    await image.source.close().catch(() => {});
  }
}

/** True when `path` exists and is neither a regular file nor a directory (a device, a FIFO, a socket). */
async function isSpecialFile(path: string): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  return st !== undefined && !st.isFile() && !st.isDirectory();
}

/** Writes in flight while the next chunk is produced: as many as `recycle` lets a consumer hold (see `ExportOptions.recycle`). */
const WRITES_IN_FLIGHT = 2;

/**
 * Writes the chunks to a new file, with writes in flight while the next chunk is produced (two:
 * the producer's pace is uneven, a burst of large-file chunks then a stretch of small files).
 */
async function writeChunks(chunks: AsyncIterable<Uint8Array>, path: string): Promise<void> {
  const fh = await open(path, "wx");
  const pending: Promise<unknown>[] = [];
  try {
    let position = 0;
    for await (const chunk of chunks) {
      if (pending.length === WRITES_IN_FLIGHT) await pending.shift();
      const write = fh.write(chunk, 0, chunk.length, position);
      write.catch(() => {}); // awaited in turn; never an unhandled rejection
      pending.push(write);
      position += chunk.length;
    }
    while (pending.length > 0) await pending.shift();
  } finally {
    await Promise.allSettled(pending);
    await fh.close();
  }
}
