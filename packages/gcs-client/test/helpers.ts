// A scripted guest for bridge tests: it decodes what the host sends and lets each test answer
// frame by frame (in any order, whole or byte by byte), or send anything at all.
import type { Duplex } from "node:stream";
import { connect, type Socket } from "node:net";
import { encodeFrame, FrameDecoder, parsePayload, responseTypeOf, type Frame } from "../src/protocol/index.js";
import { duplexPair } from "./duplex-pair.js";
import { GcsBridge, type GcsBridgeOptions } from "../src/bridge.js";

/** Every wait in the tests is bounded: a hang fails with `what` instead of timing out the file. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    promise.then(
      (value) => (clearTimeout(timer), resolve(value)),
      (err: unknown) => (clearTimeout(timer), reject(err)),
    );
  });
}

/** Settles with the rejection reason (or fails if the promise resolves). */
export async function rejectionOf(promise: Promise<unknown>, ms = 5000): Promise<Error & { code?: string }> {
  try {
    await within(promise, ms, "a rejection");
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error("expected a rejection, got a value");
}

/** Bytes from a hex dump ("01 0b 10 10 ..."), as the spec prints them. */
export function hex(...lines: string[]): Buffer {
  return Buffer.from(lines.join(" ").replace(/\s+/g, ""), "hex");
}

/** A frame the guest received, with its exact bytes. */
export interface Received extends Frame {
  raw: Buffer;
  body: Record<string, unknown>;
}

export class FakeGuest {
  readonly stream: Duplex;
  /** Every frame received, in order. */
  readonly received: Received[] = [];
  readonly #decoder = new FrameDecoder({ maxMessageSize: 0xffff_ffff });
  readonly #queue: Received[] = [];
  readonly #waiters: Array<(frame: Received) => void> = [];
  ended = false;

  constructor(stream: Duplex) {
    this.stream = stream;
    stream.on("data", (chunk: Buffer) => {
      for (const frame of this.#decoder.push(chunk)) {
        const raw = Buffer.concat([Buffer.from(frame.payload.buffer, frame.payload.byteOffset - 16, 16), frame.payload]);
        const received: Received = { ...frame, raw, body: parsePayload(frame) };
        this.received.push(received);
        const waiter = this.#waiters.shift();
        if (waiter) waiter(received);
        else this.#queue.push(received);
      }
    });
    stream.on("end", () => (this.ended = true));
    stream.on("error", () => {});
  }

  /** The next frame from the host not yet taken. */
  next(ms = 5000): Promise<Received> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    return within(new Promise<Received>((resolve) => this.#waiters.push(resolve)), ms, "a frame from the host");
  }

  /** The bytes of a response to `request` (no trailing newline, as the guest's json.Marshal). */
  responseBytes(request: Frame, body: Record<string, unknown>): Buffer {
    return encodeFrame(responseTypeOf(request.type), request.id, { Result: 0, ActivityId: "00000000-0000-0000-0000-000000000000", ...body }, { newline: false });
  }

  reply(request: Frame, body: Record<string, unknown> = {}): void {
    this.stream.write(this.responseBytes(request, body));
  }

  send(bytes: Buffer): void {
    this.stream.write(bytes);
  }

  /** Writes `bytes` one byte per write (each delivered on its own tick). */
  async sendBytewise(bytes: Buffer): Promise<void> {
    for (const byte of bytes) {
      await new Promise<void>((resolve, reject) => this.stream.write(Buffer.of(byte), (err) => (err ? reject(err) : resolve())));
    }
  }
}

/** A bridge over an in-memory pair, with the guest side scripted by the test. */
export function bridgePair(options: GcsBridgeOptions = {}): { bridge: GcsBridge; guest: FakeGuest } {
  const [host, guestEnd] = duplexPair();
  return { bridge: new GcsBridge(host, options), guest: new FakeGuest(guestEnd) };
}

/** Dials a unix socket path or a TCP port, as the guest dials its stdio ports. */
export function dial(target: { path: string } | { port: number; host: string }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = "path" in target ? connect({ path: target.path, allowHalfOpen: true }) : connect({ port: target.port, host: target.host, allowHalfOpen: true });
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Reads a stream to its end. */
export function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    stream.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
    stream.on("end", () => resolve(text));
    stream.on("error", reject);
  });
}
