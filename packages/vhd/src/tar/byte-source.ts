// Pull-based buffering over an async iterable of chunks: hands out zero-copy subarrays and
// copies only when a requested span crosses two chunks. The consumer decides when the next
// chunk is read, so back-pressure is the consumer's pace.

export class ByteSource {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private chunks: Uint8Array[] = [];
  private head = 0; // index of the first unconsumed chunk
  private headOffset = 0; // bytes consumed of chunks[head]
  /** Bytes buffered and not yet consumed. */
  buffered = 0;
  /** Bytes consumed since the start of the stream. */
  position = 0;
  private ended = false;
  /** Sees every consumed byte, in order, except what `takeSome(n, true)` takes. */
  onConsume: ((bytes: Uint8Array) => void) | undefined;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  /** True once the source is exhausted and every byte consumed. */
  get atEnd(): boolean {
    return this.ended && this.buffered === 0;
  }

  /** Reads chunks until at least `n` bytes are buffered; false if the source ends first. */
  async ensure(n: number): Promise<boolean> {
    while (this.buffered < n && !this.ended) await this.pull();
    return this.buffered >= n;
  }

  /** Reads one more chunk; false at the end of the source. */
  async pull(): Promise<boolean> {
    if (this.ended) return false;
    const r = await this.iterator.next();
    if (r.done) {
      this.ended = true;
      return false;
    }
    const chunk = r.value instanceof Uint8Array ? r.value : Buffer.from(r.value as ArrayBuffer);
    if (chunk.length === 0) return true;
    if (this.head > 64 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    return true;
  }

  /** Takes exactly `n` buffered bytes (call `ensure(n)` first). Zero-copy within one chunk. */
  take(n: number): Uint8Array {
    if (n > this.buffered) throw new RangeError(`take(${n}) with ${this.buffered} buffered`);
    const first = this.chunks[this.head]!;
    const available = first.length - this.headOffset;
    if (n <= available) return this.takeFromHead(n);
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const part = this.takeFromHead(Math.min(n - filled, this.chunks[this.head]!.length - this.headOffset));
      out.set(part, filled);
      filled += part.length;
    }
    return out;
  }

  /**
   * Takes up to `n` bytes from the first buffered chunk, zero-copy; empty if nothing is
   * buffered. `silent` keeps them from `onConsume` (the caller accounts for them itself).
   */
  takeSome(n: number, silent = false): Uint8Array {
    if (this.buffered === 0 || n === 0) return new Uint8Array(0);
    const first = this.chunks[this.head]!;
    return this.takeFromHead(Math.min(n, first.length - this.headOffset), silent);
  }

  /** The next `n` bytes if they lie within the first buffered chunk (zero-copy), without consuming them. */
  peek(n: number): Uint8Array | undefined {
    if (this.buffered < n) return undefined;
    const first = this.chunks[this.head]!;
    return first.length - this.headOffset >= n ? first.subarray(this.headOffset, this.headOffset + n) : undefined;
  }

  /** Drops `n` bytes if that many are buffered (true), else drops nothing (false). */
  skipBuffered(n: number): boolean {
    if (this.buffered < n) return false;
    let left = n;
    while (left > 0) left -= this.takeSome(left).length;
    return true;
  }

  /** Drops `n` bytes, reading as needed; false if the source ends first. */
  async skip(n: number): Promise<boolean> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0 && !(await this.pull())) return false;
      left -= this.takeSome(left).length;
    }
    return true;
  }

  private takeFromHead(n: number, silent = false): Uint8Array {
    const first = this.chunks[this.head]!;
    const out = first.subarray(this.headOffset, this.headOffset + n);
    if (!silent) this.onConsume?.(out);
    this.headOffset += n;
    this.buffered -= n;
    this.position += n;
    if (this.headOffset === first.length) {
      this.chunks[this.head] = EMPTY;
      this.head++;
      this.headOffset = 0;
    }
    return out;
  }

  /** Stops reading the source early (lets a file stream close). */
  async close(): Promise<void> {
    this.ended = true;
    this.chunks = [];
    this.head = 0;
    this.buffered = 0;
    await this.iterator.return?.();
  }
}

const EMPTY = new Uint8Array(0);
