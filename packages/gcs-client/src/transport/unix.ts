// vsock emulated with unix sockets: port P is `<dir>/<P>.sock` (P in decimal). The guest side
// (apps/guest, or the Linux launcher's guest) dials the same path.
import { lstat, rm } from "node:fs/promises";
import { join } from "node:path";
import { GcsError } from "../errors.js";
import { ListenerSet } from "./listener-set.js";
import { NetListener } from "./net-listener.js";
import { checkPort } from "./port.js";
import type { ChannelListener, HostTransport } from "./types.js";

/** Linux's sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

export interface UnixTransportOptions {
  /** Folder of the socket files; must exist. Keep it short: a socket path has at most 107 bytes. */
  dir: string;
}

export class UnixTransport implements HostTransport {
  readonly name = "unix";
  readonly dir: string;
  readonly #listeners = new ListenerSet();
  #closed = false;

  constructor(options: UnixTransportOptions) {
    if (typeof options?.dir !== "string" || options.dir === "") throw new GcsError("INVALID_ARGUMENT", "UnixTransport: dir must name a folder for the socket files");
    this.dir = options.dir;
  }

  /** The socket file of vsock port `port`. */
  pathOf(port: number): string {
    return join(this.dir, `${port}.sock`);
  }

  /**
   * Listens on `<dir>/<port>.sock`, replacing a stale socket file (never another kind of file).
   * The file is removed when the listener closes.
   */
  async listen(port: number): Promise<ChannelListener> {
    checkPort(port, "UnixTransport.listen");
    if (this.#closed) throw new GcsError("CLOSED", `UnixTransport.listen(${port}): the transport is closed`);
    const path = this.pathOf(port);
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
      throw new GcsError("INVALID_ARGUMENT", `unix socket path ${path} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter dir`);
    }
    await removeStaleSocket(path);
    const listener = await NetListener.open(
      { path },
      {
        what: `unix listener ${path}`,
        port: () => port,
        // The file outlives the server otherwise, and the next listen would find it stale.
        cleanup: () => rm(path, { force: true }),
      },
    );
    return this.#listeners.track(listener);
  }

  /** Closes every listener still open (removing its socket file); later listen() calls fail. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#listeners.closeAll();
  }
}

/**
 * A socket file left by a process that died makes listen fail with EADDRINUSE. Ports are never
 * reused by a live bridge, so a socket file at our path is stale; anything else is not ours.
 */
async function removeStaleSocket(path: string): Promise<void> {
  const stat = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw new GcsError("UNAVAILABLE", `cannot inspect ${path}: ${err.message}`, { cause: err });
  });
  if (!stat) return;
  if (!stat.isSocket()) throw new GcsError("ALREADY_EXISTS", `${path} exists and is not a socket; refusing to replace it`);
  await rm(path, { force: true });
}
