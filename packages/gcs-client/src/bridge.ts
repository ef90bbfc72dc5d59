// The host side of the GCS bridge (spec §1.3, §2, §4): one duplex byte stream, frames written
// through one queue, responses matched to requests by id in any order, container notifications
// passed on as events. The guest is the RPC server; we only ever send requests.
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { rpcFailure } from "./bridge-errors.js";
import { GcsError, toGcsError } from "./errors.js";
import { FIRST_STDIO_VSOCK_PORT, NULL_CONTAINER_ID, PROTOCOL_VERSION } from "./protocol/constants.js";
import { DEFAULT_MAX_MESSAGE_SIZE, encodeFrame, FrameDecoder, parsePayload, type Frame } from "./protocol/frame.js";
import { Hresult } from "./protocol/hresult.js";
import {
  baseRequest,
  combinedLayers,
  mappedVirtualDisk,
  modifySettingsRequest,
  negotiateProtocolRequest,
  scsiDevice,
  waitForProcessRequest,
  type CombinedLayers,
  type ContainerNotification,
  type GcsCapabilities,
  type MappedVirtualDisk,
  type ModificationRequest,
  type ProcessParameters,
  type ScsiDevice,
} from "./protocol/messages.js";
import { CONTAINER_NOTIFICATION, MessageKind, kindOf, requestType, Rpc, rpcName, rpcOf } from "./protocol/message-type.js";
import { startProcess, type ExecuteProcessOptions, type GuestProcess } from "./process.js";

export type { GuestProcess, ExecuteProcessOptions } from "./process.js";
import type { HostTransport } from "./transport/types.js";
import { Deadline, checkTimeout } from "./bridge-timeout.js";

/** hcsshim's per-RPC limit (`bridgeFailureTimeout`): 5 minutes. */
export const DEFAULT_RPC_TIMEOUT_MS = 5 * 60_000;
/** How long shutdown() waits for the guest to drop the bridge after the request. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;

export interface GcsBridgeOptions {
  /**
   * Where stdio channels are opened (the guest dials them). Needed by executeProcess() when a
   * pipe is requested. If not provided, processes can only run without stdio.
   */
  transport?: HostTransport;
  /**
   * Default timeout of every RPC in ms (`Infinity` for none). A timed-out RPC rejects with
   * TIMEOUT, the bridge stays up, and the guest's late answer is dropped (spec §4.1); hcsshim
   * instead kills the bridge, which we leave to the caller. If not provided, 5 minutes.
   */
  timeoutMs?: number;
  /** Default timeout of WaitForProcess in ms. If not provided, none: a process may run for ever. */
  waitTimeoutMs?: number;
  /**
   * Largest frame accepted from the guest, and sent, in bytes, header included. A larger
   * incoming Size tears the bridge down. If not provided, DEFAULT_MAX_MESSAGE_SIZE (1 MiB):
   * hcsshim's 64 KiB is too small for DumpStacks of a busy guest, and the guest has no limit,
   * so a corrupt Size must not make us buffer gigabytes.
   */
  maxMessageSize?: number;
  /** How long shutdown() waits for the bridge to close. If not provided, 30 s. */
  shutdownTimeoutMs?: number;
}

/** Per-call options of every RPC. */
export interface RpcOptions {
  /** Overrides the bridge's timeout for this call (`Infinity` for none). */
  timeoutMs?: number;
  /** Stops waiting (CANCELLED) when aborted; the request stays registered, its answer is dropped. */
  signal?: AbortSignal;
}

/** The outcome of negotiate(). */
export interface NegotiateResult {
  /** Always 4. */
  version: number;
  capabilities: GcsCapabilities;
}

export interface GcsBridgeEvents {
  /** A container notification (`0x30100101`); container ids unknown to the caller are normal. */
  notification: [notification: ContainerNotification];
  /** The bridge is down; `reason` is CLOSED (EOF, close(), a stream error) or PROTOCOL. Emitted once. */
  close: [reason: GcsError];
}

