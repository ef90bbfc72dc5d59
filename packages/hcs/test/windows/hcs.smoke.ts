/**
 * Smoke test on a real Windows host with Hyper-V and the Containers feature, run as
 * an administrator: `pnpm --filter @lcow/hcs test:windows`.
 *
 * Environment:
 *   LCOW_KERNEL   host path of an uncompressed LCOW kernel (vmlinux)  } both needed for the VM test
 *   LCOW_INITRD   host path of the matching initrd.img                }
 *   LCOW_VHDX     optional existing VHD/VHDX to hot-add and remove
 *   LCOW_HCS_API  optional v1|v2 to force vmcompute.dll / computecore.dll
 */
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Hcs, buildLcowUtilityVm, checkHost } from "../../src/index.js";

const kernel = process.env["LCOW_KERNEL"];
const initrd = process.env["LCOW_INITRD"];
const vhdx = process.env["LCOW_VHDX"];

describe("HCS on this Windows host", () => {
  it("loads HCS and answers the service properties query", async () => {
    const report = await checkHost();
    console.log(JSON.stringify(report, null, 2));
    expect(report.error).toBeUndefined();
    expect(report.api).toMatch(/^v[12]$/);
    expect(report.schemaVersions.length).toBeGreaterThan(0);
  });

  it.runIf(kernel && initrd)("creates, starts, queries, hot-adds a disk to and stops a small LCOW VM", async () => {
    const hcs = Hcs.load({ defaultTimeoutMs: 120_000 });
    const id = `lcow-hcs-smoke-${randomUUID()}`;
    await hcs.grantVmAccess(id, kernel!);
    await hcs.grantVmAccess(id, initrd!);
    const doc = buildLcowUtilityVm({ owner: "lcow-hcs-smoke", kernelPath: kernel!, initrdPath: initrd!, memoryMb: 512, processorCount: 1 });
    await using vm = await hcs.createComputeSystem(id, doc);
    await vm.start();
    const props = await vm.getProperties();
    console.log(props);
    expect(props.State).toBe("Running");
    expect(props.RuntimeId).toMatch(/^[0-9a-f-]{36}$/i);
    if (vhdx) {
      await vm.addScsiDisk({ lun: 0, path: vhdx, readOnly: true });
      await vm.removeScsiDisk({ lun: 0 });
    }
    await vm.terminate();
    expect((await vm.waitForExit({ timeoutMs: 60_000 })).ExitType).toBeDefined();
  });
});
