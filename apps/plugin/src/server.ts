// The graphdriver plugin's HTTP layer: routes `POST /<Method>` to the driver, streams the raw tar
// bodies of Diff (response) and ApplyDiff (request) with back-pressure, and sends every failure
// through `toPluginResponse`.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect } from "node:net";
import { lstat, unlink } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { GraphDriver } from "./driver.js";
import { PluginError, toPluginResponse } from "./errors.js";
import type { Logger } from "./log.js";
import { silentLogger } from "./log.js";
import {
  IMPLEMENTS,
  Method,
  PLUGIN_CONTENT_TYPE,
  type ActivateResponse,
  type GraphDriverRequest,
  type GraphDriverResponse,
  type InitRequest,
} from "./protocol.js";

/** Options of a `PluginServer`. */
export interface PluginServerOptions {
  driver: GraphDriver;
  /**
   * The layer store's home from `--root`. When set, the driver is opened there before the first
   * request (so a plugin restarted under a running daemon, which never sends `Init` again, keeps
   * working) and `Init`'s `Home` is only logged. When unset, `Init` decides the home.
   */
  root?: string;
  /** `lcow.*` options from flags; `Init`'s `Opts` (`--storage-opt`) are added after them and win. */
  options?: readonly string[];
  /** If not provided, nothing is logged. */
  log?: Logger;
}

/** JSON request bodies are tiny (an ID, a parent, a few options); anything larger is refused. */
const MAX_JSON_BODY = 1 << 20;

/**
 * The plugin's HTTP server. `start()` opens the driver when a root is known, `listen(path)`
 * serves on a unix socket (or a Windows named pipe path), `close()` stops accepting, lets
 * requests in flight finish, releases every mount and closes the socket.
 */