/** @internal What a request in flight needs when its answer (or the end) comes. */
interface Pending {
  readonly name: string;
  readonly rpc: number;
  /** Undefined once the caller stopped waiting: the answer is then dropped. */
  settle: ((err: GcsError | undefined, payload: Record<string, unknown>) => void) | undefined;
  /** Told about an answer that came after the caller stopped waiting. */
  readonly onLate: ((payload: Record<string, unknown>) => void) | undefined;
}

/** @internal Per-call knobs beyond RpcOptions. */
interface CallOptions extends RpcOptions {
  onLate?: (payload: Record<string, unknown>) => void;
}

interface QueuedWrite {
  readonly frame: Buffer;
  readonly done: (err?: GcsError) => void;
}

/**
 * A connection to a guest's GCS over `stream` (the accepted bridge channel). Reading starts at
 * once; call negotiate() before anything else. The bridge never throws from stream events and
 * never leaves a promise unsettled when it goes down: every pending RPC fails with CLOSED or
 * PROTOCOL, keeping the cause.
 */
export class GcsBridge extends EventEmitter<GcsBridgeEvents> {
  readonly maxMessageSize: number;
  readonly #stream: Duplex;
  readonly #transport: HostTransport | undefined;
  readonly #timeoutMs: number;
  readonly #waitTimeoutMs: number;
  readonly #shutdownTimeoutMs: number;
  readonly #decoder: FrameDecoder;
  readonly #pending = new Map<bigint, Pending>();
  readonly #writes: QueuedWrite[] = [];
  #writeBlocked = false;
  #nextId = 0n;
  #nextPort = FIRST_STDIO_VSOCK_PORT;
  #closed: GcsError | undefined;
  #shutdownSent: string | undefined;
  #capabilities: GcsCapabilities | undefined;
  #version: number | undefined;
  readonly #closedPromise: Promise<GcsError>;
  #resolveClosed!: (reason: GcsError) => void;

