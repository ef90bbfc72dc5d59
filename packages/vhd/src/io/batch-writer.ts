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

  /**
   * Appends a copy of `bytes`. Returns a promise only when the caller must wait (a batch was
   * handed to the OS and no buffer is free); otherwise the bytes are buffered on return. Either
   * way the caller may reuse `bytes` afterwards. Callers await the result before appending again.
   */
  append(bytes: Uint8Array): Promise<void> | undefined {
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, this.buffer.length - this.fill);
      this.buffer.set(n === bytes.length ? bytes : bytes.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === this.buffer.length) {
        const wait = this.submit();
        if (wait) return at < bytes.length ? wait.then(() => this.append(bytes.subarray(at))) : wait;
      }
    }
    return undefined;
  }

  /** Appends `n` zero bytes; returns a promise only when the caller must wait, as `append`. */
  appendZeros(n: number): Promise<void> | undefined {
    let left = n;
    while (left > 0) {
      const k = Math.min(left, this.buffer.length - this.fill);
      this.buffer.fill(0, this.fill, this.fill + k);
      this.fill += k;
      left -= k;
      if (this.fill === this.buffer.length) {
        const wait = this.submit();
        if (wait) return left > 0 ? wait.then(() => this.appendZeros(left)) : wait;
      }
    }
    return undefined;
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

  /** Hands the filled part of the buffer to the sink and takes a free buffer (waiting for one only if all are in flight). */
  private submit(): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    if (this.fill === 0) return undefined;
    const buffer = this.buffer;
    const done = this.sink.write(buffer.subarray(0, this.fill), this.bufferStart).catch((err: unknown) => {
      this.failure ??= err;
    });
    this.inFlight.push({ done, buffer });
    this.bufferStart += this.fill;
    this.fill = 0;
    const free = this.free.pop();
    if (free) {
      this.buffer = free;
      return undefined;
    }
    if (this.inFlight.length < POOL_SIZE) {
      this.buffer = new Uint8Array(this.batchBytes);
      return undefined;
    }
    return this.retireOldest().then(() => {
      this.buffer = this.free.pop()!;
      if (this.failure) throw this.failure;
    });
  }

  private async retireOldest(): Promise<void> {
    const oldest = this.inFlight.shift();
    if (!oldest) return;
    await oldest.done;
    this.free.push(oldest.buffer);
  }
}
