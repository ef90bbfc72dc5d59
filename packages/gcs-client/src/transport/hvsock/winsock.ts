// The Winsock calls an AF_HYPERV listener needs (ws2_32.dll, spec §1.2), bound with koffi.
//
// Sockets are non-blocking, and the only call that waits, WSAPoll, runs on a worker thread
// (`.async`) for all sockets at once (poller.ts). Blocking accept/recv calls on workers would
// each hold one of libuv's 4 pool threads for as long as the guest stays quiet: the bridge plus
// one process's stdout and stderr would leave one thread for every fs call and every async HCS
// call of the process, and a second process would deadlock it.
//
// Winsock keeps its error code per thread, so WSAGetLastError is only meaningful after a
// synchronous call; every call that can fail with an error we act on is synchronous.
import path from "node:path";
import { GcsError, type GcsErrorCode } from "../../errors.js";
import { AF_HYPERV, SOCKADDR_HV_SIZE } from "./sockaddr.js";
import { loadKoffi, type NativeFunction } from "./koffi.js";

export const SOCK_STREAM = 1;
/** `HV_PROTOCOL_RAW`, the only Hyper-V socket protocol. */
export const HV_PROTOCOL_RAW = 1;
export const SD_RECEIVE = 0;
export const SD_SEND = 1;
export const SD_BOTH = 2;
/** `_IOW('f', 126, u_long)`, sent as the signed 32-bit `long` of the Windows ABI. */
export const FIONBIO = 0x8004_667e | 0;
/** MAKEWORD(2, 2). */
export const WINSOCK_VERSION = 0x0202;
/** WSAPOLLFD events/revents; WSAPoll rejects POLLPRI and friends in `events` with WSAEINVAL. */
export const POLLRDNORM = 0x0100;
export const POLLWRNORM = 0x0010;
export const POLLERR = 0x0001;
export const POLLHUP = 0x0002;
export const POLLNVAL = 0x0004;

/** Winsock error numbers we name in messages or act on. */
export const WsaError = {
  WSAEINTR: 10004,
  WSAEACCES: 10013,
  WSAEFAULT: 10014,
  WSAEINVAL: 10022,
  WSAEMFILE: 10024,
  WSAEWOULDBLOCK: 10035,
  WSAENOTSOCK: 10038,
  WSAEPROTONOSUPPORT: 10043,
  WSAEAFNOSUPPORT: 10047,
  WSAEADDRINUSE: 10048,
  WSAEADDRNOTAVAIL: 10049,
  WSAENETDOWN: 10050,
  WSAECONNABORTED: 10053,
  WSAECONNRESET: 10054,
  WSAENOBUFS: 10055,
  WSAENOTCONN: 10057,
  WSAESHUTDOWN: 10058,
  WSAETIMEDOUT: 10060,
  WSANOTINITIALISED: 10093,
} as const;

const ERROR_NAMES = new Map<number, string>(Object.entries(WsaError).map(([k, v]) => [v, k]));

/** `WSAECONNRESET (10054)`. */
export function formatWsaError(code: number): string {
  return `${ERROR_NAMES.get(code) ?? "WSA error"} (${code})`;
}

/** SOCKET_ERROR and INVALID_SOCKET (declared as intptr_t, ~0 reads as -1). */
const SOCKET_ERROR = -1;
const INVALID_SOCKET = -1;

export interface WinsockOptions {
  /**
   * The Winsock library. If not provided: `%SystemRoot%\System32\ws2_32.dll` on Windows (an
   * absolute path, against DLL planting). Elsewhere it must be given: a library with the same
   * exports and ABI (the tests build one).
   */
  library?: string;
}

/** A socket handle (Windows `SOCKET`, a UINT_PTR). */
export type SocketHandle = number;

interface Functions {
  WSAStartup: NativeFunction;
  socket: NativeFunction;
  bind: NativeFunction;
  listen: NativeFunction;
  accept: NativeFunction;
  recv: NativeFunction;
  send: NativeFunction;
  shutdown: NativeFunction;
  closesocket: NativeFunction;
  ioctlsocket: NativeFunction;
  WSAPoll: NativeFunction;
  WSAGetLastError: NativeFunction;
}

