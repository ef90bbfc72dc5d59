// Where images are written: positional writes into a file (or, later, a VHDX payload).
import type { FileHandle } from "node:fs/promises";
import { VhdError } from "../errors.js";

/** A random-access byte sink. Writes may be issued concurrently at disjoint positions. */
export interface BlockSink {
  write(data: Uint8Array, position: number): Promise<void>;
}

/** A sink over an open file handle; short writes are retried, OS errors become `IO` errors. */
export class FileSink implements BlockSink {
  /** Writes `buffers` back to back from `position` with as few syscalls as the OS allows. */
  async writev(buffers: Uint8Array[], position: number): Promise<void> {
    let list = buffers;
    let at = position;
    try {
      for (;;) {
        const total = list.reduce((s, b) => s + b.length, 0);
        if (total === 0) return;
        const { bytesWritten } = await this.handle.writev(list, at);
        if (bytesWritten === 0) throw new Error("writev returned 0 bytes");
        if (bytesWritten === total) return;
        at += bytesWritten;
        // A short write: drop what was written and continue with the rest.
        let skip = bytesWritten;
        const rest: Uint8Array[] = [];
        for (const b of list) {
          if (skip >= b.length) {
            skip -= b.length;
            continue;
          }
          rest.push(skip > 0 ? b.subarray(skip) : b);
          skip = 0;
        }
        list = rest;
      }
    } catch (err) {
      throw new VhdError("IO", `writing ${this.name} at offset ${at}: ${(err as Error).message}`, { path: this.name, offset: at, cause: err });
    }
  }

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
