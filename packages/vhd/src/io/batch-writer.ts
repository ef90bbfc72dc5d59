// Sequential appends gathered into large buffers that are written while the next one fills.
// The buffers are recycled: freshly allocated memory costs a page fault per 4 KiB, which on
// these machines made writing slower than the copy into a warm buffer.
import type { BlockSink } from "./sink.js";

/** If not provided, 8 MiB per write. */
export const DEFAULT_BATCH_BYTES = 8 << 20;
/** Buffers in the pool: one filling while the others are being written. */
const POOL_SIZE = 3;

export class BatchWriter {
  private readonly free: Uint8Array[] = [];
  private readonly inFlight: { done: Promise<void>; buffer: Uint8Array }[] = [];
  private buffer: Uint8Array;
  private fill = 0;
  private bufferStart: number;
  private failure: unknown;

  constructor(
    private readonly sink: BlockSink,
    /** Absolute offset of the first appended byte. */
    start: number,
    private readonly batchBytes = DEFAULT_BATCH_BYTES,
  ) {
    this.buffer = new Uint8Array(batchBytes);
    this.bufferStart = start;
  }

  /** Absolute offset the next appended byte lands at. */
  get position(): number {
    return this.bufferStart + this.fill;
  }

  /** Appends a copy of `bytes`; resolves once they are buffered, so the caller may reuse them. */
  async append(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, this.buffer.length - this.fill);
      this.buffer.set(n === bytes.length ? bytes : bytes.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === this.buffer.length) await this.submit();
    }
  }

  /** Appends `n` zero bytes. */
  async appendZeros(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const k = Math.min(left, this.buffer.length - this.fill);
      this.buffer.fill(0, this.fill, this.fill + k);
      this.fill += k;
      left -= k;
      if (this.fill === this.buffer.length) await this.submit();
    }
  }

  /** Skips `n` bytes, leaving a hole in the output (it reads as zeros). */
  async skip(n: number): Promise<void> {
    if (n === 0) return;
    await this.submit();
    this.bufferStart += n;
  }

  /** Writes everything buffered and waits for every write; rethrows the first write error. */
  async flush(): Promise<void> {
    await this.submit();
    while (this.inFlight.length > 0) await this.retireOldest();
    if (this.failure) throw this.failure;
  }

  private async submit(): Promise<void> {
    if (this.fill > 0) {
      const buffer = this.buffer;
      const done = this.sink.write(buffer.subarray(0, this.fill), this.bufferStart).catch((err: unknown) => {
        this.failure ??= err;
      });
      this.inFlight.push({ done, buffer });
      this.bufferStart += this.fill;
      this.fill = 0;
      if (this.free.length === 0 && this.inFlight.length >= POOL_SIZE - 1) await this.retireOldest();
      this.buffer = this.free.pop() ?? new Uint8Array(this.batchBytes);
    }
    if (this.failure) throw this.failure;
  }

  private async retireOldest(): Promise<void> {
    const oldest = this.inFlight.shift();
    if (!oldest) return;
    await oldest.done;
    this.free.push(oldest.buffer);
  }
}
