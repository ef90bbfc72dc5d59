// The guest's state and what each RPC does to it (spec §3, checklist §7). Bridge connections
// come and go (the guest re-dials); the disks, unions and processes stay until a shutdown.
import { NULL_CONTAINER_ID, Rpc, linuxCapabilities, PROTOCOL_VERSION } from "@lcow/gcs-client/protocol";
import { GuestError } from "./errors.js";
import { field, object, str, uint, U32, type JsonObject } from "./fields.js";
import { parseCombinedLayers, type Unions } from "./layers.js";
import { parseExecRequest, parseWaitRequest, type ProcessTable } from "./processes.js";
import { parseMappedDisk, type ScsiBus } from "./scsi.js";
import type { Logger } from "./log.js";

/** What a handler learns about the connection its request came on. */
export interface RequestContext {
  /** Aborts when the connection closes: long waits (a SCSI attach, a process exit) give up. */
  signal: AbortSignal;
  /** Marks the connection negotiated. */
  negotiated(): void;
  /** Other requests in flight on the connection (for DumpStacks). */
  inFlight(): string[];
}

/** A handler's answer: the response's own fields (after Result and ActivityId), or NO_REPLY. */
export type HandlerResult = JsonObject | typeof NO_REPLY;
/** Shutdown of the VM: the real guest powers off without a word (spec §3.10). */
export const NO_REPLY = Symbol("no reply");

type Handler = (body: JsonObject, ctx: RequestContext) => Promise<HandlerResult>;

/** How long a graceful shutdown gives processes after SIGTERM before SIGKILL. */
const GRACEFUL_SHUTDOWN_MS = 5000;

export type ShutdownKind = "graceful" | "forced";

export class Guest {
  readonly #handlers = new Map<number, Handler>();
  #shutdown: Promise<void> | undefined;
  /** Called when a shutdown starts (stop taking requests) and once it has released everything (close the bridge). */
  onStopping: () => void = () => {};
  onStopped: () => void = () => {};

  constructor(
    readonly scsi: ScsiBus,
    readonly unions: Unions,
    readonly processes: ProcessTable,
    readonly log: Logger,
  ) {
    this.#handlers.set(Rpc.NegotiateProtocol, (b, c) => this.#negotiate(b, c));
    this.#handlers.set(Rpc.ModifySettings, (b, c) => this.#modifySettings(b, c));
    this.#handlers.set(Rpc.ExecuteProcess, (b, c) => this.#executeProcess(b, c));
    this.#handlers.set(Rpc.WaitForProcess, (b, c) => this.#waitForProcess(b, c));
    this.#handlers.set(Rpc.ShutdownGraceful, (b) => this.#shutdownRequest(b, "graceful"));
    this.#handlers.set(Rpc.ShutdownForced, (b) => this.#shutdownRequest(b, "forced"));
    this.#handlers.set(Rpc.DumpStacks, (_b, c) => this.#dumpStacks(c));
    // Container RPCs: this guest runs no containers, so every id names an unknown one.
    this.#handlers.set(Rpc.Create, () => Promise.reject(new GuestError("NOT_IMPLEMENTED", "Create: this guest runs no containers")));
    for (const rpc of [Rpc.Start, Rpc.SignalProcess, Rpc.ResizeConsole, Rpc.GetProperties, Rpc.DeleteContainerState]) {
      this.#handlers.set(rpc, (b) => Promise.reject(noContainer(b)));
    }
  }

  /** The handler of RPC `rpc` (no kind bits), or undefined for one this guest does not implement. */
  handler(rpc: number): Handler | undefined {
    return this.#handlers.get(rpc);
  }

  get shuttingDown(): boolean {
    return this.#shutdown !== undefined;
  }

