// Channels over TCP, for guests that cannot reach a unix socket (a VM with user networking, a
// container, another host). The OS picks each listener's port and that TCP port is what goes on
// the wire; the guest dials `host:port`. There is no authentication (vsock has none either), so
// listen on loopback or a private interface only.
import type { AddressInfo } from "node:net";
import { GcsError } from "../errors.js";
import { ListenerSet } from "./listener-set.js";
import { NetListener } from "./net-listener.js";
import { checkPort } from "./port.js";
import type { ChannelListener, HostTransport } from "./types.js";

export interface TcpTransportOptions {
  /** Address to listen on. If not provided, "127.0.0.1". */
  host?: string;
}

export class TcpTransport implements HostTransport {
  readonly name = "tcp";
  readonly host: string;
  readonly #listeners = new ListenerSet();
  #closed = false;

  constructor(options: TcpTransportOptions = {}) {
    if (options.host !== undefined && (typeof options.host !== "string" || options.host === "")) {
      throw new GcsError("INVALID_ARGUMENT", `TcpTransport: host must be a non-empty address, got ${JSON.stringify(options.host)}`);
    }
    this.host = options.host ?? "127.0.0.1";
  }

  /** `port` (the vsock port asked for) only names the listener; `listener.port` is the TCP port the OS chose. */
  async listen(port: number): Promise<ChannelListener> {
    checkPort(port, "TcpTransport.listen");
    if (this.#closed) throw new GcsError("CLOSED", `TcpTransport.listen(${port}): the transport is closed`);
    const listener = await NetListener.open(
      { port: 0, host: this.host },
      { what: `tcp listener for vsock port ${port} on ${this.host}`, port: (server) => (server.address() as AddressInfo).port },
    );
    return this.#listeners.track(listener);
  }

  /** Closes every listener still open; later listen() calls fail. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#listeners.closeAll();
  }
}
