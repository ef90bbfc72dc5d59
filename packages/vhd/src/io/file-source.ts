// Reads a file as a stream of large chunks with several reads in flight, so the kernel's copy
// into our buffers runs on the thread pool while the main thread parses the previous chunk.
// (fs.createReadStream keeps one read in flight at a time, which leaves the converter waiting.)
import { open } from "node:fs/promises";
import { VhdError } from "../errors.js";

export interface FileChunksOptions {
  /** Bytes per read. If not provided, 1 MiB. */
  chunkSize?: number;
  /** Reads kept in flight ahead of the consumer. If not provided, 4. */
  readAhead?: number;
}

/**
 * Yields the file's bytes in order, in chunks of `chunkSize` (the last may be shorter). Each
 * chunk is a fresh buffer that is never reused, so consumers may keep references to it.
 */
export async function* readFileChunks(path: string, options: FileChunksOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
  const chunkSize = options.chunkSize ?? 1 << 20;
  const readAhead = Math.max(1, options.readAhead ?? 4);
  let handle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    throw new VhdError("IO", `cannot open ${path}: ${(err as Error).message}`, { path, cause: err });
  }
  const queue: Promise<Uint8Array>[] = [];
  let position = 0;
  let eof = false;
  const fh = handle;
  const issue = () => {
    const at = position;
    position += chunkSize;
    queue.push(
      (async () => {
        const buf = Buffer.allocUnsafeSlow(chunkSize);
        let filled = 0;
        while (filled < chunkSize) {
          const { bytesRead } = await fh.read(buf, filled, chunkSize - filled, at + filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
        return filled === chunkSize ? buf : buf.subarray(0, filled);
      })().catch((err: unknown) => {
        throw new VhdError("IO", `reading ${path} at offset ${at}: ${(err as Error).message}`, { path, offset: at, cause: err });
      }),
    );
  };
  try {
    for (let i = 0; i < readAhead; i++) issue();
    while (queue.length > 0) {
      const chunk = await queue.shift()!;
      if (chunk.length < chunkSize) eof = true;
      if (!eof) issue();
      if (chunk.length > 0) yield chunk;
      if (eof) break;
    }
  } finally {
    // Let reads still in flight finish before closing the handle under them.
    await Promise.allSettled(queue);
    await fh.close();
  }
}
