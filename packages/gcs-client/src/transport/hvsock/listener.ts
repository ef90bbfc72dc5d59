// A listener bound to {VmId, VsockServiceID(port)} (spec §1.2): socket, bind, listen(16), then
// non-blocking accepts whenever the poller reports the listening socket readable.
import type { Duplex } from "node:stream";
import { GcsError } from "../../errors.js";
import { vsockServiceId } from "../../protocol/constants.js";
import { AcceptQueue } from "../accept-queue.js";
import type { AcceptOptions, ChannelListener } from "../types.js";
import type { Poller, Watch } from "./poller.js";
import { encodeSockaddrHv } from "./sockaddr.js";
import { HvsockStream } from "./stream.js";
import { POLLRDNORM, type Winsock } from "./winsock.js";

/** go-winio's and hcsshim's backlog. */
const BACKLOG = 16;

export class HvsockListener implements ChannelListener {
  readonly port: number;
  readonly #ws: Winsock;
  readonly #poller: Poller;
  readonly #socket: number;
  readonly #queue: AcceptQueue;
  readonly #watch: Watch;

  constructor(winsock: Winsock, poller: Poller, vmId: string, port: number) {
    const serviceId = vsockServiceId(port);
    const what = `hvsock listener ${vmId}/${serviceId}`;
    const socket = winsock.socket();
    try {
      winsock.setNonBlocking(socket);
      winsock.bind(socket, encodeSockaddrHv(vmId, serviceId), `${vmId}, ${serviceId}`);
      winsock.listen(socket, BACKLOG);
    } catch (err) {
      winsock.close(socket);
      throw err;
    }
    this.port = port;
    this.#ws = winsock;
    this.#poller = poller;
    this.#socket = socket;
    this.#queue = new AcceptQueue(what);
    this.#watch = poller.watch(socket, {
      onReady: () => this.#acceptReady(),
      onError: (err) => {
        this.#queue.close(err);
        void this.#watch.close();
      },
    });
    // Accept whenever the guest dials, like a net.Server; connections wait in the queue.
    this.#watch.setEvents(POLLRDNORM);
  }

  accept(options?: AcceptOptions): Promise<Duplex> {
    return this.#queue.accept(options);
  }

  /** Resolves once the listening socket is closed, so the same port can be bound again. */
  async close(): Promise<void> {
    this.#queue.close();
    await this.#watch.close();
  }

  #acceptReady(): void {
    for (;;) {
      const client = this.#ws.accept(this.#socket);
      if (client === undefined) return;
      try {
        // Accepted sockets inherit non-blocking mode on Windows; set it anyway rather than rely on that.
        this.#ws.setNonBlocking(client);
      } catch (err) {
        this.#ws.close(client);
        throw err instanceof GcsError ? err : new GcsError("UNAVAILABLE", String(err));
      }
      this.#queue.push(new HvsockStream(this.#ws, this.#poller, client));
    }
  }
}