  constructor(stream: Duplex, options: GcsBridgeOptions = {}) {
    super();
    this.#timeoutMs = checkTimeout(options.timeoutMs ?? DEFAULT_RPC_TIMEOUT_MS, "timeoutMs");
    this.#waitTimeoutMs = checkTimeout(options.waitTimeoutMs ?? Infinity, "waitTimeoutMs");
    this.#shutdownTimeoutMs = checkTimeout(options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS, "shutdownTimeoutMs");
    this.#decoder = new FrameDecoder({ maxMessageSize: options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE });
    this.maxMessageSize = this.#decoder.maxMessageSize;
    this.#stream = stream;
    this.#transport = options.transport;
    this.#closedPromise = new Promise((resolve) => (this.#resolveClosed = resolve));
    stream.on("data", (chunk: Buffer | string) => this.#onData(typeof chunk === "string" ? Buffer.from(chunk) : chunk));
    stream.on("end", () => this.#onEnd());
    stream.on("error", (err) => this.#teardown(new GcsError("CLOSED", `bridge stream failed: ${err.message}`, { cause: err })));
    stream.on("close", () => this.#teardown(new GcsError("CLOSED", "bridge stream closed")));
    // A socket that read EOF before we listened has already emitted 'end'.
    if (stream.destroyed || stream.readableEnded) this.#teardown(new GcsError("CLOSED", "the bridge stream had already ended"));
  }

  /** Capabilities from negotiate(), undefined before. */
  get capabilities(): GcsCapabilities | undefined {
    return this.#capabilities;
  }

  /** The negotiated protocol version (4), undefined before negotiate(). */
  get protocolVersion(): number | undefined {
    return this.#version;
  }

  /** Why the bridge is down, or undefined while it is up. */
  get closeReason(): GcsError | undefined {
    return this.#closed;
  }

  /** Settles (never rejects) with the reason once the bridge is down. */
  get closed(): Promise<GcsError> {
    return this.#closedPromise;
  }

  /** Requests in flight, including abandoned ones whose answer is still awaited to be dropped. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * NegotiateProtocol with min = max = 4 (spec §3.1). Fails with UNSUPPORTED_VERSION unless the
   * guest picks version 4 and says it is a Linux GCS. Must come first on every connection.
   */
  async negotiate(options: RpcOptions = {}): Promise<NegotiateResult> {
    const payload = await this.#call(Rpc.NegotiateProtocol, negotiateProtocolRequest(PROTOCOL_VERSION, PROTOCOL_VERSION), options);
    const version = payload["Version"];
    if (version !== PROTOCOL_VERSION) {
      throw new GcsError("UNSUPPORTED_VERSION", `NegotiateProtocol: the guest chose version ${JSON.stringify(version)}; only ${PROTOCOL_VERSION} is supported`, { operation: "NegotiateProtocol" });
    }
    const capabilities = payload["Capabilities"];
    if (typeof capabilities !== "object" || capabilities === null || Array.isArray(capabilities)) {
      throw new GcsError("PROTOCOL", "NegotiateProtocol: the response has no Capabilities object", { operation: "NegotiateProtocol" });
    }
    const os = (capabilities as GcsCapabilities).RuntimeOsType;
    // hcsshim lower-cases RuntimeOsType; an absent one means a Windows GCS.
    if (typeof os !== "string" || os.toLowerCase() !== "linux") {
      throw new GcsError("UNSUPPORTED_VERSION", `NegotiateProtocol: the guest is a ${JSON.stringify(os ?? "Windows")} GCS, not a Linux one`, { operation: "NegotiateProtocol" });
    }
    this.#version = version;
    this.#capabilities = capabilities as GcsCapabilities;
    return { version, capabilities: this.#capabilities };
  }

  /** ModifySettings (spec §3.7) of a UVM-level resource, or of `containerId`'s. */
  async modifySettings<S>(request: ModificationRequest<S>, options: RpcOptions & { containerId?: string } = {}): Promise<void> {
    await this.#call(Rpc.ModifySettings, modifySettingsRequest(request, options.containerId ?? NULL_CONTAINER_ID), options);
  }

  /** Mounts (or, without MountPath, only attaches) a SCSI disk the host side already attached (§3.7.1). */
  addMappedVirtualDisk(disk: MappedVirtualDisk, options?: RpcOptions): Promise<void> {
    return this.modifySettings({ ResourceType: "MappedVirtualDisk", RequestType: "Add", Settings: mappedVirtualDisk(disk) }, options);
  }

  /** Unmounts a disk; send the same fields as the Add. It stays plugged: follow with removeScsiDevice(). */
  removeMappedVirtualDisk(disk: MappedVirtualDisk, options?: RpcOptions): Promise<void> {
    return this.modifySettings({ ResourceType: "MappedVirtualDisk", RequestType: "Remove", Settings: mappedVirtualDisk(disk) }, options);
  }

  /** The guest-side unplug of a SCSI device (§3.7.2), before the host side detaches it. */
  removeScsiDevice(device: ScsiDevice, options?: RpcOptions): Promise<void> {
    return this.modifySettings({ ResourceType: "SCSIDevice", RequestType: "Remove", Settings: scsiDevice(device) }, options);
  }

  /** Overlays `Layers` (top-most first) at ContainerRootPath, writable when ScratchPath is set (§3.7.3). */
  addCombinedLayers(layers: CombinedLayers, options?: RpcOptions): Promise<void> {
    return this.modifySettings({ ResourceType: "CombinedLayers", RequestType: "Add", Settings: combinedLayers(layers) }, options);
  }

  /** Unmounts an overlay; only ContainerRootPath is sent, as hcsshim does. */
  removeCombinedLayers(containerRootPath: string, options?: RpcOptions): Promise<void> {
    return this.modifySettings({ ResourceType: "CombinedLayers", RequestType: "Remove", Settings: combinedLayers({ ContainerRootPath: containerRootPath }) }, options);
  }

  /**
   * Runs a process (spec §3.3, §4.3): listens on a fresh port per requested stream, sends
   * ExecuteProcess, accepts the guest's dials while awaiting the answer, then sends
   * WaitForProcess at once. Which pipes are opened: `options.stdin/stdout/stderr`, else the
   * `Create*Pipe` flags of `params`. The handle owns the streams: see GuestProcess.
   */
  executeProcess(params: ProcessParameters, options: ExecuteProcessOptions = {}): Promise<GuestProcess> {
    return startProcess(
      {
        transport: this.#transport,
        allocatePort: () => this.#allocatePort(),
        execute: (body, rpcOptions) => this.#call(Rpc.ExecuteProcess, body, rpcOptions),
        wait: (pid, waitOptions) => this.#waitForProcess(pid, waitOptions),
        defaultTimeoutMs: this.#timeoutMs,
      },
      params,
      options,
    );
  }

  /**
   * WaitForProcess (spec §3.4): the exit code once `processId` exits. Only the first wait of a
   * UVM process succeeds; later ones fail with NOT_FOUND. executeProcess() already sends one:
   * use GuestProcess.wait() for its processes.
   */
  waitForProcess(processId: number, options: RpcOptions & { containerId?: string } = {}): Promise<number> {
    return this.#waitForProcess(processId, options);
  }

  /**
   * ShutdownForced or ShutdownGraceful of the UVM. The guest never answers: it powers off, so
   * this resolves when the bridge closes (every other pending RPC then fails with CLOSED) and
   * rejects with TIMEOUT if it stays up `timeoutMs` (default: the bridge's shutdownTimeoutMs).
   */
  async shutdown(forced = false, options: { timeoutMs?: number } = {}): Promise<void> {
    const rpc = forced ? Rpc.ShutdownForced : Rpc.ShutdownGraceful;
    const name = rpcName(rpc);
    const timeoutMs = checkTimeout(options.timeoutMs ?? this.#shutdownTimeoutMs, "timeoutMs");
    if (this.#closed) throw this.#failureFor(name, this.#closed);
    const frame = this.#encode(rpc, baseRequest(NULL_CONTAINER_ID));
    const id = this.#nextId++;
    frame.writeBigUInt64LE(id, 8);
    // Registered as already abandoned: an answer is not expected, but one is not a protocol error.
    this.#pending.set(id, { name, rpc, settle: undefined, onLate: undefined });
    this.#shutdownSent ??= name;
    this.#enqueue(frame).catch(() => {});
    const deadline = new Deadline(timeoutMs);
    try {
      await deadline.race(this.#closedPromise, () => new GcsError("TIMEOUT", `${name}: the guest did not close the bridge within ${timeoutMs} ms`, { operation: name }));
    } finally {
      deadline.clear();
    }
  }

  /** DumpStacks (spec §3.9): the guest's goroutine stacks as text. */
  async dumpStacks(options?: RpcOptions): Promise<string> {
    const payload = await this.#call(Rpc.DumpStacks, baseRequest(NULL_CONTAINER_ID), options);
    const stacks = payload["GuestStacks"] ?? "";
    if (typeof stacks !== "string") throw new GcsError("PROTOCOL", "DumpStacks: GuestStacks is not a string", { operation: "DumpStacks" });
    return stacks;
  }

  /**
   * Sends any request and resolves with the response payload (Result 0), for RPCs without a
   * method here (SignalProcess, GetProperties, ...). `body` is serialised with JSON.stringify.
   */
  request(rpc: number, body: object, options?: RpcOptions): Promise<Record<string, unknown>> {
    return this.#call(rpc, body, options);
  }

  /** Tears the bridge down: pending RPCs fail with CLOSED, the stream is destroyed. Idempotent. */
  async close(): Promise<void> {
    this.#teardown(new GcsError("CLOSED", "bridge closed by the host"));
  }

  // ---- sending ----

  #allocatePort(): number {
    // One new port per stream, never reused on this bridge (spec §1.4).
    return this.#nextPort++;
  }

  async #waitForProcess(processId: number, options: RpcOptions & { containerId?: string; onLateExit?: (code: number) => void }): Promise<number> {
    if (!Number.isInteger(processId) || processId < 0 || processId > 0xffff_ffff) {
      throw new GcsError("INVALID_ARGUMENT", `WaitForProcess: processId must be a u32, got ${processId}`);
    }
    const { onLateExit } = options;
    const payload = await this.#call(Rpc.WaitForProcess, waitForProcessRequest(processId, undefined, options.containerId ?? NULL_CONTAINER_ID), {
      timeoutMs: options.timeoutMs ?? this.#waitTimeoutMs,
      ...(options.signal ? { signal: options.signal } : {}),
      // An exit that comes after the caller's timeout is still worth recording on the handle.
      ...(onLateExit ? { onLate: (late: Record<string, unknown>) => onLateExit(exitCodeOf(late)) } : {}),
    });
    return exitCodeOf(payload);
  }

  #encode(rpc: number, body: unknown): Buffer {
    let frame: Buffer;
    try {
      frame = encodeFrame(requestType(rpc), 0n, body);
    } catch (err) {
      throw new GcsError("INVALID_ARGUMENT", `${rpcName(rpc)}: the request cannot be serialised as JSON: ${(err as Error).message}`, { cause: err });
    }
    if (frame.length > this.maxMessageSize) {
      throw new GcsError("MESSAGE_TOO_LARGE", `${rpcName(rpc)}: the request is ${frame.length} bytes, over the bridge's limit of ${this.maxMessageSize}`);
    }
    return frame;
  }

  #call(rpc: number, body: unknown, options: CallOptions = {}): Promise<Record<string, unknown>> {
    const name = rpcName(rpc);
    if (this.#closed) return Promise.reject(this.#failureFor(name, this.#closed));
    let timeoutMs: number;
    let frame: Buffer;
    try {
      timeoutMs = checkTimeout(options.timeoutMs ?? this.#timeoutMs, "timeoutMs");
      frame = this.#encode(rpc, body);
    } catch (err) {
      return Promise.reject(toGcsError(err, name));
    }
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(new GcsError("CANCELLED", `${name} was aborted before it was sent`, { cause: signal.reason, operation: name }));
    // The id is taken only now, so ids on the wire are consecutive (spec §2.4).
    const id = this.#nextId++;
    frame.writeBigUInt64LE(id, 8);
    return new Promise((resolve, reject) => {
      const deadline = new Deadline(timeoutMs);
      const stopWaiting = (err: GcsError): void => {
        // The id stays registered: the guest will still answer, and that answer must be dropped,
        // not mistaken for an unknown id (spec §4.1).
        if (!pending.settle) return;
        pending.settle = undefined;
        cleanup();
        reject(err);
      };
      const onAbort = (): void => stopWaiting(new GcsError("CANCELLED", `${name} (id ${id}) was aborted; its answer will be dropped`, { cause: signal?.reason, operation: name }));
      const cleanup = (): void => {
        deadline.clear();
        signal?.removeEventListener("abort", onAbort);
      };
      const pending: Pending = {
        name,
        rpc,
        onLate: options.onLate,
        settle: (err, payload) => {
          pending.settle = undefined;
          cleanup();
          if (err) reject(err);
          else resolve(payload);
        },
      };
      this.#pending.set(id, pending);
      deadline.start(() => stopWaiting(new GcsError("TIMEOUT", `${name} (id ${id}) got no answer within ${timeoutMs} ms; a late answer will be dropped`, { operation: name })));
      signal?.addEventListener("abort", onAbort, { once: true });
      // A failed write tears the bridge down, which settles this call.
      this.#enqueue(frame).catch(() => {});
    });
  }

  /** The one write queue: frames go out whole and in order, waiting for 'drain' under back-pressure. */
  #enqueue(frame: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#closed) {
        reject(this.#closed);
        return;
      }
      this.#writes.push({ frame, done: (err) => (err ? reject(err) : resolve()) });
      this.#pump();
    });
  }

  #pump(): void {
    while (!this.#writeBlocked && !this.#closed) {
      const item = this.#writes.shift();
      if (!item) return;
      const ok = this.#stream.write(item.frame, (err) => {
        if (err) item.done(new GcsError("CLOSED", `bridge write failed: ${err.message}`, { cause: err }));
        else item.done();
      });
      if (!ok) {
        this.#writeBlocked = true;
        this.#stream.once("drain", () => {
          this.#writeBlocked = false;
          this.#pump();
        });
      }
    }
  }

  // ---- receiving ----

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    try {
      for (const frame of this.#decoder.push(chunk)) {
        this.#onFrame(frame);
        if (this.#closed) return;
      }
    } catch (err) {
      this.#teardown(protocolFailure(err));
    }
  }

  #onEnd(): void {
    if (this.#closed) return;
    try {
      this.#decoder.end();
    } catch (err) {
      this.#teardown(protocolFailure(err));
      return;
    }
    const why = this.#shutdownSent ? `the guest closed the bridge after ${this.#shutdownSent}` : "the guest closed the bridge";
    this.#teardown(new GcsError("CLOSED", why));
  }

  #onFrame(frame: Frame): void {
    const kind = kindOf(frame.type);
    if (kind === MessageKind.RESPONSE) return this.#onResponse(frame);
    if (kind === MessageKind.NOTIFICATION && frame.type === CONTAINER_NOTIFICATION) return this.#onNotification(frame);
    // hcsshim treats any other kind, and any other notification type, as fatal (spec §2.2).
    throw new GcsError("PROTOCOL", `the guest sent ${describeType(frame.type)} (id ${frame.id}); only responses and container notifications (0x30100101) may come from it`);
  }

  #onResponse(frame: Frame): void {
    const pending = this.#pending.get(frame.id);
    if (!pending) throw new GcsError("PROTOCOL", `the guest answered ${describeType(frame.type)} with id ${frame.id}, which matches no request`);
    if (rpcOf(frame.type) !== pending.rpc) {
      throw new GcsError("PROTOCOL", `the guest answered id ${frame.id}, a ${pending.name} request, with ${describeType(frame.type)}`);
    }
    const payload = parsePayload(frame);
    const result = payload["Result"] ?? 0;
    if (typeof result !== "number" || !Number.isInteger(result) || result < -0x8000_0000 || result > 0xffff_ffff) {
      throw new GcsError("PROTOCOL", `${pending.name} response id ${frame.id}: Result ${JSON.stringify(result)} is not a 32-bit HRESULT`);
    }
    this.#pending.delete(frame.id);
    if (!pending.settle) {
      const onLate = pending.onLate;
      if (result === 0 && onLate) {
        queueMicrotask(() => {
          try {
            onLate(payload);
          } catch {
            // A malformed late answer is dropped like any other late answer.
          }
        });
      }
      return;
    }
    if (result === 0) pending.settle(undefined, payload);
    else pending.settle(rpcFailure(pending.name, payload, this.#hintFor(result)), payload);
  }

  #onNotification(frame: Frame): void {
    const payload = parsePayload(frame) as unknown as ContainerNotification;
    // Emitted outside the decode loop: a throwing listener is the listener's bug and must not
    // cost the frames that came in the same chunk.
    queueMicrotask(() => this.emit("notification", payload));
  }

  #hintFor(result: number): string | undefined {
    if (result >>> 0 === Hresult.E_NOTIMPL && this.#version === undefined) return "was negotiate() called first?";
    return undefined;
  }

  // ---- the end ----

  #failureFor(name: string, reason: GcsError): GcsError {
    return new GcsError(reason.code, `${name}: ${reason.message}`, { cause: reason, operation: name });
  }

  #teardown(reason: GcsError): void {
    if (this.#closed) return;
    this.#closed = reason;
    for (const pending of this.#pending.values()) pending.settle?.(this.#failureFor(pending.name, reason), {});
    this.#pending.clear();
    for (const write of this.#writes.splice(0)) write.done(reason);
    this.#stream.destroy();
    this.#resolveClosed(reason);
    queueMicrotask(() => this.emit("close", reason));
  }
}

/** A decode failure as the reason the bridge went down: PROTOCOL, the decoder's error as cause. */
function protocolFailure(err: unknown): GcsError {
  const cause = toGcsError(err, "bridge receive");
  if (cause.code === "PROTOCOL") return cause;
  return new GcsError("PROTOCOL", `bridge torn down: ${cause.message}`, { cause });
}

function describeType(type: number): string {
  return `${rpcName(type)} (type 0x${(type >>> 0).toString(16).padStart(8, "0")})`;
}

function exitCodeOf(payload: Record<string, unknown>): number {
  const code = payload["ExitCode"] ?? 0;
  if (typeof code !== "number" || !Number.isInteger(code) || code < 0 || code > 0xffff_ffff) {
    throw new GcsError("PROTOCOL", `WaitForProcess: ExitCode ${JSON.stringify(code)} is not a u32`, { operation: "WaitForProcess" });
  }
  return code;
}
