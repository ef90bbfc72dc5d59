// Hyper-V sockets (AF_HYPERV) on Windows: the transport hcsshim uses to reach a utility VM.
import { GcsError } from "../../errors.js";
import { ListenerSet } from "../listener-set.js";
import { checkPort } from "../port.js";
import type { ChannelListener, HostTransport } from "../types.js";
import { HvsockListener } from "./listener.js";
import { Poller } from "./poller.js";
import { isGuid } from "./sockaddr.js";
import { Winsock } from "./winsock.js";

export interface HvsockTransportOptions {
  /** The utility VM's RuntimeId (its Hyper-V VmId), e.g. from HCS compute-system properties. */
  vmId: string;
  /**
   * The Winsock library. If not provided, System32's ws2_32.dll on Windows; elsewhere required
   * (a library with the same ABI, as the tests use).
   */
  library?: string;
}

const pollers = new WeakMap<Winsock, Poller>();

/**
 * Listens on `{vmId, VsockServiceID(port)}`. Native code (koffi, Winsock) loads at the first
 * listen(), so constructing one is cheap and the package imports anywhere.
 */
export class HvsockTransport implements HostTransport {
  readonly name = "hvsock";
  readonly vmId: string;
  readonly #library: string | undefined;
  readonly #listeners = new ListenerSet();
  #closed = false;

  constructor(options: HvsockTransportOptions) {
    if (!isGuid(options?.vmId)) throw new GcsError("INVALID_ARGUMENT", `HvsockTransport: vmId must be a GUID, got ${JSON.stringify(options?.vmId)}`);
    if (options.library === undefined && process.platform !== "win32") {
      throw new GcsError("UNSUPPORTED_PLATFORM", `HvsockTransport needs Windows (this is ${process.platform}); use UnixTransport or TcpTransport, or pass { library }`);
    }
    this.vmId = options.vmId;
    this.#library = options.library;
  }

  async listen(port: number): Promise<ChannelListener> {
    checkPort(port, "HvsockTransport.listen");
    if (this.#closed) throw new GcsError("CLOSED", `HvsockTransport.listen(${port}): the transport is closed`);
    const winsock = Winsock.load(this.#library === undefined ? {} : { library: this.#library });
    let poller = pollers.get(winsock);
    if (!poller) {
      poller = new Poller(winsock);
      pollers.set(winsock, poller);
    }
    return this.#listeners.track(new HvsockListener(winsock, poller, this.vmId, port));
  }

  /** Closes every listener still open; later listen() calls fail. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#listeners.closeAll();
  }
}
