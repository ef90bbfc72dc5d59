import { HcsError } from "../errors.js";
import type { ComputeSystemDocument, Devices, HvSocketServiceConfig, Scsi, SchemaVersion } from "./v2.js";

/**
 * SCSI controller keys hcsshim uses since #1328 (controllers 0..3). The key is a
 * free name, but Modify resource paths must repeat the one the create document used.
 */
export const SCSI_CONTROLLER_GUIDS = [
  "df6d0690-79e5-55b6-a5ec-c1e2f77f580a",
  "0110f83b-de10-5172-a266-78bca56bf50a",
  "b5d2d8d4-3a75-51bf-945b-3444dc6b8579",
  "305891a9-b251-5dfe-91a2-c25d9212275b",
] as const;

/** LUNs per SCSI controller as hcsshim allocates them (0..63). */
export const SCSI_LUNS_PER_CONTROLLER = 64;

/** vsock ports the LCOW guest uses; the host listens on the matching hvsocket service ids. */
export const LCOW_VSOCK_PORTS = {
  /** Entropy injection at boot (512 bytes). */
  entropy: 1,
  /** GCS stdout/stderr log stream. */
  logs: 109,
  /** The GCS bridge: the guest connects to the host. */
  gcs: 0x40000000,
  /** First GCS I/O channel. */
  firstIo: 0x40000001,
} as const;

/** SYSTEM + Administrators may bind: what lets the host listen for the guest (hcsshim default). */
export const DEFAULT_BIND_SECURITY_DESCRIPTOR = "D:P(A;;FA;;;SY)(A;;FA;;;BA)";

/** The schema version hcsshim uses for LCOW utility VMs. */
export const LCOW_SCHEMA_VERSION: SchemaVersion = { Major: 2, Minor: 1 };

/** The hvsocket service GUID for a vsock port: `<port as 8 hex digits>-facb-11e6-bd58-64006a7986d3`. */
export function hvSocketServiceId(port: number): string {
  if (!Number.isInteger(port) || port < 0 || port > 0xffffffff) throw new HcsError("INVALID_ARGUMENT", `vsock port must be a 32-bit unsigned integer, got ${port}`);
  return `${port.toString(16).padStart(8, "0")}-facb-11e6-bd58-64006a7986d3`;
}

/** How the utility VM finds its root filesystem. */
export type LcowRootfs = "initrd" | "vpmem" | "scsi";

/** Options of {@link lcowKernelCommandLine}. */
export interface LcowKernelCommandLineOptions {
  /** Number of virtual processors (`nr_cpus`). */
  readonly processorCount: number;
  /** Root filesystem. Default `initrd`. */
  readonly rootfs?: LcowRootfs;
  /** Enable the serial console on ttyS0 (needs a COM port pipe). Default `false` (`8250_core.nr_uarts=0`). */
  readonly console?: boolean;
  /** Keep kernel messages and panics (omits `panic=-1 quiet`). Default `false`. */
  readonly debug?: boolean;
  /** Extra kernel options, inserted before `pci=off`. */
  readonly kernelBootOptions?: string;
  /** Keep PCI enabled (virtual PCI devices). Default `false` (`pci=off`). */
  readonly vpci?: boolean;
  /** The GCS command run by vsockexec. Default `/bin/gcs -v4 -log-format json -loglevel info`. */
  readonly execCommandLine?: string;
}

/**
 * The kernel command line hcsshim assembles for an LCOW UVM (spec 8.3), in its order:
 * root, `initcall_blacklist`, console, `panic=-1 quiet`, user options, `pci=off`,
 * `nr_cpus`, `brd.rd_nr=0 pmtmr=0`, then `-- ` and the init arguments.
 */
export function lcowKernelCommandLine(options: LcowKernelCommandLineOptions): string {
  const parts: string[] = [];
  const rootfs = options.rootfs ?? "initrd";
  if (rootfs === "vpmem") parts.push("root=/dev/pmem0 ro rootwait init=/init");
  else if (rootfs === "scsi") parts.push("root=/dev/sda ro rootwait init=/init");
  parts.push("initcall_blacklist=virtio_vsock_init");
  parts.push(options.console ? "8250_core.nr_uarts=1 8250_core.skip_txen_test=1 console=ttyS0,115200" : "8250_core.nr_uarts=0");
  if (!options.debug) parts.push("panic=-1 quiet");
  if (options.kernelBootOptions) parts.push(options.kernelBootOptions);
  if (!options.vpci) parts.push("pci=off");
  parts.push(`nr_cpus=${options.processorCount}`);
  parts.push("brd.rd_nr=0 pmtmr=0");
  const exec = options.execCommandLine ?? "/bin/gcs -v4 -log-format json -loglevel info";
  // hcsshim's command line starts with a space (it is built by appending " <option>").
  return ` ${parts.join(" ")} -- -e ${LCOW_VSOCK_PORTS.entropy} /bin/vsockexec -e ${LCOW_VSOCK_PORTS.logs} ${exec}`;
}

