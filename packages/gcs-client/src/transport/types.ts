// The host side of every channel: the guest dials, the host listens (spec §1.1). A transport
// turns a vsock port into something a guest can dial and hands the connections over as Node
// Duplex streams, so the bridge and the utility-VM handle never see sockets or file descriptors.
import type { Duplex } from "node:stream";

/** Options of {@link ChannelListener.accept}. */
export interface AcceptOptions {
  /** Give up after this many ms with a TIMEOUT GcsError. If not provided, wait until closed or aborted. */
  timeoutMs?: number;
  /** Give up when aborted, with a CANCELLED GcsError. */
  signal?: AbortSignal;
}

/** A listener for one port. Connections are queued until accepted, in arrival order. */
export interface ChannelListener {
  /**
   * The number put on the wire (`VsockStdioRelaySettings`): the vsock port for vsock-like
   * transports, the TCP port the OS chose for TCP.
   */
  readonly port: number;
  /**
   * The next connection the guest dialled. Concurrent calls are served in call order. Rejects
   * with CLOSED once the listener is closed, TIMEOUT or CANCELLED per the options.
   */
  accept(options?: AcceptOptions): Promise<Duplex>;
  /**
   * Stops listening and destroys connections that were never accepted; pending accepts reject
   * with CLOSED. Accepted connections are the caller's. Idempotent.
   */
  close(): Promise<void>;
}

/** Where channels are opened: hvsock on Windows, unix sockets or TCP elsewhere. */
export interface HostTransport {
  /** Short name for messages: `unix`, `tcp`, `hvsock`. */
  readonly name: string;
  /** Listens on vsock port `port` (what the guest believes it dials). */
  listen(port: number): Promise<ChannelListener>;
  /** Releases what the transport itself holds (not its listeners). Idempotent. */
  close?(): Promise<void>;
}
