// A process in the guest and its stdio channels (spec §1.4, §4.3, §4.4). Each requested stream
// is its own connection that the guest dials to a port we listen on; there is no framing on
// them and no bridge message for stdin EOF: a half-close is the EOF.
import { PassThrough, type Duplex, type Readable, type Writable } from "node:stream";
import { GcsError, toGcsError } from "./errors.js";
import { NULL_CONTAINER_ID } from "./protocol/constants.js";
import { executeProcessRequest, type ProcessParameters, type VsockStdioRelaySettings } from "./protocol/messages.js";
import { Deadline, checkTimeout } from "./bridge-timeout.js";
import type { ChannelListener, HostTransport } from "./transport/types.js";

/** Options of GcsBridge.executeProcess(). */
export interface ExecuteProcessOptions {
  /** Open a stdin pipe. If not provided, `params.CreateStdInPipe`. */
  stdin?: boolean;
  /** Open a stdout pipe. If not provided, `params.CreateStdOutPipe`. */
  stdout?: boolean;
  /** Open a stderr pipe (ignored by the guest for EmulateConsole). If not provided, `params.CreateStdErrPipe`. */
  stderr?: boolean;
  /** The container to run in. If not provided, the UVM itself (the null GUID). */
  containerId?: string;
  /**
   * Timeout of the ExecuteProcess RPC, and of the stdio accepts that follow its answer, in ms.
   * If not provided, the bridge's RPC timeout.
   */
  timeoutMs?: number;
  /** Timeout of the WaitForProcess sent after the start. If not provided, the bridge's waitTimeoutMs. */
  waitTimeoutMs?: number;
  /** Stops waiting for ExecuteProcess (CANCELLED); the listeners are closed. */
  signal?: AbortSignal;
}

/** Options of GuestProcess.finish(). */
export interface FinishOptions {
  /**
   * After the exit, how long stdout/stderr may take to reach EOF (ms) before they are closed
   * anyway: a daemon the process started can hold them open for ever. If not provided, 1000,
   * what hcsshim's shims use (`CopyAfterExitTimeout`).
   */
  drainTimeoutMs?: number;
}

type StreamName = "stdin" | "stdout" | "stderr";
const STREAMS: readonly StreamName[] = ["stdin", "stdout", "stderr"];
const RELAY_FIELD = { stdin: "StdIn", stdout: "StdOut", stderr: "StdErr" } as const;

/** @internal What startProcess needs from the bridge. */
export interface ProcessContext {
  readonly transport: HostTransport | undefined;
  allocatePort(): number;
  execute(body: unknown, options: { timeoutMs?: number; signal?: AbortSignal }): Promise<Record<string, unknown>>;
  wait(pid: number, options: { timeoutMs?: number; containerId?: string; onLateExit?: (code: number) => void }): Promise<number>;
  readonly defaultTimeoutMs: number;
}

/**
 * A running guest process. `wait()` resolves with its exit code (WaitForProcess was sent when
 * the pid arrived); the stdio streams are plain Node streams:
 * - `stdin.end()` half-closes the channel, which the process reads as EOF;
 * - `stdout`/`stderr` end at the guest's EOF, after which we close our side, which the guest's
 *   relay waits for. Read them (or close()) or a chatty process blocks on a full pipe.
 * Errors on the streams (a reset when the VM dies) are kept, never thrown: see `streamErrors`.
 */
export class GuestProcess {
  readonly pid: number;
  /** The stdin channel itself; end() half-closes it. */
  readonly stdin: Writable | null;
  /** stdout as read from its channel; ends after the guest's EOF, once read. */
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /** Stream errors seen so far (EPIPE on stdin after the exit, resets), in order. */
  readonly streamErrors: Error[] = [];
  /** The channels and what wraps them, for close(). */
  readonly #streams: Array<Duplex | PassThrough>;
  readonly #exit: Promise<number>;
  #exitCode: number | undefined;
  #closing: Promise<void> | undefined;