/** Options of {@link buildLcowUtilityVm}. */
export interface LcowUtilityVmOptions {
  /** Host path of the uncompressed kernel (`vmlinux`/`kernel`). Required. */
  readonly kernelPath: string;
  /** Host path of `initrd.img`. Required for initrd boot. */
  readonly initrdPath?: string;
  /** Shown in enumerate/properties. Default `"lcow"`. */
  readonly owner?: string;
  /** Full kernel command line; default from {@link lcowKernelCommandLine}. */
  readonly kernelCmdLine?: string;
  /** Options for the default command line (ignored when `kernelCmdLine` is given). */
  readonly commandLine?: Omit<LcowKernelCommandLineOptions, "processorCount">;
  /** Memory in MiB, rounded up to even as hcsshim does. Default 1024. */
  readonly memoryMb?: number;
  /** Back guest memory with pageable host memory. Default `true`. */
  readonly allowOvercommit?: boolean;
  /** Virtual processors, 1..64. Default 2. */
  readonly processorCount?: number;
  /** SCSI controllers, 0..4, keyed by {@link SCSI_CONTROLLER_GUIDS}. Default 1. */
  readonly scsiControllers?: number;
  /**
   * hvsocket service table entries (service GUID to config). Default empty: the
   * default bind descriptor already lets the host listen on every service.
   */
  readonly hvSocketServices?: Readonly<Record<string, HvSocketServiceConfig>>;
  /** Default bind SDDL. Default {@link DEFAULT_BIND_SECURITY_DESCRIPTOR}. */
  readonly defaultBindSecurityDescriptor?: string;
  /** Add an empty Plan9 device so shares can be hot-added. Default `false` (Plan9 off). */
  readonly plan9?: boolean;
  /** Named pipe for the serial console (COM1). Enables the console on the command line. */
  readonly consolePipe?: string;
  /** Kill the VM when the last handle closes. Default `true`. */
  readonly terminateOnLastHandleClosed?: boolean;
  /** A guest reboot stops the VM. Default `true`. */
  readonly stopOnReset?: boolean;
  /** Default 2.1 (hcsshim's LCOW version). */
  readonly schemaVersion?: SchemaVersion;
}

function positiveInt(value: number, what: string, max: number, min = 1): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new HcsError("INVALID_ARGUMENT", `${what} must be an integer in ${min}..${max}, got ${value}`);
  return value;
}

/**
 * Builds the schema 2.1 create document of an LCOW utility VM booted with
 * `LinuxKernelDirect` (kernel + initrd + command line), the shape hcsshim's
 * `MakeLCOWDoc` produces (spec 8.3).
 */
export function buildLcowUtilityVm(options: LcowUtilityVmOptions): ComputeSystemDocument {
  if (!options.kernelPath) throw new HcsError("INVALID_ARGUMENT", "kernelPath is required");
  const processorCount = positiveInt(options.processorCount ?? 2, "processorCount", 64);
  const requested = positiveInt(options.memoryMb ?? 1024, "memoryMb", 1024 * 1024);
  // Hyper-V wants 2 MB granularity; hcsshim rounds up the same way.
  const memoryMb = requested + (requested % 2);
  const controllers = positiveInt(options.scsiControllers ?? 1, "scsiControllers", SCSI_CONTROLLER_GUIDS.length, 0);
  const scsi: Record<string, Scsi> = {};
  for (const key of SCSI_CONTROLLER_GUIDS.slice(0, controllers)) scsi[key] = { Attachments: {} };

  const devices: Devices = {
    ...(controllers > 0 ? { Scsi: scsi } : {}),
    HvSocket: {
      HvSocketConfig: {
        DefaultBindSecurityDescriptor: options.defaultBindSecurityDescriptor ?? DEFAULT_BIND_SECURITY_DESCRIPTOR,
        ServiceTable: { ...(options.hvSocketServices ?? {}) },
      },
    },
    ...(options.plan9 ? { Plan9: {} } : {}),
    ...(options.consolePipe ? { ComPorts: { "0": { NamedPipe: options.consolePipe } } } : {}),
  };
  const kernelCmdLine =
    options.kernelCmdLine ??
    lcowKernelCommandLine({ ...options.commandLine, console: options.commandLine?.console ?? options.consolePipe !== undefined, processorCount });

  return {
    Owner: options.owner ?? "lcow",
    SchemaVersion: { ...(options.schemaVersion ?? LCOW_SCHEMA_VERSION) },
    ShouldTerminateOnLastHandleClosed: options.terminateOnLastHandleClosed ?? true,
    VirtualMachine: {
      StopOnReset: options.stopOnReset ?? true,
      Chipset: {
        LinuxKernelDirect: {
          KernelFilePath: options.kernelPath,
          ...(options.initrdPath ? { InitRdPath: options.initrdPath } : {}),
          KernelCmdLine: kernelCmdLine,
        },
      },
      ComputeTopology: {
        Memory: { SizeInMB: memoryMb, AllowOvercommit: options.allowOvercommit ?? true },
        Processor: { Count: processorCount },
      },
      Devices: devices,
    },
  };
}

/**
 * hvsocket service table entries for the LCOW ports (entropy, logs, GCS, first I/O),
 * as hcsshim's confidential document lists them: wildcard binds allowed.
 */
export function lcowHvSocketServices(): Record<string, HvSocketServiceConfig> {
  const table: Record<string, HvSocketServiceConfig> = {};
  for (const port of Object.values(LCOW_VSOCK_PORTS)) {
    table[hvSocketServiceId(port)] = {
      AllowWildcardBinds: true,
      BindSecurityDescriptor: "D:P(A;;FA;;;WD)",
      ConnectSecurityDescriptor: DEFAULT_BIND_SECURITY_DESCRIPTOR,
    };
  }
  return table;
}
