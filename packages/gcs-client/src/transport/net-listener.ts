// A ChannelListener over a node:net server, for the unix and TCP transports.
import { createServer, type Server, type Socket } from "node:net";
import { GcsError } from "../errors.js";
import { AcceptQueue } from "./accept-queue.js";
import type { AcceptOptions, ChannelListener } from "./types.js";

export interface NetListenerOptions {
  /** The number put on the wire once listening; receives the bound server. */
  port: (server: Server) => number;
  /** Names the listener in errors. */
  what: string;
  /** Runs after the server closed (e.g. removes a socket file). */
  cleanup?: () => Promise<void>;
}

export class NetListener implements ChannelListener {
  readonly port: number;
  readonly #server: Server;
  readonly #queue: AcceptQueue;
  readonly #cleanup: (() => Promise<void>) | undefined;
  #closing: Promise<void> | undefined;

  private constructor(server: Server, queue: AcceptQueue, port: number, cleanup: (() => Promise<void>) | undefined) {
    this.#server = server;
    this.#queue = queue;
    this.port = port;
    this.#cleanup = cleanup;
  }

  /** Listens with `listenArgs` (a path, or a port and host) and resolves once bound. */
  static async open(listenArgs: { path: string } | { port: number; host: string }, options: NetListenerOptions): Promise<NetListener> {
    const queue = new AcceptQueue(options.what);
    // allowHalfOpen: stdin EOF is our half-close, and stdout EOF from the guest must not close
    // our side before the reader has seen it (spec §4.3); the process handle closes explicitly.
    // Not pauseOnConnect: it marks the socket explicitly paused, so a 'data' listener alone would
    // never start it; a socket nobody reads stops at its highWaterMark anyway.
    const server = createServer({ allowHalfOpen: true }, (socket: Socket) => queue.push(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) => reject(new GcsError("UNAVAILABLE", `cannot listen on ${options.what}: ${err.message}`, { cause: err })));
      server.listen(listenArgs, () => resolve());
    });
    // After listen, a server error (EMFILE on accept) must not be an uncaught exception; the
    // connection is simply lost and a waiting accept() runs into its timeout.
    server.removeAllListeners("error");
    server.on("error", () => {});
    return new NetListener(server, queue, options.port(server), options.cleanup);
  }

  accept(options?: AcceptOptions): Promise<Socket> {
    return this.#queue.accept(options) as Promise<Socket>;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#queue.close();
      // close() stops listening at once; its callback would wait for every accepted
      // connection to end, and those belong to the caller.
      this.#server.close();
      await this.#cleanup?.();
    })();
    return this.#closing;
  }
}
