import { describe, expect, it } from "vitest";
import {
  DEFAULT_BIND_SECURITY_DESCRIPTOR,
  SCSI_CONTROLLER_GUIDS,
  buildLcowContainerConfig,
  buildLcowUtilityVm,
  hvSocketServiceId,
  lcowHvSocketServices,
  lcowKernelCommandLine,
  mappedVirtualDiskRequest,
  memoryUpdateRequest,
  scsiAddRequest,
  scsiRemoveRequest,
  scsiResourcePath,
} from "./index.js";

describe("LCOW utility VM document", () => {
  it("matches the shape hcsshim's MakeLCOWDoc produces (spec 8.3)", () => {
    const doc = buildLcowUtilityVm({
      owner: "lcow-test",
      kernelPath: "C:\\Program Files\\Linux Containers\\vmlinux",
      initrdPath: "C:\\Program Files\\Linux Containers\\initrd.img",
    });
    expect(doc).toEqual({
      Owner: "lcow-test",
      SchemaVersion: { Major: 2, Minor: 1 },
      ShouldTerminateOnLastHandleClosed: true,
      VirtualMachine: {
        StopOnReset: true,
        Chipset: {
          LinuxKernelDirect: {
            KernelFilePath: "C:\\Program Files\\Linux Containers\\vmlinux",
            InitRdPath: "C:\\Program Files\\Linux Containers\\initrd.img",
            KernelCmdLine:
              " initcall_blacklist=virtio_vsock_init 8250_core.nr_uarts=0 panic=-1 quiet pci=off nr_cpus=2 brd.rd_nr=0 pmtmr=0 -- -e 1 /bin/vsockexec -e 109 /bin/gcs -v4 -log-format json -loglevel info",
          },
        },
        ComputeTopology: { Memory: { SizeInMB: 1024, AllowOvercommit: true }, Processor: { Count: 2 } },
        Devices: {
          Scsi: { "df6d0690-79e5-55b6-a5ec-c1e2f77f580a": { Attachments: {} } },
          HvSocket: { HvSocketConfig: { DefaultBindSecurityDescriptor: "D:P(A;;FA;;;SY)(A;;FA;;;BA)", ServiceTable: {} } },
        },
      },
    });
  });

  it("honours options: memory rounding, processors, controllers, Plan9, console, service table", () => {
    const doc = buildLcowUtilityVm({
      kernelPath: "/k",
      memoryMb: 513,
      processorCount: 4,
      scsiControllers: 4,
      plan9: true,
      consolePipe: "\\\\.\\pipe\\vmcon",
      hvSocketServices: lcowHvSocketServices(),
      terminateOnLastHandleClosed: false,
      allowOvercommit: false,
    });
    const vm = doc.VirtualMachine!;
    expect(vm.ComputeTopology.Memory).toEqual({ SizeInMB: 514, AllowOvercommit: false });
    expect(vm.ComputeTopology.Processor.Count).toBe(4);
    expect(Object.keys(vm.Devices!.Scsi!)).toEqual([...SCSI_CONTROLLER_GUIDS]);
    expect(vm.Devices!.Plan9).toEqual({});
    expect(vm.Devices!.ComPorts).toEqual({ "0": { NamedPipe: "\\\\.\\pipe\\vmcon" } });
    expect(vm.Chipset.LinuxKernelDirect!.KernelCmdLine).toContain("console=ttyS0,115200");
    expect(vm.Chipset.LinuxKernelDirect!.KernelCmdLine).toContain("nr_cpus=4");
    expect(vm.Chipset.LinuxKernelDirect).not.toHaveProperty("InitRdPath");
    expect(Object.keys(vm.Devices!.HvSocket!.HvSocketConfig!.ServiceTable!)).toEqual([
      "00000001-facb-11e6-bd58-64006a7986d3",
      "0000006d-facb-11e6-bd58-64006a7986d3",
      "40000000-facb-11e6-bd58-64006a7986d3",
      "40000001-facb-11e6-bd58-64006a7986d3",
    ]);
    expect(doc.ShouldTerminateOnLastHandleClosed).toBe(false);
    expect(buildLcowUtilityVm({ kernelPath: "/k", scsiControllers: 0 }).VirtualMachine!.Devices).not.toHaveProperty("Scsi");
  });

  it("rejects impossible options", () => {
    for (const bad of [{ kernelPath: "" }, { kernelPath: "/k", processorCount: 0 }, { kernelPath: "/k", processorCount: 65 }, { kernelPath: "/k", memoryMb: 0 }, { kernelPath: "/k", scsiControllers: 5 }]) {
      expect(() => buildLcowUtilityVm(bad)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    }
  });

  it("assembles the kernel command line in hcsshim's order", () => {
    expect(lcowKernelCommandLine({ processorCount: 1, rootfs: "vpmem", debug: true, kernelBootOptions: "foo=1", vpci: true, execCommandLine: "/bin/gcs" })).toBe(
      " root=/dev/pmem0 ro rootwait init=/init initcall_blacklist=virtio_vsock_init 8250_core.nr_uarts=0 foo=1 nr_cpus=1 brd.rd_nr=0 pmtmr=0 -- -e 1 /bin/vsockexec -e 109 /bin/gcs",
    );
    expect(lcowKernelCommandLine({ processorCount: 2, rootfs: "scsi" })).toMatch(/^ root=\/dev\/sda ro rootwait init=\/init /);
    expect(hvSocketServiceId(0x40000000)).toBe("40000000-facb-11e6-bd58-64006a7986d3");
    expect(() => hvSocketServiceId(-1)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(DEFAULT_BIND_SECURITY_DESCRIPTOR).toBe("D:P(A;;FA;;;SY)(A;;FA;;;BA)");
  });
});

describe("modify requests", () => {
  it("builds SCSI add/remove exactly as spec 8.5", () => {
    expect(scsiAddRequest({ lun: 3, path: "C:\\lcow\\scratch\\abc.vhdx", readOnly: true })).toEqual({
      ResourcePath: "VirtualMachine/Devices/Scsi/df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments/3",
      RequestType: "Add",
      Settings: { Type: "VirtualDisk", Path: "C:\\lcow\\scratch\\abc.vhdx", ReadOnly: true },
    });
    expect(scsiRemoveRequest({ lun: 3 })).toEqual({
      ResourcePath: "VirtualMachine/Devices/Scsi/df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments/3",
      RequestType: "Remove",
    });
    expect(scsiResourcePath(3, 63)).toBe("VirtualMachine/Devices/Scsi/305891a9-b251-5dfe-91a2-c25d9212275b/Attachments/63");
    expect(scsiResourcePath("0", 1)).toBe("VirtualMachine/Devices/Scsi/0/Attachments/1");
    expect(memoryUpdateRequest(2047)).toEqual({ ResourcePath: "VirtualMachine/ComputeTopology/Memory/SizeInMB", RequestType: "Update", Settings: 2048 });
  });

  it("rejects bad controllers, LUNs and paths before HCS sees them", () => {
    for (const f of [
      () => scsiResourcePath(4, 0),
      () => scsiResourcePath(0, 64),
      () => scsiResourcePath(0, -1),
      () => scsiResourcePath("a/b", 0),
      () => scsiAddRequest({ lun: 0, path: "" }),
      () => memoryUpdateRequest(0),
    ]) {
      expect(f).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    }
  });
});

describe("v1 ContainerConfig", () => {
  it("matches the 2017 opengcs document (spec 9)", () => {
    expect(buildLcowContainerConfig({ name: "abc_svm", mappedVirtualDisks: [{ HostPath: "C:\\s.vhdx", ContainerPath: "/mnt/s" }] })).toEqual({
      SystemType: "Container",
      Name: "abc_svm",
      Layers: null,
      HvPartition: true,
      HvRuntime: { ImagePath: "C:\\Program Files\\Linux Containers", LinuxInitrdFile: "initrd.img", LinuxKernelFile: "bootx64.efi" },
      ContainerType: "linux",
      TerminateOnLastHandleClosed: true,
      MappedVirtualDisks: [{ HostPath: "C:\\s.vhdx", ContainerPath: "/mnt/s" }],
    });
    expect(mappedVirtualDiskRequest("Remove", { ContainerPath: "/mnt/x" })).toEqual({
      ResourceType: "MappedVirtualDisk",
      RequestType: "Remove",
      Settings: { ContainerPath: "/mnt/x" },
    });
    expect(() => mappedVirtualDiskRequest("Add", { ContainerPath: "/mnt/x" })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => buildLcowContainerConfig({ name: "" })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});