  /** @internal Made by GcsBridge.executeProcess(). */
  constructor(pid: number, channels: Partial<Record<StreamName, Duplex>>, exit: Promise<number>) {
    this.pid = pid;
    const record = (err: Error): void => {
      this.streamErrors.push(err);
    };
    this.#streams = STREAMS.flatMap((name) => (channels[name] ? [channels[name]] : []));
    for (const channel of this.#streams) channel.on("error", record);
    this.stdin = channels.stdin ?? null;
    const stdout = channels.stdout ? relay(channels.stdout) : null;
    const stderr = channels.stderr ? relay(channels.stderr) : null;
    this.stdout = stdout;
    this.stderr = stderr;
    for (const wrapper of [stdout, stderr]) if (wrapper) this.#streams.push(wrapper);
    this.#exit = exit.then((code) => (this.#exitCode = code));
    // wait() may never be called; a failed wait must not become an unhandled rejection.
    this.#exit.catch(() => {});
  }

  /** The exit code once known (also when it came after a wait() that timed out). */
  get exitCode(): number | undefined {
    return this.#exitCode;
  }

  /** @internal The exit code of a WaitForProcess answer that came after wait() timed out. */
  recordLateExit(code: number): void {
    this.#exitCode ??= code;
  }

  /**
   * The exit code (u32; 4294967295 when a signal killed it). Rejects with TIMEOUT when the
   * bridge's waitTimeoutMs passes, NOT_FOUND if the guest no longer knows the pid, CLOSED if the
   * bridge goes down first. Every call returns the same outcome.
   */
  wait(): Promise<number> {
    return this.#exit;
  }

  /**
   * Waits for the exit, then for EOF on stdout/stderr (bounded by `drainTimeoutMs`), then closes
   * all streams: the order hcsshim's cmd package uses (§4.3). Resolves with the exit code; the
   * streams are closed even when the wait fails.
   */
  async finish(options: FinishOptions = {}): Promise<number> {
    const drainTimeoutMs = checkTimeout(options.drainTimeoutMs ?? 1000, "drainTimeoutMs");
    try {
      const code = await this.#exit;
      const deadline = new Deadline(drainTimeoutMs);
      const ends = [this.stdout, this.stderr].filter((s): s is Readable => s !== null).map(ended);
      await deadline.race(Promise.all(ends), () => new GcsError("TIMEOUT", "drain")).catch(() => {});
      deadline.clear();
      return code;
    } finally {
      await this.close();
    }
  }

  /** Destroys every stdio stream (the process keeps running). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= Promise.all(
      this.#streams.map(
        (stream) =>
          new Promise<void>((resolve) => {
            if (stream.closed || stream.destroyed) return resolve();
            stream.once("close", () => resolve());
            stream.destroy();
          }),
      ),
    ).then(() => {});
    return this.#closing;
  }
}

/**
 * What the caller reads of a stdout/stderr channel. A socket that reads EOF while nobody reads
 * it emits 'end' at once (net.Socket calls read(0) at EOF), so a process that exits before the
 * caller attached a listener would look like it never ends; the PassThrough holds the data and
 * the end until they are read. After the channel's EOF we close it: the guest's relay waits for
 * that (§4.3). A channel error destroys the wrapper with it, so a reader learns of it.
 */
function relay(channel: Duplex): PassThrough {
  const out = new PassThrough();
  out.on("error", () => {}); // recorded once, on the channel
  channel.once("end", () => channel.destroy());
  channel.once("error", (err) => out.destroy(err));
  if (channel.readableEnded) {
    // EOF came while the process was starting: there was no data, or it would still be buffered.
    out.end();
    channel.destroy();
  } else {
    channel.pipe(out);
  }
  return out;
}

/** Settles when a readable ended or was closed (never rejects). */
function ended(stream: Readable): Promise<void> {
  if (stream.readableEnded || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once("end", resolve);
    stream.once("close", resolve);
  });
}

/** @internal The stdio choreography of ExecuteProcess; see GcsBridge.executeProcess(). */
export async function startProcess(ctx: ProcessContext, params: ProcessParameters, options: ExecuteProcessOptions): Promise<GuestProcess> {
  const want: Record<StreamName, boolean> = {
    stdin: options.stdin ?? params.CreateStdInPipe ?? false,
    stdout: options.stdout ?? params.CreateStdOutPipe ?? false,
    stderr: options.stderr ?? params.CreateStdErrPipe ?? false,
  };
  const names = STREAMS.filter((name) => want[name]);
  const transport = ctx.transport;
  if (names.length > 0 && !transport) {
    throw new GcsError("INVALID_ARGUMENT", `ExecuteProcess: ${names.join(", ")} requested but the bridge has no transport to open stdio channels on`);
  }
  const timeoutMs = checkTimeout(options.timeoutMs ?? ctx.defaultTimeoutMs, "timeoutMs");
  const containerId = options.containerId ?? NULL_CONTAINER_ID;
  const listeners: Partial<Record<StreamName, ChannelListener>> = {};
  const accepted: Partial<Record<StreamName, Duplex>> = {};
  const stopAccepting = new AbortController();
  let failed = false;
  try {
    // Listen before sending: the guest dials while handling the request (§1.4).
    for (const name of names) listeners[name] = await transport!.listen(ctx.allocatePort());
    const accepts = names.map((name) =>
      listeners[name]!.accept({ signal: stopAccepting.signal }).then((stream) => {
        // An accept that completes after a failure must not leak the connection.
        if (failed) stream.destroy();
        else accepted[name] = stream;
      }),
    );
    const allAccepted = Promise.all(accepts);
    allAccepted.catch(() => {});
    const ports: VsockStdioRelaySettings = {};
    for (const name of names) ports[RELAY_FIELD[name]] = listeners[name]!.port;
    const request = executeProcessRequest(
      { ...params, CreateStdInPipe: want.stdin, CreateStdOutPipe: want.stdout, CreateStdErrPipe: want.stderr },
      ports,
      containerId,
    );
    const payload = await ctx.execute(request, { timeoutMs, ...(options.signal ? { signal: options.signal } : {}) });
    const pid = payload["ProcessId"];
    if (typeof pid !== "number" || !Number.isInteger(pid) || pid < 0 || pid > 0xffff_ffff) {
      throw new GcsError("PROTOCOL", `ExecuteProcess: ProcessId ${JSON.stringify(pid)} is not a u32`, { operation: "ExecuteProcess" });
    }
    // The guest dialled every port before it answered, but the connections may still be on
    // their way through our event loop.
    const deadline = new Deadline(timeoutMs);
    try {
      await deadline.race(allAccepted, () => {
        const missing = names.filter((name) => !accepted[name]).map((name) => `${name} (port ${listeners[name]!.port})`);
        return new GcsError("TIMEOUT", `ExecuteProcess: pid ${pid} started but the guest never connected ${missing.join(", ")} within ${timeoutMs} ms`, { operation: "ExecuteProcess" });
      });
    } finally {
      deadline.clear();
    }
    let exitSeen: ((code: number) => void) | undefined;
    const exit = ctx.wait(pid, {
      containerId,
      ...(options.waitTimeoutMs !== undefined ? { timeoutMs: options.waitTimeoutMs } : {}),
      onLateExit: (code) => exitSeen?.(code),
    });
    const handle = new GuestProcess(pid, accepted, exit);
    exitSeen = (code) => handle.recordLateExit(code);
    return handle;
  } catch (err) {
    failed = true;
    stopAccepting.abort();
    for (const stream of Object.values(accepted)) stream.destroy();
    throw toGcsError(err, "ExecuteProcess");
  } finally {
    // One accept per listener: close them all, used or not (hcsshim closes each after its accept).
    await Promise.all(Object.values(listeners).map((listener) => listener.close().catch(() => {})));
  }
}
