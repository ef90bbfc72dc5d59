// Boots an LCOW utility VM, hot-adds a disk, prints the VM's runtime id, stops it.
//   node examples/run-uvm.mjs <vmlinux> <initrd.img> [disk.vhdx]
// Windows with Hyper-V, as an administrator. Build the package first (`npx tsup`).
import { randomUUID } from "node:crypto";
import { ComputeSystem, HcsError, buildLcowUtilityVm, grantVmAccess } from "@lcow/hcs";

const [kernelPath, initrdPath, disk] = process.argv.slice(2);
if (!kernelPath || !initrdPath) {
  console.error("usage: node examples/run-uvm.mjs <vmlinux> <initrd.img> [disk.vhdx]");
  process.exit(2);
}

const id = `lcow-example-${randomUUID()}`;
try {
  // The VM's worker process opens these files; the ACE is derived from the id.
  await grantVmAccess(id, [kernelPath, initrdPath]);
  const vm = await ComputeSystem.create(id, buildLcowUtilityVm({ kernelPath, initrdPath }), { timeoutMs: 120_000 });
  try {
    await vm.start();
    const { RuntimeId, State } = await vm.getProperties();
    console.log(`${id}: ${State}, hvsocket VM id ${RuntimeId}`);
    if (disk) {
      await vm.addScsiDisk({ lun: 0, path: disk, readOnly: true }); // grants access, then hot-adds
      console.log(`attached ${disk} at controller 0, LUN 0`);
      await vm.removeScsiDisk({ lun: 0 });
    }
    await vm.shutdown({ timeoutMs: 30_000 }).catch(() => vm.terminate());
  } finally {
    await vm.close();
  }
} catch (err) {
  if (err instanceof HcsError) console.error(`${err.code} ${err.hresultHex ?? ""} ${err.message}`);
  else console.error(err);
  process.exitCode = 1;
}
