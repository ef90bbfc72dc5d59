// One WSAPoll, on one worker thread, for every hvsock socket of the process: the event loop never
// blocks, and at most one libuv pool thread waits however many channels are open (see
// winsock.ts). Sockets say what they wait for (readable, writable); when WSAPoll reports it,
// their handler does the non-blocking call on the JS thread.
import { GcsError } from "../../errors.js";
import { POLLERR, type SocketHandle, type Winsock } from "./winsock.js";

/**
 * How long one WSAPoll waits before it is re-issued with the current interest set. A socket
 * that starts waiting, or is closed, while a poll is in flight is dealt with up to this late;
 * data on sockets already in the set wakes the poll at once. Idle, this is 50 wake-ups a second
 * of one worker thread.
 */
export const POLL_INTERVAL_MS = 20;

/** Consecutive WSAPoll failures after which every socket is failed rather than retried. */
const MAX_POLL_FAILURES = 3;

export interface WatchHandlers {
  /** WSAPoll reported `revents` (a POLLERR alone when the poll itself failed). */
  onReady(revents: number): void;
  /** The poller gave up on WSAPoll; the socket is unusable. */
  onError(err: GcsError): void;
}

export interface Watch {
  /** What to wait for (POLLRDNORM | POLLWRNORM), 0 for nothing. */
  setEvents(events: number): void;
  /**
   * Stops watching and closes the socket: at once, or when the WSAPoll in flight that includes
   * it returns (closing it under a poll could let Windows hand the number to a new socket).
   * Resolves once closesocket has run, i.e. once the address is free again.
   */
  close(): Promise<void>;
}

interface Entry {
  readonly socket: SocketHandle;
  readonly handlers: WatchHandlers;
  events: number;
  closed: boolean;
  closing?: Promise<void>;
}

export class Poller {
  readonly #ws: Winsock;
  readonly #entries = new Set<Entry>();
  #inFlight: Set<Entry> | undefined;
  readonly #closeAfterPoll: Array<{ socket: SocketHandle; done: () => void }> = [];
  #failures = 0;
  /** Set while handlers run: their interest changes are gathered into one new poll. */
  #dispatching = false;

  constructor(winsock: Winsock) {
    this.#ws = winsock;
  }

  /** Sockets with a poll in flight or waiting, for tests and diagnostics. */
  get watched(): number {
    return this.#entries.size;
  }

  watch(socket: SocketHandle, handlers: WatchHandlers): Watch {
    const entry: Entry = { socket, handlers, events: 0, closed: false };
    this.#entries.add(entry);
    return {
      setEvents: (events) => {
        if (entry.closed) return;
        entry.events = events;
        if (events !== 0) this.#kick();
      },
      close: () => {
        if (entry.closed) return entry.closing ?? Promise.resolve();
        entry.closed = true;
        this.#entries.delete(entry);
        if (this.#inFlight?.has(entry)) {
          entry.closing = new Promise((done) => this.#closeAfterPoll.push({ socket: entry.socket, done }));
        } else {
          this.#ws.close(entry.socket);
          entry.closing = Promise.resolve();
        }
        return entry.closing;
      },
    };
  }

  #kick(): void {
    if (this.#inFlight || this.#dispatching) return;
    const active = [...this.#entries].filter((e) => e.events !== 0);
    if (active.length === 0) return;
    const fds = Buffer.alloc(active.length * this.#ws.pollFdSize);
    active.forEach((e, i) => this.#ws.writePollFd(fds, i, e.socket, e.events));
    this.#inFlight = new Set(active);
    this.#ws.poll(fds, active.length, POLL_INTERVAL_MS).then(
      (result) => this.#done(active, fds, result),
      (err: unknown) => this.#done(active, fds, -1, err),
    );
  }

  #done(active: Entry[], fds: Buffer, result: number, cause?: unknown): void {
    this.#inFlight = undefined;
    for (const { socket, done } of this.#closeAfterPoll.splice(0)) {
      this.#ws.close(socket);
      done();
    }
    this.#dispatching = true;
    try {
      if (result < 0) this.#pollFailed(active, cause);
      else {
        this.#failures = 0;
        active.forEach((entry, i) => {
          const revents = this.#ws.readRevents(fds, i);
          if (revents !== 0 && !entry.closed) this.#dispatch(entry, revents);
        });
      }
    } finally {
      this.#dispatching = false;
    }
    this.#kick();
  }

  #pollFailed(active: Entry[], cause: unknown): void {
    this.#failures++;
    if (this.#failures >= MAX_POLL_FAILURES) {
      const err = new GcsError("UNAVAILABLE", `WSAPoll failed ${this.#failures} times in a row`, { cause });
      this.#failures = 0;
      for (const entry of active) if (!entry.closed) entry.handlers.onError(err);
      return;
    }
    // The error code stayed on the worker thread: let each socket retry its call on this
    // thread, where a real failure shows with its code.
    for (const entry of active) if (!entry.closed && entry.events !== 0) this.#dispatch(entry, POLLERR);
  }

  #dispatch(entry: Entry, revents: number): void {
    try {
      entry.handlers.onReady(revents);
    } catch (err) {
      // A handler's failure belongs to its socket, never to the poll loop.
      entry.handlers.onError(err instanceof GcsError ? err : new GcsError("INTERNAL", `hvsock handler failed: ${(err as Error).message}`, { cause: err }));
    }
  }
}
