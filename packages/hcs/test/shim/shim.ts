/**
 * Test harness for the Linux HCS shim (hcs-shim.c): compiles it with the system C
 * compiler into a fresh temp dir, and binds the test-only `Shim*` exports.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadKoffi, type KoffiFunction } from "../../src/native.js";

const SOURCE = path.join(path.dirname(fileURLToPath(import.meta.url)), "hcs-shim.c");

/** Paths of the shim variants. */
export interface ShimBuild {
  readonly dir: string;
  /** computecore.dll stand-in with every export. */
  readonly computecore: string;
  /** vmcompute.dll stand-in. */
  readonly vmcompute: string;
  /** computecore without `HcsGrantVmAccess`: a required export is missing, forcing the fallback. */
  readonly computecoreMissingRequired: string;
  /** computecore without the optional `HcsWaitFor*Exit` exports (pre-2022 hosts). */
  readonly computecoreNoOptional: string;
  /** Removes the temp dir. */
  dispose(): void;
}

function compile(dir: string, name: string, defines: string[]): string {
  const out = path.join(dir, name);
  // The same flags a release build would use; -Werror so the shim stays warning-free.
  execFileSync(process.env["CC"] ?? "cc", ["-shared", "-fPIC", "-pthread", "-fvisibility=hidden", "-O1", "-Wall", "-Wextra", "-Werror", ...defines, "-o", out, SOURCE], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  return out;
}

/** Compiles the four variants (about a second with gcc). */
export function buildShims(): ShimBuild {
  const dir = mkdtempSync(path.join(tmpdir(), "lcow-hcs-shim-"));
  return {
    dir,
    computecore: compile(dir, "libcomputecore.so", []),
    vmcompute: compile(dir, "libvmcompute.so", ["-DSHIM_V1"]),
    computecoreMissingRequired: compile(dir, "libcomputecore-missing-required.so", ["-DSHIM_OMIT_REQUIRED"]),
    computecoreNoOptional: compile(dir, "libcomputecore-no-optional.so", ["-DSHIM_OMIT_OPTIONAL"]),
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** What a test left behind; every field must be 0. */
export interface Leaks {
  readonly handles: number;
  readonly allocations: number;
  readonly badFrees: number;
}

/** Controls one loaded shim library (its state is per .so, shared with the binding under test). */
export class Shim {
  readonly #f: Record<string, KoffiFunction>;

  constructor(libraryPath: string) {
    const koffi = loadKoffi();
    const lib = koffi.load(libraryPath);
    this.#f = {
      ShimLiveHandles: lib.func("int32 ShimLiveHandles(void)"),
      ShimLiveAllocations: lib.func("int32 ShimLiveAllocations(void)"),
      ShimBadFrees: lib.func("int32 ShimBadFrees(void)"),
      ShimPendingWork: lib.func("int32 ShimPendingWork(void)"),
      ShimSetDelay: lib.func("void ShimSetDelay(uint32 ms)"),
      ShimSetSchemaVersion: lib.func("void ShimSetSchemaVersion(int32 major, int32 minor)"),
      ShimLastDocument: lib.func("const char *ShimLastDocument(void)"),
      ShimCallCount: lib.func("int32 ShimCallCount(const char *name)"),
      ShimFailNext: lib.func("void ShimFailNext(const char *name, int32 hr, int32 async)"),
      ShimAttachmentCount: lib.func("int32 ShimAttachmentCount(const char *id)"),
      ShimExitSystem: lib.func("int32 ShimExitSystem(const char *id, int32 status, const char *exitType)"),
      ShimServiceDisconnect: lib.func("void ShimServiceDisconnect(void)"),
      ShimReset: lib.func("int32 ShimReset(void)"),
      ShimForceCloseAll: lib.func("int32 ShimForceCloseAll(void)"),
    };
  }

  #call<T>(name: string, ...args: unknown[]): T {
    const fn = this.#f[name];
    if (!fn) throw new Error(`no shim function ${name}`);
    return fn(...args) as T;
  }

  liveHandles(): number {
    return this.#call("ShimLiveHandles");
  }
  liveAllocations(): number {
    return this.#call("ShimLiveAllocations");
  }
  badFrees(): number {
    return this.#call("ShimBadFrees");
  }
  pendingWork(): number {
    return this.#call("ShimPendingWork");
  }
  /** Latency of asynchronous completions (default 5 ms after reset). */
  setDelay(ms: number): void {
    this.#call("ShimSetDelay", ms);
  }
  setSchemaVersion(major: number, minor: number): void {
    this.#call("ShimSetSchemaVersion", major, minor);
  }
  /** The last create/modify document the shim received (UTF-8). */
  lastDocument(): string {
    return this.#call("ShimLastDocument");
  }
  callCount(name: string): number {
    return this.#call("ShimCallCount", name);
  }
  /** Fails the next call of `name` with `hr` (`async`: its completion instead of the call). */
  failNext(name: string, hr: number, async = false): void {
    this.#call("ShimFailNext", name, hr | 0, async ? 1 : 0);
  }
  /** SCSI attachments plus v1 mapped disks of a system, -1 when unknown. */
  attachmentCount(id: string): number {
    return this.#call("ShimAttachmentCount", id);
  }
  /** Makes the system exit from a shim thread (as a crash would). */
  exitSystem(id: string, status: number, exitType: string): void {
    const rc = this.#call<number>("ShimExitSystem", id, status | 0, exitType);
    if (rc !== 0) throw new Error(`shim: no system ${id}`);
  }
  serviceDisconnect(): void {
    this.#call("ShimServiceDisconnect");
  }

  /** Waits (letting the event loop run, so queued callbacks can be delivered) until no shim thread runs. */
  async quiesce(timeoutMs = 5000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.pendingWork() > 0) {
      if (Date.now() > end) throw new Error(`shim still has ${this.pendingWork()} threads running`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Reports leaks, then force-closes whatever leaked and resets the shim for the next test. */
  async finish(): Promise<Leaks> {
    await this.quiesce();
    const leaks = { handles: this.liveHandles(), allocations: this.liveAllocations(), badFrees: this.badFrees() };
    this.#call("ShimForceCloseAll");
    const busy = this.#call<number>("ShimReset");
    if (busy !== 0) throw new Error(`shim reset refused: ${busy} threads running`);
    return leaks;
  }
}
