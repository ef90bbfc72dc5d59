// The Windows launcher: a Hyper-V utility VM created through the Host Compute Service with the
// LCOW document hcsshim builds (LinuxKernelDirect boot of the kernel and initrd in
// `lcow.kirdpath`, SCSI controllers keyed by the GUIDs the guest expects, hvsocket binds
// allowed), and the bridge over AF_HYPERV. Order matters (spec §1.1): the host listens on the
// entropy, log and bridge ports before starting the VM, because the guest dials them during boot.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { ComputeSystem, buildLcowUtilityVm, grantVmAccess, lcowHvSocketServices, type Hcs } from "@lcow/hcs";
import { GcsError } from "../errors.js";
import { ENTROPY_BYTES, ENTROPY_VSOCK_PORT, GCS_VSOCK_PORT, LOG_VSOCK_PORT } from "../protocol/constants.js";
import type { ChannelListener, HostTransport } from "../transport/index.js";
import type { LaunchedVm, LaunchOptions, ScsiAttachment, UtilityVmLauncher, VmExit } from "./launcher.js";

const LOG_TAIL = 16 * 1024;

export interface HcsLauncherOptions {
  /** The HCS binding to use. If not provided, the default one (`getHcs()`). */
  hcs?: Hcs;
  /** Guest memory in MiB. If not provided, 1024 (hcsshim's LCOW default). */
  memoryMb?: number;
  /** Virtual processors. If not provided, 2. */
  processorCount?: number;
  /** Makes the transport for a VM's RuntimeId. If not provided, `new HvsockTransport({ vmId })`. */
  transport?: (vmId: string) => HostTransport | Promise<HostTransport>;
  /** Receives the guest's log stream (vsock port 109). */
  onLog?: (name: string, chunk: string) => void;
}

/** `%ProgramFiles%\Linux Containers`, the seed's default `lcow.kirdpath`. */
export function defaultKirdPath(): string {
  return join(process.env.ProgramFiles ?? "C:\\Program Files", "Linux Containers");
}

export class HcsLauncher implements UtilityVmLauncher {
  readonly kind = "hcs";
  readonly #options: HcsLauncherOptions;

  constructor(options: HcsLauncherOptions = {}) {
    this.#options = options;
  }

  async launch(options: LaunchOptions): Promise<LaunchedVm> {
    const kird = options.kirdPath ?? defaultKirdPath();
    const kernelPath = join(kird, options.kernel ?? "kernel");
    const initrdPath = join(kird, options.initrd ?? "initrd.img");
    const document = buildLcowUtilityVm({
      kernelPath,
      initrdPath,
      owner: "lcow",
      memoryMb: this.#options.memoryMb,
      processorCount: this.#options.processorCount,
      scsiControllers: options.scsiControllers,
      hvSocketServices: lcowHvSocketServices(),
      commandLine: options.bootParameters ? { kernelBootOptions: options.bootParameters } : undefined,
    });
    const hcsOptions = this.#options.hcs ? { hcs: this.#options.hcs } : {};
    // The VM's worker process opens the kernel and initrd while HCS creates it: grant first.
    await grantVmAccess(options.name, [kernelPath, initrdPath], hcsOptions);
    const system = await ComputeSystem.create(options.name, document, hcsOptions);
    const listeners: ChannelListener[] = [];
    let transport: HostTransport | undefined;
    try {
      const { RuntimeId } = await system.getProperties();
      if (!RuntimeId) throw new GcsError("VM_FAILED", `utility VM ${options.name}: HCS reported no RuntimeId, so there is no hvsocket address to listen on`);
      transport = this.#options.transport ? await this.#options.transport(RuntimeId) : await hvsockTransport(RuntimeId);
      const entropy = await transport.listen(ENTROPY_VSOCK_PORT);
      const logs = await transport.listen(LOG_VSOCK_PORT);
      const gcs = await transport.listen(GCS_VSOCK_PORT);
      listeners.push(entropy, logs, gcs);
      await system.start();
      let log = "";
      // Init reads its boot entropy, and vsockexec gives up unless the log port answers. Each is
      // dialled once, so its listener closes after its accept, as the bridge's does.
      void entropy
        .accept({ timeoutMs: options.timeoutMs })
        .then((s) => s.end(randomBytes(ENTROPY_BYTES)), () => {})
        .finally(() => entropy.close().catch(() => {}));
      void logs.accept({ timeoutMs: options.timeoutMs }).finally(() => logs.close().catch(() => {})).then(
        (s) => {
          s.setEncoding("utf8");
          s.on("data", (chunk: string) => {
            log = (log + chunk).slice(-LOG_TAIL);
            this.#options.onLog?.(options.name, chunk);
          });
          s.on("error", () => {});
        },
        () => {},
      );
      const exited: Promise<VmExit> = system.waitForExit({ timeoutMs: Infinity }).then(
        (status) => ({ code: status.Status ?? 0, signal: status.ExitType ?? null, log }),
        (err: unknown) => ({ code: null, signal: null, log: `${log}${String(err)}` }),
      );
      const bridge = await gcs.accept({ timeoutMs: options.timeoutMs });
      await gcs.close();
      return new HcsVm(system, transport, bridge, exited);
    } catch (err) {
      for (const l of listeners) await l.close().catch(() => {});
      await transport?.close?.().catch(() => {});
      await system.terminate().catch(() => {});
      await system.close().catch(() => {});
      throw err;
    }
  }
}

async function hvsockTransport(vmId: string): Promise<HostTransport> {
  const { HvsockTransport } = await import("../transport/index.js");
  return new HvsockTransport({ vmId });
}

class HcsVm implements LaunchedVm {
  #terminating: Promise<void> | undefined;

  constructor(
    readonly system: ComputeSystem,
    readonly transport: HostTransport,
    readonly bridge: Duplex,
    readonly exited: Promise<VmExit>,
  ) {}

  attachScsi(a: ScsiAttachment): Promise<void> {
    // addScsiDisk grants the VM access to the file first, as hcsshim does.
    return this.system.addScsiDisk({ controller: a.controller, lun: a.lun, path: a.hostPath, readOnly: a.readOnly });
  }

  detachScsi(a: ScsiAttachment): Promise<void> {
    return this.system.removeScsiDisk({ controller: a.controller, lun: a.lun });
  }

  hostPath(): string | undefined {
    return undefined; // a real VM's files are its own
  }

  terminate(): Promise<void> {
    this.#terminating ??= (async () => {
      this.bridge.destroy();
      await this.system.terminate().catch(() => {});
      await this.transport.close?.().catch(() => {});
      await this.system.close();
    })();
    return this.#terminating;
  }
}
