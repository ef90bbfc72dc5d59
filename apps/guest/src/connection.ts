// One bridge connection, guest side (spec §2, §4.1, checklist §7): frames are cut from the
// stream with the shared FrameDecoder, each request is handled on its own (responses go out in
// completion order, not arrival order), every response is one write of a whole frame (so frames
// never interleave), and nothing a host sends can crash the guest: a frame whose header is
// intact but whose payload is bad gets an error response; a header that loses the framing
// (Size < 16 or over the limit) ends the connection cleanly, since nothing after it can be
// trusted to start a frame.
import type { Socket } from "node:net";
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  FrameDecoder,
  HEADER_SIZE,
  MessageKind,
  Rpc,
  encodeFrame,
  kindOf,
  parsePayload,
  responseTypeOf,
  rpcName,
  rpcOf,
  type Frame,
} from "@lcow/gcs-client/protocol";
import { failureFields, GuestError, toGuestError } from "./errors.js";
import { type JsonObject } from "./fields.js";
import { NO_REPLY, type Guest } from "./guest.js";
import type { Logger } from "./log.js";

export interface ConnectionOptions {
  /** Largest frame accepted or sent. If not provided, the protocol module's default (1 MiB). */
  maxMessageSize?: number;
}

const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, "0")}`;

export class BridgeConnection {
  readonly #socket: Socket;
  readonly #guest: Guest;
  readonly #log: Logger;
  readonly #decoder: FrameDecoder;
  readonly #maxMessageSize: number;
  readonly #abort = new AbortController();
  readonly #inFlight = new Map<number, string>();
  #nextRequest = 0;
  #negotiated = false;
  #stopped = false;

  constructor(socket: Socket, guest: Guest, log: Logger, options: ConnectionOptions = {}) {
    this.#socket = socket;
    this.#guest = guest;
    this.#log = log;
    this.#maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.#decoder = new FrameDecoder({ maxMessageSize: this.#maxMessageSize });
  }

  /** Serves the connection; resolves once it has closed (either side), never rejects. */
  run(): Promise<void> {
    const socket = this.#socket;
    return new Promise((resolve) => {
      socket.on("data", (chunk: Buffer) => this.#onData(chunk));
      socket.on("end", () => {
        try {
          this.#decoder.end();
        } catch (err) {
          this.#log.warn("the host closed the bridge inside a frame", { err });
        }
        socket.destroy();
      });
      socket.on("error", (err) => this.#log.info("bridge connection error", { err }));
      socket.on("close", () => {
        this.#abort.abort();
        resolve();
      });
      socket.resume();
    });
  }

  /**
   * Stops reading requests (a shutdown is under way): requests still waiting (for a disk to be
   * attached, a process to exit) give up, so that they release what they hold, and responses of
   * running handlers are dropped.
   */
  stop(): void {
    this.#stopped = true;
    this.#socket.pause();
    this.#abort.abort();
  }

  /** Closes the connection. */
  close(): void {
    this.#stopped = true;
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#stopped) return;
    let frames: Frame[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (err) {
      this.#log.warn("bridge framing lost, closing the connection", { err });
      this.close();
      return;
    }
    for (const frame of frames) {
      // #handle answers every failure itself; this only catches a bug in answering.
      this.#handle(frame).catch((err: unknown) => this.#log.error("answering a request failed", { type: hex(frame.type), id: frame.id, err }));
    }
  }

  async #handle(frame: Frame): Promise<void> {
    const name = `${rpcName(frame.type)} id ${frame.id}`;
    const key = this.#nextRequest++;
    this.#inFlight.set(key, name);
    let body: JsonObject | undefined;
    try {
      try {
        body = parsePayload(frame);
      } catch {
        // Reported below, after the checks the real guest makes before it looks at the payload.
      }
      const activityId = typeof body?.ActivityId === "string" && body.ActivityId !== "" ? body.ActivityId : undefined;
      try {
        const fields = await this.#dispatch(frame, body);
        if (fields === NO_REPLY) return;
        this.#send(frame, { Result: 0, ActivityId: activityId, ...fields });
      } catch (err) {
        const e = toGuestError(err, rpcName(frame.type));
        this.#log.debug("request failed", { request: name, code: e.code, message: e.message });
        this.#send(frame, failureBody(e, rpcName(frame.type), activityId));
      }
    } finally {
      this.#inFlight.delete(key);
    }
  }

  async #dispatch(frame: Frame, body: JsonObject | undefined): Promise<JsonObject | typeof NO_REPLY> {
    this.#log.debug("request", { type: hex(frame.type), id: frame.id, size: HEADER_SIZE + frame.payload.length });
    const rpc = rpcOf(frame.type);
    const handler = kindOf(frame.type) === MessageKind.REQUEST ? this.#guest.handler(rpc) : undefined;
    // Before negotiation only NegotiateProtocol has a handler (the real guest registers the
    // others for version 4 only), so everything else is "not supported", whatever its payload.
    if (!handler || (!this.#negotiated && rpc !== Rpc.NegotiateProtocol)) {
      throw new GuestError(handler ? "NOT_NEGOTIATED" : "NOT_IMPLEMENTED", `bridge: function not supported, header type: ${hex(frame.type)}${handler ? " (send NegotiateProtocol first)" : ""}`);
    }
    if (!body) {
      try {
        parsePayload(frame);
      } catch (err) {
        throw new GuestError("INVALID_JSON", (err as Error).message, { cause: err });
      }
    }
    return handler(body!, {
      signal: this.#abort.signal,
      negotiated: () => {
        this.#negotiated = true;
      },
      inFlight: () => [...this.#inFlight.values()],
    });
  }

  /** Sends the response to `request`, unless the connection has gone. One write per frame. */
  #send(request: Frame, body: JsonObject): void {
    if (this.#stopped || this.#socket.destroyed || !this.#socket.writable) return;
    const type = responseTypeOf(request.type);
    let frame = encodeFrame(type, request.id, body, { newline: false });
    if (frame.length > this.#maxMessageSize) {
      const e = new GuestError("FAILED", `${rpcName(request.type)}: the response is ${frame.length} bytes, over the ${this.#maxMessageSize}-byte frame limit`);
      frame = encodeFrame(type, request.id, failureBody(e, rpcName(request.type), body.ActivityId as string | undefined), { newline: false });
    }
    this.#socket.write(frame);
  }
}

/** A failed response in the wire's field order: Result, ActivityId, ErrorMessage, ErrorRecords. */
function failureBody(err: GuestError, rpc: string, activityId: string | undefined): JsonObject {
  const { Result, ErrorMessage, ErrorRecords } = failureFields(err, rpc);
  return { Result, ActivityId: activityId, ErrorMessage, ErrorRecords };
}