const loaded = new Map<string, Winsock>();

/** The Winsock calls, with errors turned into GcsErrors that name the call and the WSA error. */
export class Winsock {
  readonly library: string;
  /** sizeof(WSAPOLLFD): SOCKET, SHORT events, SHORT revents, padded to the pointer size. */
  readonly pollFdSize: number;
  /** sizeof(SOCKET). */
  readonly socketSize: number;
  readonly #f: Functions;

  private constructor(library: string, functions: Functions, pointerSize: number) {
    this.library = library;
    this.#f = functions;
    this.socketSize = pointerSize;
    this.pollFdSize = pointerSize === 8 ? 16 : 8;
  }

  /** Loads (once per library path) and initialises Winsock 2.2 (WSAStartup must come first). */
  static load(options: WinsockOptions = {}): Winsock {
    const library = options.library ?? (process.platform === "win32" ? path.win32.join(process.env["SystemRoot"] ?? "C:\\Windows", "System32", "ws2_32.dll") : undefined);
    if (library === undefined) {
      throw new GcsError("UNSUPPORTED_PLATFORM", `Hyper-V sockets exist on Windows only (this is ${process.platform}); pass { library } to load a library with the Winsock ABI`);
    }
    const known = loaded.get(library);
    if (known) return known;
    const koffi = loadKoffi();
    let functions: Functions;
    try {
      const lib = koffi.load(library);
      // __stdcall is WINAPI on 32-bit x86; koffi ignores it elsewhere.
      functions = {
        WSAStartup: lib.func("int __stdcall WSAStartup(uint16_t wVersionRequested, void *lpWSAData)"),
        socket: lib.func("intptr_t __stdcall socket(int af, int type, int protocol)"),
        bind: lib.func("int __stdcall bind(intptr_t s, const void *name, int namelen)"),
        listen: lib.func("int __stdcall listen(intptr_t s, int backlog)"),
        accept: lib.func("intptr_t __stdcall accept(intptr_t s, void *addr, void *addrlen)"),
        recv: lib.func("int __stdcall recv(intptr_t s, void *buf, int len, int flags)"),
        send: lib.func("int __stdcall send(intptr_t s, const void *buf, int len, int flags)"),
        shutdown: lib.func("int __stdcall shutdown(intptr_t s, int how)"),
        closesocket: lib.func("int __stdcall closesocket(intptr_t s)"),
        ioctlsocket: lib.func("int __stdcall ioctlsocket(intptr_t s, int32_t cmd, void *argp)"),
        WSAPoll: lib.func("int __stdcall WSAPoll(void *fdArray, uint32_t fds, int timeout)"),
        WSAGetLastError: lib.func("int __stdcall WSAGetLastError(void)"),
      };
    } catch (err) {
      throw new GcsError("UNAVAILABLE", `cannot bind Winsock from ${library}: ${(err as Error).message}`, { cause: err });
    }
    // WSADATA is 408 bytes on 64-bit Windows; a larger buffer costs nothing.
    const rc = functions.WSAStartup(WINSOCK_VERSION, Buffer.alloc(512)) as number;
    if (rc !== 0) throw new GcsError("UNAVAILABLE", `WSAStartup(2.2) in ${library} failed with ${formatWsaError(rc)}`);
    const winsock = new Winsock(library, functions, koffi.sizeof("intptr_t"));
    loaded.set(library, winsock);
    return winsock;
  }

