// Where the "VM's" vsock goes on Linux: the bridge endpoint is a unix socket path or a TCP
// address; a stdio port P is the unix socket `<dir>/<P>.sock` or TCP port P on a host. The host
// listens on all of them and the guest dials, as the real GCS vsock-dials the host.
import { connect, type Socket } from "node:net";
import { isAbsolute, join } from "node:path";
import { GuestError } from "./errors.js";

/** One socket address. */
export type Endpoint = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

/** How stdio ports map to addresses. */
export type StdioBase = { kind: "unix"; dir: string } | { kind: "tcp"; host: string };

function badEndpoint(flag: string, text: string, why: string): never {
  throw new GuestError("INVALID_ARGUMENT", `${flag} ${JSON.stringify(text)}: ${why}`);
}

function tcpPort(flag: string, text: string, port: string): number {
  const n = Number(port);
  if (!/^\d+$/.test(port) || n < 1 || n > 65535) badEndpoint(flag, text, `port ${JSON.stringify(port)} is not 1..65535`);
  return n;
}

/** Host part of `tcp:HOST[:PORT]`, with IPv6 brackets removed. */
function tcpHost(flag: string, text: string, host: string): string {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (bare === "") badEndpoint(flag, text, "no host");
  return bare;
}

/** Parses `--bridge`: `unix:/abs/path.sock` or `tcp:HOST:PORT` (`tcp:[::1]:PORT` for IPv6). */
export function parseEndpoint(text: string, flag = "--bridge"): Endpoint {
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length);
    if (!isAbsolute(path)) badEndpoint(flag, text, "the socket path must be absolute");
    return { kind: "unix", path };
  }
  if (text.startsWith("tcp:")) {
    const rest = text.slice("tcp:".length);
    const colon = rest.lastIndexOf(":");
    if (colon < 0) badEndpoint(flag, text, "expected tcp:HOST:PORT");
    return { kind: "tcp", host: tcpHost(flag, text, rest.slice(0, colon)), port: tcpPort(flag, text, rest.slice(colon + 1)) };
  }
  return badEndpoint(flag, text, "expected unix:/path or tcp:HOST:PORT");
}

/** Parses `--stdio`: `unix:/abs/dir` or `tcp:HOST`. */
export function parseStdioBase(text: string, flag = "--stdio"): StdioBase {
  if (text.startsWith("unix:")) {
    const dir = text.slice("unix:".length);
    if (!isAbsolute(dir)) badEndpoint(flag, text, "the directory must be absolute");
    return { kind: "unix", dir };
  }
  if (text.startsWith("tcp:")) return { kind: "tcp", host: tcpHost(flag, text, text.slice("tcp:".length)) };
  return badEndpoint(flag, text, "expected unix:/dir or tcp:HOST");
}

/** The address of vsock port `port` (u32). TCP cannot carry ports above 65535: INVALID_ARGUMENT. */
export function stdioEndpoint(base: StdioBase, port: number): Endpoint {
  if (base.kind === "unix") return { kind: "unix", path: join(base.dir, `${port}.sock`) };
  if (port < 1 || port > 65535) throw new GuestError("INVALID_ARGUMENT", `stdio port ${port} does not fit a TCP port (--stdio tcp:${base.host})`);
  return { kind: "tcp", host: base.host, port };
}

export function describeEndpoint(e: Endpoint): string {
  return e.kind === "unix" ? `unix:${e.path}` : `tcp:${e.host.includes(":") ? `[${e.host}]` : e.host}:${e.port}`;
}

/**
 * Dials `endpoint` once. The socket is paused before it connects: Node would otherwise start
 * reading as soon as it is connected, and bytes it read would never reach a child process that
 * is given the socket as a file descriptor.
 */
export function dial(endpoint: Endpoint): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = endpoint.kind === "unix" ? connect({ path: endpoint.path }) : connect({ host: endpoint.host, port: endpoint.port });
    socket.pause();
    const onError = (err: Error) => {
      socket.destroy();
      reject(err);
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      resolve(socket);
    });
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Dials `endpoint`, retrying every `intervalMs` while it fails, up to `attempts` tries (the
 * real guest retries a stdio dial 10 times, 100 ms apart) or until `signal` aborts. Rejects with
 * the last dial error.
 */
export async function dialWithRetry(endpoint: Endpoint, options: { attempts: number; intervalMs: number; signal?: AbortSignal }): Promise<Socket> {
  let last: unknown;
  for (let i = 0; i < options.attempts; i++) {
    if (options.signal?.aborted) break;
    if (i > 0) await sleep(options.intervalMs);
    try {
      return await dial(endpoint);
    } catch (err) {
      last = err;
    }
  }
  throw last ?? new GuestError("CLOSED", `dialing ${describeEndpoint(endpoint)}: aborted`);
}
