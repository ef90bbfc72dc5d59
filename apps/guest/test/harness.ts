// A host for the guest in tests: it listens where the guest dials (the bridge and stdio ports
// as unix sockets), starts the built guest as a real process (under unshare, as the launcher
// does, or plain), and speaks raw frames built with @lcow/gcs-client/protocol.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, realpath, rename, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  FrameDecoder,
  GCS_VSOCK_PORT,
  NULL_ACTIVITY_ID,
  NULL_CONTAINER_ID,
  Rpc,
  encodeFrame,
  negotiateProtocolRequest,
  parsePayload,
  requestType,
  type Frame,
} from "@lcow/gcs-client/protocol";

export const repo = join(import.meta.dirname, "..", "..", "..");
export const guestMain = join(repo, "apps", "guest", "dist", "main.js");

export interface Response {
  type: number;
  id: bigint;
  /** The payload as received (to check for a trailing newline). */
  raw: string;
  body: Record<string, unknown>;
}

/** A connection from the guest, seen from the host: frames in, frames out. */
export class HostConnection {
  readonly frames: Response[] = [];
  readonly #pending = new Map<bigint, (r: Response) => void>();
  readonly #decoder = new FrameDecoder();
  #nextId = 100n;
  readonly closed: Promise<void>;

  constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      for (const frame of this.#decoder.push(chunk)) this.#onFrame(frame);
    });
    socket.on("error", () => {});
    this.closed = new Promise((resolve) => socket.on("close", () => resolve()));
  }

  #onFrame(frame: Frame): void {
    const raw = Buffer.from(frame.payload).toString("utf8");
    const r: Response = { type: frame.type, id: frame.id, raw, body: parsePayload(frame) };
    this.frames.push(r);
    const resolve = this.#pending.get(frame.id);
    this.#pending.delete(frame.id);
    resolve?.(r);
  }

  /** Writes raw bytes. */
  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** The response to frame `id`, when it comes. */
  response(id: bigint): Promise<Response> {
    return new Promise((resolve, reject) => {
      this.#pending.set(id, resolve);
      void this.closed.then(() => reject(new Error(`bridge closed before the response to ${id}`)));
    });
  }

  /** Sends a request of `rpc` with `body` and resolves with its response. */
  request(rpc: number, body: unknown, id = this.#nextId++): Promise<Response> {
    const answer = this.response(id);
    this.write(encodeFrame(requestType(rpc), id, body));
    return answer;
  }

  /** Sends a request and does not wait. Returns its id. */
  send(rpc: number, body: unknown, id = this.#nextId++): bigint {
    this.write(encodeFrame(requestType(rpc), id, body));
    return id;
  }

  negotiate(): Promise<Response> {
    return this.request(Rpc.NegotiateProtocol, negotiateProtocolRequest());
  }

  modify(request: Record<string, unknown>): Promise<Response> {
    return this.request(Rpc.ModifySettings, { ContainerId: NULL_CONTAINER_ID, ActivityId: NULL_ACTIVITY_ID, Request: request });
  }
}

/** A listener that hands out accepted connections in order. */
export class Listener {
  readonly #queue: Socket[] = [];
  readonly #waiters: Array<(s: Socket) => void> = [];
  private constructor(readonly server: Server, readonly path: string) {
    server.on("connection", (s) => {
      const w = this.#waiters.shift();
      if (w) w(s);
      else this.#queue.push(s);
    });
  }

  static async listen(path: string): Promise<Listener> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
    return new Listener(server, path);
  }

  accept(timeoutMs = 20_000): Promise<Socket> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no connection on ${this.path} within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.push((s) => {
        clearTimeout(timer);
        resolve(s);
      });
    });
  }

  /**
   * Stops listening (the socket file goes) and drops connections nobody accepted. Accepted
   * ones are their owners' to close: server.close()'s callback would wait for them.
   */
  close(): Promise<void> {
    for (const s of this.#queue.splice(0)) s.destroy();
    this.server.close();
    return Promise.resolve();
  }
}