  #fail(call: string, code: GcsErrorCode = "UNAVAILABLE"): GcsError {
    const wsa = this.#f.WSAGetLastError() as number;
    return new GcsError(code, `${call} failed with ${formatWsaError(wsa)}`);
  }

  /** A Hyper-V stream socket, `socket(AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW)`. */
  socket(): SocketHandle {
    const s = this.#f.socket(AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW) as number;
    if (s === INVALID_SOCKET) throw this.#fail("socket(AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW)");
    return s;
  }

  setNonBlocking(s: SocketHandle): void {
    const on = Buffer.alloc(4);
    on.writeUInt32LE(1, 0);
    if ((this.#f.ioctlsocket(s, FIONBIO, on) as number) === SOCKET_ERROR) throw this.#fail("ioctlsocket(FIONBIO)");
  }

  bind(s: SocketHandle, address: Buffer, what: string): void {
    if (address.length !== SOCKADDR_HV_SIZE) throw new GcsError("INTERNAL", `SOCKADDR_HV must be ${SOCKADDR_HV_SIZE} bytes, got ${address.length}`);
    if ((this.#f.bind(s, address, address.length) as number) === SOCKET_ERROR) {
      const wsa = this.#f.WSAGetLastError() as number;
      throw new GcsError(wsa === WsaError.WSAEADDRINUSE ? "ALREADY_EXISTS" : "UNAVAILABLE", `bind(${what}) failed with ${formatWsaError(wsa)}`);
    }
  }

  listen(s: SocketHandle, backlog: number): void {
    if ((this.#f.listen(s, backlog) as number) === SOCKET_ERROR) throw this.#fail("listen");
  }

  /** The next pending connection, or undefined when there is none (WSAEWOULDBLOCK). */
  accept(s: SocketHandle): SocketHandle | undefined {
    const c = this.#f.accept(s, null, null) as number;
    if (c !== INVALID_SOCKET) return c;
    const wsa = this.#f.WSAGetLastError() as number;
    // A connection reset before we took it is gone; the caller just tries the next one.
    if (wsa === WsaError.WSAEWOULDBLOCK || wsa === WsaError.WSAECONNRESET) return undefined;
    throw new GcsError("UNAVAILABLE", `accept failed with ${formatWsaError(wsa)}`);
  }

  /** Bytes read into `buf` (0 at EOF), or undefined when none are ready (WSAEWOULDBLOCK). */
  recv(s: SocketHandle, buf: Buffer): number | undefined {
    const n = this.#f.recv(s, buf, buf.length, 0) as number;
    if (n !== SOCKET_ERROR) return n;
    const wsa = this.#f.WSAGetLastError() as number;
    if (wsa === WsaError.WSAEWOULDBLOCK) return undefined;
    throw new GcsError("CLOSED", `hvsock recv failed with ${formatWsaError(wsa)}`);
  }

  /** Bytes sent (maybe fewer than given), or undefined when the send buffer is full. */
  send(s: SocketHandle, buf: Buffer): number | undefined {
    const n = this.#f.send(s, buf, buf.length, 0) as number;
    if (n !== SOCKET_ERROR) return n;
    const wsa = this.#f.WSAGetLastError() as number;
    if (wsa === WsaError.WSAEWOULDBLOCK) return undefined;
    throw new GcsError("CLOSED", `hvsock send failed with ${formatWsaError(wsa)}`);
  }

  shutdown(s: SocketHandle, how: number): void {
    if ((this.#f.shutdown(s, how) as number) === SOCKET_ERROR) throw this.#fail(`shutdown(${how})`, "CLOSED");
  }

  /** closesocket; a failure leaves nothing to do, so it is not reported. */
  close(s: SocketHandle): void {
    this.#f.closesocket(s);
  }

  /**
   * WSAPoll on a worker thread. Resolves with its return value (-1 on failure: the error code
   * stays on the worker thread, so the poller retries the sockets synchronously to learn it).
   */
  poll(fds: Buffer, count: number, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#f.WSAPoll.async(fds, count, timeoutMs, (err: unknown, result: number) => (err ? reject(err) : resolve(result)));
    });
  }

  /** Writes one WSAPOLLFD entry. */
  writePollFd(fds: Buffer, index: number, s: SocketHandle, events: number): void {
    const at = index * this.pollFdSize;
    if (this.socketSize === 8) fds.writeBigInt64LE(BigInt(s), at);
    else fds.writeInt32LE(s, at);
    fds.writeInt16LE(events, at + this.socketSize); // events
    fds.writeInt16LE(0, at + this.socketSize + 2); // revents
  }

  /** Reads the revents of one WSAPOLLFD entry. */
  readRevents(fds: Buffer, index: number): number {
    return fds.readUInt16LE(index * this.pollFdSize + this.socketSize + 2);
  }
}
