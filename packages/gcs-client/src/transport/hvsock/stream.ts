// An accepted hvsock connection as a Node Duplex: reads and writes are non-blocking Winsock
// calls on the JS thread, retried when the poller says the socket is ready. end() is
// shutdown(SD_SEND), the half-close that stdin EOF needs (spec §4.3).
import { Duplex } from "node:stream";
import { POLLERR, POLLHUP, POLLNVAL, POLLRDNORM, POLLWRNORM, SD_SEND, type SocketHandle, type Winsock } from "./winsock.js";
import type { Poller, Watch } from "./poller.js";

/** One recv's worth; the guest's frames and stdio chunks are rarely larger. */
const READ_SIZE = 64 * 1024;

interface PendingWrite {
  readonly data: Buffer;
  offset: number;
  readonly callback: (err?: Error | null) => void;
}

export class HvsockStream extends Duplex {
  readonly #ws: Winsock;
  readonly #socket: SocketHandle;
  readonly #watch: Watch;
  #wantRead = false;
  #eof = false;
  #write: PendingWrite | undefined;

  constructor(winsock: Winsock, poller: Poller, socket: SocketHandle) {
    // allowHalfOpen: the guest's EOF on stdout must not end our side before we chose to.
    super({ allowHalfOpen: true });
    this.#ws = winsock;
    this.#socket = socket;
    this.#watch = poller.watch(socket, {
      onReady: (revents) => this.#onReady(revents),
      onError: (err) => this.destroy(err),
    });
  }

  override _read(): void {
    this.#wantRead = true;
    this.#readNow();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#write = { data: chunk, offset: 0, callback };
    this.#writeNow();
  }

  override _final(callback: (err?: Error | null) => void): void {
    try {
      this.#ws.shutdown(this.#socket, SD_SEND);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#wantRead = false;
    this.#write = undefined;
    // The socket itself closes when no WSAPoll uses it any more; nothing waits for that.
    void this.#watch.close();
    callback(err);
  }

  #onReady(revents: number): void {
    if (revents & POLLNVAL) {
      this.destroy(new Error("hvsock: the socket is no longer valid (POLLNVAL)"));
      return;
    }
    // HUP and ERR are not final by themselves: the next call returns EOF or the real error.
    if (this.#wantRead && revents & (POLLRDNORM | POLLHUP | POLLERR)) this.#readNow();
    if (this.#write && revents & (POLLWRNORM | POLLHUP | POLLERR)) this.#writeNow();
  }

  #readNow(): void {
    try {
      while (this.#wantRead && !this.#eof && !this.destroyed) {
        const buf = Buffer.allocUnsafe(READ_SIZE);
        const n = this.#ws.recv(this.#socket, buf);
        if (n === undefined) break;
        if (n === 0) {
          this.#eof = true;
          this.#wantRead = false;
          this.push(null);
          break;
        }
        // A short read keeps a copy rather than pinning 64 KiB per chunk.
        const data = n < READ_SIZE / 2 ? Buffer.from(buf.subarray(0, n)) : buf.subarray(0, n);
        if (!this.push(data)) this.#wantRead = false;
      }
    } catch (err) {
      this.destroy(err as Error);
      return;
    }
    this.#updateInterest();
  }

  #writeNow(): void {
    const write = this.#write;
    if (!write) return;
    try {
      while (write.offset < write.data.length) {
        const n = this.#ws.send(this.#socket, write.data.subarray(write.offset));
        if (n === undefined) {
          this.#updateInterest();
          return;
        }
        write.offset += n;
      }
    } catch (err) {
      this.#write = undefined;
      this.#updateInterest();
      write.callback(err as Error);
      return;
    }
    this.#write = undefined;
    this.#updateInterest();
    write.callback();
  }

  #updateInterest(): void {
    if (this.destroyed) return;
    this.#watch.setEvents((this.#wantRead && !this.#eof ? POLLRDNORM : 0) | (this.#write ? POLLWRNORM : 0));
  }
}
