// The Windows launcher at its real boundary, on Linux: HCS is @lcow/hcs's C stand-in for
// computecore.dll (built here with gcc, same exported ABI), the hvsocket transport is swapped for
// unix sockets (the AF_HYPERV binding has its own Winsock-shim test), and the guest that dials in
// is apps/guest. It checks what the launcher asks of HCS (grants before create, the LCOW document,
// SCSI attach/detach at the controller GUID and LUN, terminate) and that the VM it hands over
// works (entropy, negotiation, a process).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Hcs, SCSI_CONTROLLER_GUIDS, hvSocketServiceId } from "@lcow/hcs";
import { Shim, buildShims, type ShimBuild } from "../../hcs/test/shim/shim.js";
import { HcsLauncher, UnixTransport, UtilityVM, GCS_VSOCK_PORT } from "../src/index.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const GUEST = resolve(HERE, "../../../apps/guest/dist/main.js");
const haveCc = spawnSync(process.env.CC ?? "cc", ["--version"]).status === 0;

async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.skipIf(process.platform !== "linux" || !haveCc || !existsSync(GUEST))("HcsLauncher against the HCS C shim and apps/guest", () => {
  let build: ShimBuild;
  let shim: Shim;
  let hcs: Hcs;
  let work: string;
  let kird: string;

  beforeAll(async () => {
    build = buildShims();
    shim = new Shim(build.computecore);
    hcs = Hcs.load({ computecore: build.computecore, defaultTimeoutMs: 10_000 });
    work = await mkdtemp(join(tmpdir(), "lcow-hcs-launch-"));
    kird = join(work, "Linux Containers");
    await mkdir(kird);
    await writeFile(join(kird, "kernel"), "not really a kernel");
    await writeFile(join(kird, "initrd.img"), "not really an initrd");
  });
  afterAll(async () => {
    build?.dispose();
    await rm(work, { recursive: true, force: true });
  });

  it("creates the LCOW VM through HCS, hands over a negotiated bridge, attaches disks by GUID and LUN, terminates", async () => {
    const vsock = join(work, "v");
    await mkdir(vsock);
    let vmIdSeen: string | undefined;
    const launcher = new HcsLauncher({
      hcs,
      transport: (vmId) => {
        vmIdSeen = vmId;
        return new UnixTransport({ dir: vsock });
      },
    });
    let guest: ChildProcess | undefined;
    // The "VM firmware": once HCS started the system, boot the guest, which dials the bridge.
    const booting = (async () => {
      await until(() => shim.callCount("HcsStartComputeSystem") > 0 && existsSync(join(vsock, `${GCS_VSOCK_PORT}.sock`)));
      const entropy = await new Promise<Buffer>((resolveRead, reject) => {
        const parts: Buffer[] = [];
        const s = net.connect(join(vsock, "1.sock"));
        s.on("data", (b) => parts.push(b));
        s.on("end", () => resolveRead(Buffer.concat(parts)));
        s.on("error", reject);
      });
      await mkdir(join(work, "scsi"), { recursive: true });
      guest = spawn(process.execPath, [GUEST, "serve", "--bridge", `unix:${join(vsock, `${GCS_VSOCK_PORT}.sock`)}`, "--stdio", `unix:${vsock}`, "--scsi-dir", join(work, "scsi"), "--state-dir", join(work, "state")], { stdio: "ignore" });
      return entropy;
    })();

    const vm = await UtilityVM.start({ name: "lcow-hcs-test", launcher, kirdPath: kird, bootParameters: "lcow.test=1", timeoutSeconds: 30 });
    try {
      expect((await booting).length).toBe(512);
      // Grants came before create: the shim refuses a create whose kernel the VM cannot open.
      expect(shim.callCount("HcsGrantVmAccess")).toBeGreaterThanOrEqual(2);
      const doc = JSON.parse(shim.lastDocument()) as { VirtualMachine: { Chipset: { LinuxKernelDirect: Record<string, string> }; Devices: { Scsi: Record<string, unknown>; HvSocket: { HvSocketConfig: { ServiceTable: Record<string, unknown> } } } } };
      const lkd = doc.VirtualMachine.Chipset.LinuxKernelDirect;
      expect(lkd.KernelFilePath).toBe(join(kird, "kernel"));
      expect(lkd.InitRdPath).toBe(join(kird, "initrd.img"));
      expect(lkd.KernelCmdLine).toContain("lcow.test=1");
      expect(Object.keys(doc.VirtualMachine.Devices.Scsi)).toEqual([SCSI_CONTROLLER_GUIDS[0]]);
      expect(Object.keys(doc.VirtualMachine.Devices.HvSocket.HvSocketConfig.ServiceTable)).toContain(hvSocketServiceId(GCS_VSOCK_PORT));
      // The transport was bound to the VM's RuntimeId, as HCS reported it.
      const props = await (await import("@lcow/hcs")).ComputeSystem.open("lcow-hcs-test", { hcs }).then(async (cs) => {
        const p = await cs.getProperties();
        await cs.close();
        return p;
      });
      expect(vmIdSeen).toBe(props.RuntimeId);

      const result = await vm.run(["/bin/sh", "-c", "echo up"]);
      expect(result.stdout.toString()).toBe("up\n");
      expect(vm.hostPath("/")).toBeUndefined();

      // The HCS half of a hot-add: grant + Modify at the controller's GUID and the LUN.
      const disk = join(work, "disk.vhdx");
      await writeFile(disk, "");
      const grantsBefore = shim.callCount("HcsGrantVmAccess");
      const hcsVm = vm.launched;
      await hcsVm.attachScsi({ controller: 0, lun: 5, hostPath: disk, readOnly: true });
      expect(shim.callCount("HcsGrantVmAccess")).toBe(grantsBefore + 1);
      expect(JSON.parse(shim.lastDocument())).toEqual({ ResourcePath: `VirtualMachine/Devices/Scsi/${SCSI_CONTROLLER_GUIDS[0]}/Attachments/5`, RequestType: "Add", Settings: { Type: "VirtualDisk", Path: disk, ReadOnly: true } });
      expect(shim.attachmentCount("lcow-hcs-test")).toBe(1);
      await hcsVm.detachScsi({ controller: 0, lun: 5, hostPath: disk, readOnly: true });
      expect(shim.attachmentCount("lcow-hcs-test")).toBe(0);
    } finally {
      await vm.terminate();
      guest?.kill("SIGKILL");
    }
    expect(shim.callCount("HcsTerminateComputeSystem")).toBeGreaterThanOrEqual(1);
    await shim.quiesce();
    expect(shim.liveHandles()).toBe(0);
  });
});
