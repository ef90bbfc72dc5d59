// Frames: a header and a UTF-8 JSON payload of exactly `Size - 16` bytes (spec §2.1), cut out of
// a byte stream that has no message boundaries of its own.
import { GcsError } from "../errors.js";
import { decodeHeader, encodeHeader, HEADER_SIZE } from "./header.js";
import { rpcName } from "./message-type.js";

/**
 * Our default limit for one frame, both directions: 1 MiB. hcsshim's 64 KiB tears the bridge
 * down when a busy guest answers DumpStacks or GetProperties with more; the guest has no limit
 * at all, so a corrupt Size field would make it buffer up to 4 GiB. 1 MiB is 16 times what any
 * request we send needs and still bounds what one bad header can make us hold.
 */
export const DEFAULT_MAX_MESSAGE_SIZE = 1 << 20;

export interface Frame {
  type: number;
  id: bigint;
  /** The JSON payload's bytes (a view into a buffer the decoder no longer uses). */
  payload: Uint8Array;
}

export interface EncodeOptions {
  /**
   * Append `\n` to the JSON, counted in Size, as hcsshim's host does (Go's json.Encoder). The
   * guest answers without one. If not provided, true.
   */
  newline?: boolean;
}

/** Encodes one frame; `body` is serialised with JSON.stringify, so its key order is the wire order. */
export function encodeFrame(type: number, id: bigint, body: unknown, options: EncodeOptions = {}): Buffer {
  const json = JSON.stringify(body) + (options.newline === false ? "" : "\n");
  const length = Buffer.byteLength(json);
  const frame = Buffer.allocUnsafe(HEADER_SIZE + length);
  encodeHeader({ type, size: HEADER_SIZE + length, id }, frame);
  frame.write(json, HEADER_SIZE, "utf8");
  return frame;
}

/** Parses a payload as a JSON object, tolerating trailing whitespace (the host's `\n`). */
export function parsePayload(frame: Frame): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(frame.payload.buffer, frame.payload.byteOffset, frame.payload.byteLength).toString("utf8"));
  } catch (err) {
    throw new GcsError("PROTOCOL", `${rpcName(frame.type)} frame id ${frame.id}: payload is not JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new GcsError("PROTOCOL", `${rpcName(frame.type)} frame id ${frame.id}: payload is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/**
 * Cuts frames out of a byte stream. Feed chunks of any size with `push`, which returns the
 * frames completed by that chunk; `end` checks that the stream did not stop mid-frame. A bad
 * Size (below 16, above the limit) throws, and the decoder is then unusable: the stream has lost
 * its framing and the connection must be dropped.
 */
export class FrameDecoder {
  readonly maxMessageSize: number;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #failed: GcsError | undefined;

  constructor(options: { maxMessageSize?: number } = {}) {
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    if (!Number.isInteger(this.maxMessageSize) || this.maxMessageSize < HEADER_SIZE || this.maxMessageSize > 0xffff_ffff) {
      throw new GcsError("INVALID_ARGUMENT", `maxMessageSize ${this.maxMessageSize} must be an integer from ${HEADER_SIZE} to 2^32-1`);
    }
  }

  /** Bytes held that do not make a whole frame yet. */
  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Uint8Array): Frame[] {
    if (this.#failed) throw this.#failed;
    if (chunk.length === 0) return [];
    this.#chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.#buffered += chunk.length;
    const frames: Frame[] = [];
    while (this.#buffered >= HEADER_SIZE) {
      const head = this.#peek(HEADER_SIZE);
      const header = decodeHeader(head);
      if (header.size < HEADER_SIZE || header.size > this.maxMessageSize) {
        this.#failed = new GcsError(
          header.size < HEADER_SIZE ? "PROTOCOL" : "MESSAGE_TOO_LARGE",
          `${rpcName(header.type)} frame id ${header.id} has Size ${header.size}; a frame is ${HEADER_SIZE} to ${this.maxMessageSize} bytes`,
        );
        throw this.#failed;
      }
      if (this.#buffered < header.size) break;
      const whole = this.#take(header.size);
      frames.push({ type: header.type, id: header.id, payload: whole.subarray(HEADER_SIZE) });
    }
    return frames;
  }

  /** Call at end of stream: EOF between frames is a clean close, EOF inside one is an error. */
  end(): void {
    if (this.#failed) return;
    if (this.#buffered > 0) {
      this.#failed = new GcsError("PROTOCOL", `stream ended inside a frame (${this.#buffered} bytes of it received)`);
      throw this.#failed;
    }
  }

  /** The first `n` buffered bytes, copying only when they span chunks. */
  #peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    // Join just enough chunks; a frame is joined once, when all of it has arrived.
    let count = 0;
    let length = 0;
    while (length < n) length += this.#chunks[count++]!.length;
    this.#chunks.splice(0, count, Buffer.concat(this.#chunks.slice(0, count), length));
    return this.#chunks[0]!.subarray(0, n);
  }

  #take(n: number): Buffer {
    const out = this.#peek(n);
    const first = this.#chunks[0]!;
    if (first.length === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#buffered -= n;
    return out;
  }
}
