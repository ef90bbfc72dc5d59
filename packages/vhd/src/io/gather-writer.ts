// Sequential output gathered into vectored writes. Large pieces (file data straight from the
// input chunks) are written from where they already are, small pieces are copied into a
// staging buffer, and padding points at a shared zero block: the data is copied once, by the
// kernel, instead of once more into a batch buffer. Up to two batches are in flight.
import type { BlockSink } from "./sink.js";

/** If not provided, 8 MiB per vectored write. */
export const DEFAULT_BATCH_BYTES = 8 << 20;
/** Pieces at least this large are referenced rather than copied (when the caller allows it). */
const REFERENCE_MIN = 32 << 10;
/** Fewer than IOV_MAX (1024 on Linux) so a batch is one writev. */
const MAX_PIECES = 512;
const STAGING_SIZE = 1 << 20;
const ZEROS = new Uint8Array(64 << 10);

/** A sink that can take several buffers for one contiguous range (`FileHandle.writev`). */
export interface VectoredSink extends BlockSink {
  writev?(buffers: Uint8Array[], position: number): Promise<void>;
}

export class GatherWriter {
  private pieces: Uint8Array[] = [];
  private batchStart: number;
  private batchBytes = 0;
  private staging = new Uint8Array(STAGING_SIZE);
  private stagingFill = 0;
  private segmentStart = 0; // start of the staging bytes not yet turned into a piece
  private inFlight: Promise<void>[] = [];
  private failure: unknown;

  constructor(
    private readonly sink: VectoredSink,
    start: number,
    private readonly batchLimit = DEFAULT_BATCH_BYTES,
  ) {
    this.batchStart = start;
  }

  /** Absolute offset of the next appended byte. */
  get position(): number {
    return this.batchStart + this.batchBytes + (this.stagingFill - this.segmentStart);
  }

  /**
   * Appends `bytes`. With `stable`, the caller promises never to modify them, so large ones
   * are written in place; otherwise they are copied before this returns.
   */
  async append(bytes: Uint8Array, stable = false): Promise<void> {
    if (bytes.length === 0) return;
    if (stable && bytes.length >= REFERENCE_MIN) {
      this.cutSegment();
      this.pieces.push(bytes);
      this.batchBytes += bytes.length;
    } else {
      let at = 0;
      while (at < bytes.length) {
        if (this.stagingFill === this.staging.length) this.newStaging();
        const n = Math.min(bytes.length - at, this.staging.length - this.stagingFill);
        this.staging.set(at === 0 && n === bytes.length ? bytes : bytes.subarray(at, at + n), this.stagingFill);
        this.stagingFill += n;
        at += n;
      }
    }
    if (this.batchBytes + (this.stagingFill - this.segmentStart) >= this.batchLimit || this.pieces.length >= MAX_PIECES) await this.submit();
  }

  /** Appends `n` zero bytes (padding) without copying. */
  async appendZeros(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const k = Math.min(left, ZEROS.length);
      this.cutSegment();
      this.pieces.push(ZEROS.subarray(0, k));
      this.batchBytes += k;
      left -= k;
    }
    if (this.batchBytes >= this.batchLimit || this.pieces.length >= MAX_PIECES) await this.submit();
  }

  /** Skips `n` bytes, leaving a hole in the output (reads as zeros). */
  async skip(n: number): Promise<void> {
    if (n === 0) return;
    await this.submit();
    this.batchStart += n;
  }

  /** Writes everything and waits for all writes; rethrows the first write error. */
  async flush(): Promise<void> {
    await this.submit();
    await Promise.all(this.inFlight);
    this.inFlight = [];
    if (this.failure) throw this.failure;
  }

  private cutSegment(): void {
    if (this.stagingFill > this.segmentStart) {
      this.pieces.push(this.staging.subarray(this.segmentStart, this.stagingFill));
      this.batchBytes += this.stagingFill - this.segmentStart;
      this.segmentStart = this.stagingFill;
    }
  }

  private newStaging(): void {
    this.cutSegment();
    // The old staging buffer may still be referenced by a batch in flight: never reuse it.
    this.staging = new Uint8Array(STAGING_SIZE);
    this.stagingFill = 0;
    this.segmentStart = 0;
  }

  private async submit(): Promise<void> {
    this.cutSegment();
    if (this.pieces.length === 0) return;
    const pieces = this.pieces;
    const position = this.batchStart;
    this.pieces = [];
    this.batchStart += this.batchBytes;
    this.batchBytes = 0;
    // Staging space already handed to a batch is not written again; start a fresh buffer when
    // the rest is small, so batches do not pin many nearly-full buffers.
    if (this.staging.length - this.stagingFill < STAGING_SIZE / 4) {
      this.staging = new Uint8Array(STAGING_SIZE);
      this.stagingFill = 0;
      this.segmentStart = 0;
    }
    const write = (this.sink.writev && pieces.length > 1 ? this.sink.writev(pieces, position) : writeEach(this.sink, pieces, position)).catch((err: unknown) => {
      this.failure ??= err;
    });
    this.inFlight.push(write);
    if (this.inFlight.length >= 2) {
      await this.inFlight.shift();
    }
    if (this.failure) throw this.failure;
  }
}

async function writeEach(sink: BlockSink, pieces: Uint8Array[], position: number): Promise<void> {
  let at = position;
  for (const p of pieces) {
    await sink.write(p, at);
    at += p.length;
  }
}
