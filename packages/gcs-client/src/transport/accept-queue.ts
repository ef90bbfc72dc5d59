// The queue between connections that arrive and accept() calls that wait for them, shared by
// every transport: arrivals and waiters are matched in order, whichever comes first waits.
import type { Duplex } from "node:stream";
import { GcsError } from "../errors.js";
import type { AcceptOptions } from "./types.js";

interface Waiter {
  resolve(stream: Duplex): void;
  reject(err: GcsError): void;
}

export class AcceptQueue {
  readonly #what: string;
  readonly #ready: Duplex[] = [];
  readonly #waiters: Waiter[] = [];
  #closed: GcsError | undefined;

  /** `what` names the listener in errors, e.g. `unix listener /run/x/1073741825.sock`. */
  constructor(what: string) {
    this.#what = what;
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** A connection arrived; after close it is destroyed at once (nobody will ever accept it). */
  push(stream: Duplex): void {
    if (this.#closed) {
      stream.destroy();
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve(stream);
    else {
      // A queued connection may be reset by the guest before anyone accepts it; without a
      // listener that 'error' would be an uncaught exception.
      stream.on("error", noop);
      this.#ready.push(stream);
    }
  }

  accept(options: AcceptOptions = {}): Promise<Duplex> {
    if (this.#closed) return Promise.reject(this.#closed);
    const queued = this.#ready.shift();
    if (queued) {
      queued.off("error", noop);
      return Promise.resolve(queued);
    }
    const { timeoutMs, signal } = options;
    if (signal?.aborted) return Promise.reject(new GcsError("CANCELLED", `accept on ${this.#what} was aborted`, { cause: signal.reason }));
    return new Promise<Duplex>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => settle(new GcsError("CANCELLED", `accept on ${this.#what} was aborted`, { cause: signal?.reason }));
      const settle = (result: Duplex | GcsError): void => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        if (timer) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (result instanceof GcsError) reject(result);
        else resolve(result);
      };
      const waiter: Waiter = { resolve: settle, reject: settle };
      this.#waiters.push(waiter);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => settle(new GcsError("TIMEOUT", `no connection on ${this.#what} within ${timeoutMs} ms`)), timeoutMs);
      }
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Rejects waiters with `reason` (CLOSED) and destroys connections nobody accepted. */
  close(reason = new GcsError("CLOSED", `${this.#what} is closed`)): void {
    if (this.#closed) return;
    this.#closed = reason;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(reason);
    for (const stream of this.#ready.splice(0)) stream.destroy();
  }
}

function noop(): void {}
