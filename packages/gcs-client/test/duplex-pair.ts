// Two connected in-memory Duplex streams (node:stream's duplexPair is Node 22+), used as the
// bridge connection between the client and a scripted guest.
import { Duplex } from "node:stream";

class End extends Duplex {
  peer!: End;
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    // Delivered on a later tick, as a socket would, so no test depends on same-tick delivery.
    setImmediate(() => {
      if (!this.peer.destroyed) this.peer.push(chunk);
      callback();
    });
  }
  override _final(callback: (err?: Error | null) => void): void {
    setImmediate(() => {
      if (!this.peer.destroyed) this.peer.push(null);
      callback();
    });
  }
  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // The peer sees the connection drop as EOF, like a socket closed by the other side.
    if (!this.peer.destroyed && !this.peer.readableEnded) this.peer.push(null);
    callback(err);
  }
}

export function duplexPair(): [Duplex, Duplex] {
  const a = new End();
  const b = new End();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
