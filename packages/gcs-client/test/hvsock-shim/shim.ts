// Test harness for winsock-shim.c: compiles it with the system C compiler into a fresh temp
// folder (as packages/hcs/test/shim does for its HCS shim) and binds its test-only exports.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const SOURCE = path.join(path.dirname(fileURLToPath(import.meta.url)), "winsock-shim.c");

interface NativeFunction {
  (...args: unknown[]): unknown;
}
interface Koffi {
  load(path: string): { func(signature: string): NativeFunction };
}

export class WinsockShim {
  /** The compiled library, to pass as `library` to HvsockTransport. */
  readonly library: string;
  /** Where bound listeners appear as `<vmId>_<serviceId>.sock` (LCOW_HVSOCK_SHIM_DIR). */
  readonly socketDir: string;
  readonly #dir: string;
  readonly #f: Record<string, NativeFunction>;

  private constructor(dir: string, library: string, socketDir: string, f: Record<string, NativeFunction>) {
    this.#dir = dir;
    this.library = library;
    this.socketDir = socketDir;
    this.#f = f;
  }

  /** Compiles the shim (well under a second with gcc) and points it at a fresh socket folder. */
  static build(): WinsockShim {
    // Short: the socket path holds two GUIDs and must stay under 108 bytes.
    const dir = mkdtempSync(path.join(tmpdir(), "ws-"));
    const library = path.join(dir, "ws2_32.so");
    execFileSync(process.env["CC"] ?? "cc", ["-shared", "-fPIC", "-pthread", "-fvisibility=hidden", "-O1", "-Wall", "-Wextra", "-Werror", "-o", library, SOURCE], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    // The shim reads it at bind time; one directory for the whole test file.
    process.env["LCOW_HVSOCK_SHIM_DIR"] = dir;
    const koffi = createRequire(import.meta.url)("koffi") as Koffi;
    const lib = koffi.load(library);
    const f = {
      ShimLastBind: lib.func("int ShimLastBind(_Out_ uint8_t *out)"),
      ShimLastSocketArgs: lib.func("void ShimLastSocketArgs(_Out_ int32_t *out)"),
      ShimLastBacklog: lib.func("int ShimLastBacklog(void)"),
      ShimShutdownCount: lib.func("int ShimShutdownCount(int how)"),
      ShimCallCount: lib.func("int ShimCallCount(const char *name)"),
      ShimLiveSockets: lib.func("int ShimLiveSockets(void)"),
      ShimBlockingCalls: lib.func("int ShimBlockingCalls(void)"),
      ShimPollsOnStartupThread: lib.func("int ShimPollsOnStartupThread(void)"),
    };
    return new WinsockShim(dir, library, dir, f);
  }

  /** The SOCKADDR_HV bytes of the last bind() and the namelen it was given. */
  lastBind(): { bytes: Buffer; length: number } {
    const bytes = Buffer.alloc(36);
    const length = this.#f["ShimLastBind"]!(bytes) as number;
    return { bytes, length };
  }

  lastSocketArgs(): { af: number; type: number; protocol: number } {
    const out = new Int32Array(3);
    this.#f["ShimLastSocketArgs"]!(out);
    return { af: out[0]!, type: out[1]!, protocol: out[2]! };
  }

  lastBacklog(): number {
    return this.#f["ShimLastBacklog"]!() as number;
  }

  shutdownCount(how: number): number {
    return this.#f["ShimShutdownCount"]!(how) as number;
  }

  callCount(name: string): number {
    return this.#f["ShimCallCount"]!(name) as number;
  }

  liveSockets(): number {
    return this.#f["ShimLiveSockets"]!() as number;
  }

  blockingCalls(): number {
    return this.#f["ShimBlockingCalls"]!() as number;
  }

  pollsOnStartupThread(): number {
    return this.#f["ShimPollsOnStartupThread"]!() as number;
  }

  /** The unix socket a guest dials to reach `{vmId, serviceId}`. */
  pathOf(vmId: string, serviceId: string): string {
    return path.join(this.socketDir, `${vmId.toLowerCase()}_${serviceId.toLowerCase()}.sock`);
  }

  dispose(): void {
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