  /**
   * Releases everything, once (later calls get the same promise): ends the processes (SIGTERM
   * and a grace period when graceful, SIGKILL when forced), then unmounts unions, then disks,
   * then stops exports. Failures are logged, not thrown: teardown goes on.
   */
  shutdown(kind: ShutdownKind): Promise<void> {
    this.#shutdown ??= (async () => {
      this.log.info("shutting down", { kind });
      this.onStopping();
      await this.processes.killAll(kind === "graceful" ? GRACEFUL_SHUTDOWN_MS : 0);
      const errors = [...(await this.unions.releaseAll()), ...(await this.scsi.releaseAll())];
      for (const err of errors) this.log.error("releasing at shutdown", { err });
      this.log.info("released everything");
      this.onStopped();
    })();
    return this.#shutdown;
  }

  async #negotiate(body: JsonObject, ctx: RequestContext): Promise<HandlerResult> {
    const min = uint(body, "MinimumVersion", U32);
    const max = uint(body, "MaximumVersion", U32);
    if (max < PROTOCOL_VERSION || min > PROTOCOL_VERSION) {
      throw new GuestError("UNSUPPORTED_VERSION", `NegotiateProtocol: versions ${min}..${max} exclude ${PROTOCOL_VERSION}, the only one this guest speaks`);
    }
    ctx.negotiated();
    return { Version: PROTOCOL_VERSION, Capabilities: linuxCapabilities() };
  }

  async #modifySettings(body: JsonObject, ctx: RequestContext): Promise<HandlerResult> {
    requireVm(body, "ModifySettings");
    const request = object(body, "Request", "Request");
    if (!request) throw new GuestError("INVALID_JSON", "ModifySettings: no Request");
    const resource = str(request, "ResourceType", "Request.ResourceType");
    const requestType = str(request, "RequestType", "Request.RequestType") || "Add";
    const settings = object(request, "Settings", "Request.Settings") ?? {};
    const unsupported = () => new GuestError("FAILED", `ModifySettings: the RequestType ${JSON.stringify(requestType)} is not supported for ${resource}`);
    switch (resource) {
      case "MappedVirtualDisk": {
        if (requestType !== "Add" && requestType !== "Remove") throw unsupported();
        const disk = parseMappedDisk(settings);
        if (requestType === "Add") await this.scsi.add(disk, ctx.signal);
        else await this.scsi.remove(disk);
        return {};
      }
      case "SCSIDevice": {
        if (requestType !== "Remove") throw unsupported();
        const controller = uint(settings, "Controller", 0xff, "SCSIDevice.Controller");
        const lun = uint(settings, "Lun", 0xff, "SCSIDevice.Lun");
        await this.scsi.unplug(controller, lun);
        return {};
      }
      case "CombinedLayers": {
        if (requestType !== "Add" && requestType !== "Remove") throw unsupported();
        const layers = parseCombinedLayers(settings, requestType);
        if (requestType === "Add") await this.unions.add(layers);
        else await this.unions.remove(layers.containerRootPath);
        return {};
      }
      case "MappedDirectory":
      case "VPMemDevice":
      case "Network":
      case "VPCIDevice":
      case "ContainerConstraints":
      case "SecurityPolicy":
      case "SecurityPolicyFragment":
      case "PodCgroupMemoryLimit":
        throw new GuestError("NOT_IMPLEMENTED", `ModifySettings: ResourceType ${resource} is not implemented by this guest`);
      default:
        // The real guest's answer to a type it does not know (an E_FAIL with this text).
        throw new GuestError("FAILED", `ModifySettings: the ResourceType ${JSON.stringify(resource)} is not supported for UVM`);
    }
  }

  async #executeProcess(body: JsonObject, ctx: RequestContext): Promise<HandlerResult> {
    const settings = object(body, "Settings", "Settings");
    if (!settings) throw new GuestError("INVALID_JSON", "ExecuteProcess: no Settings");
    const req = parseExecRequest(settings);
    // A container id without CreateInUtilityVM means "in that container"; we have none.
    if (!req.external && containerIdOf(body) !== NULL_CONTAINER_ID) throw noContainer(body);
    return { ProcessId: await this.processes.exec(req, ctx.signal) };
  }

  async #waitForProcess(body: JsonObject, ctx: RequestContext): Promise<HandlerResult> {
    requireVm(body, "WaitForProcess");
    const { pid, timeoutMs } = parseWaitRequest(body);
    return { ExitCode: await this.processes.wait(pid, timeoutMs, ctx.signal) };
  }

  async #shutdownRequest(body: JsonObject, kind: ShutdownKind): Promise<HandlerResult> {
    requireVm(body, kind === "graceful" ? "ShutdownGraceful" : "ShutdownForced");
    await this.shutdown(kind);
    return NO_REPLY;
  }

  async #dumpStacks(ctx: RequestContext): Promise<HandlerResult> {
    const lines = [
      `lcow-guest pid ${process.pid}, up ${Math.round(process.uptime())} s, ${this.shuttingDown ? "shutting down" : "running"}`,
      ...this.scsi.describe(),
      ...this.unions.describe(),
      ...this.processes.describe(),
      ...ctx.inFlight().map((r) => `request in flight: ${r}`),
    ];
    return { GuestStacks: `${lines.join("\n")}\n` };
  }
}

function containerIdOf(body: JsonObject): string {
  const id = field(body, "ContainerId");
  return typeof id === "string" ? id : "";
}

function noContainer(body: JsonObject): GuestError {
  return new GuestError("SYSTEM_NOT_FOUND", `container ${JSON.stringify(containerIdOf(body))} not found (this guest runs no containers)`);
}

/** UVM-level RPCs take the null ContainerId; any other id names a container we do not have. */
function requireVm(body: JsonObject, rpc: string): void {
  str(body, "ContainerId", `${rpc}.ContainerId`);
  if (containerIdOf(body) !== NULL_CONTAINER_ID) throw noContainer(body);
}