export interface GuestOptions {
  /** Run under unshare with --isolated, as the launcher does. If not provided, false. */
  isolated?: boolean;
  logLevel?: string;
}

/** A running guest and the host around it. */
export class TestGuest {
  stderr = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  conn!: HostConnection;

  private constructor(
    readonly dir: string,
    readonly child: ChildProcess,
    readonly bridge: Listener,
    readonly isolated: boolean,
  ) {
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (s: string) => (this.stderr += s));
    this.exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  }

  static async start(options: GuestOptions = {}): Promise<TestGuest> {
    const dir = await realpath(await mkdtemp(join(tmpdir(), "lcow-guest-test-")));
    for (const d of ["v", "scsi", "state", "host"]) await mkdir(join(dir, d));
    const bridge = await Listener.listen(join(dir, "v", `${GCS_VSOCK_PORT}.sock`));
    const args = [
      guestMain,
      "serve",
      "--bridge",
      `unix:${bridge.path}`,
      "--stdio",
      `unix:${join(dir, "v")}`,
      "--scsi-dir",
      join(dir, "scsi"),
      "--state-dir",
      join(dir, "state"),
      "--log-level",
      options.logLevel ?? "info",
      ...(options.isolated ? ["--isolated"] : []),
    ];
    const [file, ...argv] = options.isolated
      ? ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "slave", "--", process.execPath, ...args]
      : [process.execPath, ...args];
    const child = spawn(file!, argv, { stdio: ["ignore", "ignore", "pipe"] });
    const guest = new TestGuest(dir, child, bridge, options.isolated ?? false);
    guest.conn = new HostConnection(await Promise.race([bridge.accept(), guest.exited.then(() => Promise.reject(new Error(`guest exited: ${guest.stderr}`)))]));
    return guest;
  }

  /** The next connection the guest dials (after the current one dropped). */
  async reconnect(): Promise<HostConnection> {
    this.conn = new HostConnection(await this.bridge.accept());
    return this.conn;
  }

  /** Where the host sees guest path `p`. */
  hostPath(p: string): string {
    return this.isolated ? `/proc/${this.child.pid}/root${p}` : p;
  }

  /** "Attaches" `file` at controller/LUN, as the launcher does (temporary name, rename). */
  async attach(controller: number, lun: number, file: string, readOnly: boolean): Promise<void> {
    const path = join(this.dir, "scsi", `${controller}-${lun}.json`);
    await writeFile(`${path}.tmp`, JSON.stringify({ path: file, readOnly }));
    await rename(`${path}.tmp`, path);
  }

  async detach(controller: number, lun: number): Promise<void> {
    await rm(join(this.dir, "scsi", `${controller}-${lun}.json`), { force: true });
  }

  /** Listens on stdio port `port` (a unix socket in the vsock folder). */
  listenPort(port: number): Promise<Listener> {
    return Listener.listen(join(this.dir, "v", `${port}.sock`));
  }

  /** Stops the guest (SIGKILL) and removes its folder. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
    this.conn?.socket.destroy();
    await this.bridge.close();
  }

  async cleanup(): Promise<void> {
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
  }

  /** True if the guest wrote an uncaught exception or a Node crash to stderr. */
  crashed(): boolean {
    return /Uncaught|UnhandledPromiseRejection|node:internal|^\s+at /m.test(this.stderr);
  }
}

/** Loop devices bound to `file` (`losetup -j`). */
export function loopsOf(file: string): string {
  return execFileSync("losetup", ["-j", file], { encoding: "utf8" }).trim();
}

/** True when something is mounted on `path` in the host's namespace. */
export function mountedHere(path: string): boolean {
  return execFileSync("findmnt", ["-rn", "-o", "TARGET"], { encoding: "utf8" }).split("\n").includes(path);
}

/** Polls `check` until true or `ms` elapse. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 10_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Reads a socket to its end. */
export function readAll(socket: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("end", () => resolve(Buffer.concat(chunks)));
    socket.on("error", reject);
  });
}

/** Unsigned HRESULT of a response. */
export const resultOf = (r: Response): number => (r.body.Result as number) >>> 0;
