// Reads a file as a stream of large chunks with several reads in flight, so the kernel's copy
// into our buffers runs on the thread pool while the main thread parses the previous chunk.
// (fs.createReadStream keeps one read in flight at a time and allocates a fresh buffer per
// read; on these machines the page faults of fresh memory cost more than the reads.)
import { open } from "node:fs/promises";
import { VhdError } from "../errors.js";

export interface FileChunksOptions {
  /** Bytes per read. If not provided, 1 MiB. */
  chunkSize?: number;
  /** Reads kept in flight ahead of the consumer. If not provided, 4. */
  readAhead?: number;
  /**
   * Recycle buffers: a yielded chunk stays valid only until `RECYCLE_SLACK` (4) more chunks
   * have been requested. Only for consumers that copy what they keep. If not provided, false:
   * every chunk is a fresh buffer the consumer may keep.
   */
  recycle?: boolean;
  /** Byte offset to start reading at. If not provided, 0. */
  start?: number;
}

/** How many chunks a consumer of recycled chunks may hold at once. */
export const RECYCLE_SLACK = 4;

/** Yields the file's bytes in order, in chunks of `chunkSize` (the last may be shorter). */
export async function* readFileChunks(path: string, options: FileChunksOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
  const chunkSize = options.chunkSize ?? 1 << 20;
  const readAhead = Math.max(1, options.readAhead ?? 4);
  const recycle = options.recycle ?? false;
  let fh;
  try {
    fh = await open(path, "r");
  } catch (err) {
    throw new VhdError("IO", `cannot open ${path}: ${(err as Error).message}`, { path, cause: err });
  }
  const handle = fh;
  const ring = recycle ? Array.from({ length: readAhead + RECYCLE_SLACK }, () => Buffer.allocUnsafeSlow(chunkSize)) : [];
  const queue: Promise<Uint8Array>[] = [];
  let position = options.start ?? 0;
  let issued = 0;
  const issue = () => {
    const at = position;
    const buf = recycle ? ring[issued % ring.length]! : Buffer.allocUnsafeSlow(chunkSize);
    position += chunkSize;
    issued++;
    queue.push(
      (async () => {
        let filled = 0;
        while (filled < chunkSize) {
          const { bytesRead } = await handle.read(buf, filled, chunkSize - filled, at + filled);
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
      const last = chunk.length < chunkSize;
      if (!last) issue();
      if (chunk.length > 0) yield chunk;
      if (last) break;
    }
  } finally {
    // Let reads still in flight finish before closing the handle under them.
    await Promise.allSettled(queue);
    await handle.close();
  }
}
