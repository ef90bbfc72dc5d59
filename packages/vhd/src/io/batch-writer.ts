// Sequential appends gathered into large buffers, written while the next one fills: the
// converter produces many small pieces (one per small file) and the OS wants few big writes.
import type { BlockSink } from "./sink.js";

/** If not provided, 8 MiB: big enough that each write is cheap, small enough to stay cache-friendly. */
export const DEFAULT_BATCH_SIZE = 8 << 20;

export class BatchWriter {
  private buffers: [Uint8Array, Uint8Array];
  private pending: [Promise<void> | undefined, Promise<void> | undefined] = [undefined, undefined];
  private current: 0 | 1 = 0;
  private fill = 0;
  private bufferStart: number;
  private failure: unknown;

  constructor(
    private readonly sink: BlockSink,
    /** Absolute offset of the first appended byte. */
    start: number,
    batchSize = DEFAULT_BATCH_SIZE,
  ) {
    this.buffers = [new Uint8Array(batchSize), new Uint8Array(batchSize)];
    this.bufferStart = start;
  }

  /** Absolute offset the next appended byte lands at. */
  get position(): number {
    return this.bufferStart + this.fill;
  }

  /** Appends a copy of `bytes`. Resolves once the bytes are buffered (not necessarily written). */
  async append(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) {
      const buf = this.buffers[this.current];
      const n = Math.min(bytes.length - at, buf.length - this.fill);
      buf.set(n === bytes.length ? bytes : bytes.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === buf.length) await this.rotate();
    }
  }

  /** Appends `n` zero bytes. */
  async appendZeros(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const buf = this.buffers[this.current];
      const k = Math.min(left, buf.length - this.fill);
      buf.fill(0, this.fill, this.fill + k);
      this.fill += k;
      left -= k;
      if (this.fill === buf.length) await this.rotate();
    }
  }

  /** Writes everything buffered and waits for all writes. */
  async flush(): Promise<void> {
    if (this.fill > 0) await this.rotate();
    await Promise.all(this.pending);
    this.pending = [undefined, undefined];
    if (this.failure) throw this.failure;
  }

  private async rotate(): Promise<void> {
    const index = this.current;
    const data = this.buffers[index].subarray(0, this.fill);
    this.pending[index] = this.sink.write(data, this.bufferStart).catch((err: unknown) => {
      this.failure ??= err;
    });
    this.bufferStart += this.fill;
    this.fill = 0;
    this.current = index === 0 ? 1 : 0;
    // Reuse the other buffer only once its previous write is done.
    await this.pending[this.current];
    this.pending[this.current] = undefined;
    if (this.failure) throw this.failure;
  }
}
