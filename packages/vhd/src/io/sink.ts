// Where images are written: positional writes into a file (or, later, a VHDX payload).
import type { FileHandle } from "node:fs/promises";
import { VhdError } from "../errors.js";

/** A random-access byte sink. Writes may be issued concurrently at disjoint positions. */
export interface BlockSink {
  write(data: Uint8Array, position: number): Promise<void>;
}

/** A sink over an open file handle; short writes are retried, OS errors become `IO` errors. */
export class FileSink implements BlockSink {
  constructor(
    private readonly handle: FileHandle,
    private readonly name: string,
  ) {}

  async write(data: Uint8Array, position: number): Promise<void> {
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await this.handle.write(data, done, data.length - done, position + done);
        if (bytesWritten === 0) throw new Error("write returned 0 bytes");
        done += bytesWritten;
      }
    } catch (err) {
      throw new VhdError("IO", `writing ${this.name} at offset ${position + done}: ${(err as Error).message}`, { path: this.name, offset: position + done, cause: err });
    }
  }
}
