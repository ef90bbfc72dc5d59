// The listeners a transport opened and has not seen closed, so that closing the transport (the
// VM went away) releases every port and socket file at once.
import type { ChannelListener } from "./types.js";

export class ListenerSet {
  readonly #open = new Set<ChannelListener>();

  /** Tracks `listener` until it is closed; returns a listener whose close() also untracks it. */
  track(listener: ChannelListener): ChannelListener {
    const close = listener.close.bind(listener);
    const tracked: ChannelListener = {
      port: listener.port,
      accept: (options) => listener.accept(options),
      close: () => {
        this.#open.delete(tracked);
        return close();
      },
    };
    this.#open.add(tracked);
    return tracked;
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.#open].map((listener) => listener.close().catch(() => {})));
  }
}