export class PluginServer {
  readonly http: Server;
  private readonly driver: GraphDriver;
  private readonly log: Logger;
  private readonly root: string | undefined;
  private readonly flagOptions: readonly string[];
  private home: string | undefined;
  private initKey: string | undefined;
  private readonly inFlight = new Set<ServerResponse>();
  private idle: (() => void) | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: PluginServerOptions) {
    this.driver = options.driver;
    this.log = options.log ?? silentLogger;
    this.root = options.root;
    this.flagOptions = options.options ?? [];
    // A layer upload or a `docker save` of a big layer can take many minutes: Node's default
    // 300 s request timeout would cut it, and the daemon sets no timeout of its own.
    this.http = createServer({ requestTimeout: 0, keepAliveTimeout: 60_000 }, (req, res) => void this.handle(req, res));
  }

  /** Opens the driver at `root` with the flag options, if a root was given. */
  async start(): Promise<void> {
    if (this.root !== undefined) await this.initDriver(this.root, this.flagOptions);
  }

  /**
   * Listens on `path`: a unix socket path, or `\\.\pipe\name` on Windows. A stale unix socket
   * left by a killed plugin is removed; a live one (another plugin answers) is an error.
   */
  async listen(path: string): Promise<void> {
    if (process.platform !== "win32") await removeStaleSocket(path);
    await new Promise<void>((resolve, reject) => {
      this.http.once("error", reject);
      this.http.listen(path, () => {
        this.http.off("error", reject);
        resolve();
      });
    });
    this.log.info("listening", { socket: path });
  }

  /** Stops accepting, waits for requests in flight, then releases every mount (driver cleanup). Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
      this.http.closeIdleConnections();
      // Keep-alive connections of requests in flight end with their response.
      for (const res of this.inFlight) if (!res.headersSent) res.setHeader("Connection", "close");
      if (this.inFlight.size > 0) {
        this.log.info("waiting for requests in flight", { inFlight: this.inFlight.size });
        await new Promise<void>((resolve) => (this.idle = resolve));
      }
      await closed;
      if (this.home !== undefined) await this.driver.cleanup();
      this.log.info("stopped");
    })();
    return this.closing;
  }

  private async initDriver(home: string, options: readonly string[]): Promise<void> {
    const key = JSON.stringify([home, options]);
    if (key === this.initKey) return;
    await this.driver.init(home, options);
    this.home = home;
    this.initKey = key;
    this.log.info("driver initialised", { home, options });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const [path = "", query = ""] = (req.url ?? "").split("?", 2);
    this.inFlight.add(res);
    // While shutting down, tell keep-alive clients to reconnect (to the next plugin) rather than reuse this socket.
    if (this.closing !== undefined) res.setHeader("Connection", "close");
    let id: string | undefined;
    try {
      if (req.method !== "POST") throw new PluginError("NOT_FOUND", `${req.method} ${path}: only POST is served`);
      if (path === Method.ApplyDiff) {
        const q = parseQuery(query);
        id = q.id;
        const size = await this.applyDiff(q.id ?? "", q.parent ?? "", req);
        sendJson(res, 200, { Size: size } satisfies GraphDriverResponse);
      } else if (path === Method.Diff) {
        const body = (await readJson(req)) as GraphDriverRequest;
        id = body.ID;
        await this.diff(requireId(body), body.Parent ?? "", res);
      } else {
        const body = await readJson(req);
        id = (body as GraphDriverRequest).ID;
        sendJson(res, 200, await this.call(path, body));
      }
      this.log.info("request", { method: path.slice(1), id, status: res.statusCode, ms: Math.round(performance.now() - started) });
    } catch (err) {
      const { status, body, code } = toPluginResponse(err);
      this.log[status >= 500 ? "error" : "warn"]("request failed", { method: path.slice(1), id, status, code, err, ms: Math.round(performance.now() - started) });
      if (res.headersSent) {
        // A streamed Diff failed after its 200 went out: cut the connection so the daemon
        // sees a truncated body (an error) rather than a short tar it would take as complete.
        res.destroy(err instanceof Error ? err : undefined);
      } else {
        // A request body we did not read to its end (a failed ApplyDiff) cannot be followed by
        // another request on this connection.
        if (!req.complete) res.setHeader("Connection", "close");
        sendJson(res, status, body);
      }
    } finally {
      this.inFlight.delete(res);
      if (this.inFlight.size === 0) this.idle?.();
    }
  }

  /** The JSON endpoints. */
  private async call(path: string, body: unknown): Promise<GraphDriverResponse | ActivateResponse> {
    const r = body as GraphDriverRequest;
    switch (path) {
      case Method.Activate:
        return { Implements: IMPLEMENTS };
      case Method.Init:
        return await this.init(body as InitRequest);
      case Method.Capabilities:
        return { Capabilities: { ReproducesExactDiffs: this.driver.reproducesExactDiffs } };
      case Method.Status:
        // `docker info` asks before and after Init; an uninitialised plugin still answers.
        return { Status: this.home === undefined ? [["Home", "(not initialised)"]] : await this.driver.status() };
    }
    this.requireHome();
    switch (path) {
      case Method.Create:
        await this.driver.create(requireId(r), r.Parent ?? "", { mountLabel: r.MountLabel, storageOpt: r.StorageOpt });
        return {};
      case Method.CreateReadWrite:
        await this.driver.createReadWrite(requireId(r), r.Parent ?? "", { mountLabel: r.MountLabel, storageOpt: r.StorageOpt });
        return {};
      case Method.Remove:
        await this.driver.remove(requireId(r));
        return {};
      case Method.Get:
        return { Dir: await this.driver.get(requireId(r), r.MountLabel ?? "") };
      case Method.Put:
        await this.driver.put(requireId(r));
        return {};
      case Method.Exists:
        return { Exists: await this.driver.exists(requireId(r)) };
      case Method.GetMetadata:
        return { Metadata: await this.driver.getMetadata(requireId(r)) };
      case Method.Cleanup:
        await this.driver.cleanup();
        return {};
      case Method.Changes: {
        const changes = await this.driver.changes(requireId(r), r.Parent ?? "");
        return { Changes: changes.map((c) => ({ Path: c.path, Kind: c.kind })) };
      }
      case Method.DiffSize:
        return { Size: await this.driver.diffSize(requireId(r), r.Parent ?? "") };
    }
    throw new PluginError("NOT_FOUND", `unknown method ${path}`);
  }

  private async init(body: InitRequest): Promise<GraphDriverResponse> {
    if (body.Home === undefined || body.Home === "") throw new PluginError("INVALID_ARGUMENT", "Init: missing Home");
    const opts = [...this.flagOptions, ...(body.Opts ?? [])];
    if ((body.UIDMaps?.length ?? 0) > 0 || (body.GIDMaps?.length ?? 0) > 0) {
      // User-namespace remapping would need ownership shifted in every layer; lcow stores ids as given.
      throw new PluginError("INVALID_ARGUMENT", "Init: user namespace remapping (--userns-remap) is not supported by lcow");
    }
    if (this.root !== undefined && body.Home !== this.root) {
      this.log.info("Init Home ignored: --root decides where layers live", { home: body.Home, root: this.root });
    }
    await this.initDriver(this.root ?? body.Home, opts);
    return {};
  }

  private async applyDiff(id: string, parent: string, req: IncomingMessage): Promise<number> {
    if (id === "") throw new PluginError("INVALID_ARGUMENT", "ApplyDiff: missing id in the query");
    this.requireHome();
    const size = await this.driver.applyDiff(id, parent, req);
    // The daemon's tar may carry padding after the end-of-archive blocks; read it so the
    // connection can be reused and the daemon's writer is not blocked.
    if (!req.readableEnded) {
      req.resume();
      await new Promise<void>((resolve, reject) => {
        req.once("end", resolve);
        req.once("error", reject);
      });
    }
    return size;
  }

  /**
   * Streams a layer tar. The 200 status is sent only once the first chunk is in hand, so a diff
   * that fails to start is answered with a proper error; a failure later destroys the socket.
   */
  private async diff(id: string, parent: string, res: ServerResponse): Promise<void> {
    this.requireHome();
    const tar = await this.driver.diff(id, parent);
    const chunks = tar[Symbol.asyncIterator]();
    const release = () => void chunks.return?.()?.catch(() => {});
    let first: IteratorResult<Uint8Array>;
    try {
      first = await chunks.next();
    } catch (err) {
      release();
      throw err;
    }
    res.writeHead(200, { "Content-Type": "application/x-tar" });
    if (first.done) {
      res.end();
      return;
    }
    const head = first.value;
    // Readable.from over a generator pulls the next chunk only when `res` has drained.
    await pipeline(
      Readable.from(
        (async function* () {
          yield head;
          for (let next = await chunks.next(); !next.done; next = await chunks.next()) yield next.value;
        })(),
        { objectMode: false },
      ),
      res,
    ).catch((err: unknown) => {
      release();
      throw err;
    });
  }

  private requireHome(): void {
    if (this.home === undefined) {
      throw new PluginError("FAILED_PRECONDITION", "the driver has no home yet: start the plugin with --root, or wait for GraphDriver.Init");
    }
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": PLUGIN_CONTENT_TYPE, "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

/** Reads a small JSON body; an empty body (Plugin.Activate) is `{}`. */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > MAX_JSON_BODY) throw new PluginError("INVALID_ARGUMENT", `request body over ${MAX_JSON_BODY} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (text === "") return {};
  try {
    const value: unknown = JSON.parse(text);
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not a JSON object");
    return value;
  } catch (err) {
    throw new PluginError("INVALID_ARGUMENT", `request body is not a JSON object: ${text.slice(0, 80)}`, { cause: err });
  }
}

function requireId(r: GraphDriverRequest): string {
  if (typeof r.ID !== "string" || r.ID === "") throw new PluginError("INVALID_ARGUMENT", "missing ID");
  return r.ID;
}

/**
 * The daemon builds ApplyDiff's query with `fmt.Sprintf("?id=%s&parent=%s")`, unescaped; layer
 * ids are hex (plus `-init`), so the raw text is the value. Percent-escapes from other clients
 * (curl) are decoded when they are valid.
 */
export function parseQuery(query: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of query.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const key = eq < 0 ? pair : pair.slice(0, eq);
    const raw = eq < 0 ? "" : pair.slice(eq + 1);
    let value = raw;
    try {
      value = decodeURIComponent(raw);
    } catch {
      // not an escape sequence: keep the daemon's raw text
    }
    out[key] = value;
  }
  return out;
}

async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (st === undefined) return;
  if (!st.isSocket()) throw new PluginError("INVALID_ARGUMENT", `${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
  if (live) throw new PluginError("FAILED_PRECONDITION", `${path}: another plugin is listening on this socket`);
  await unlink(path);
}
