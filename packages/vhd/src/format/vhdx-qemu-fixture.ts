// Test fixture (not exported by the package): VHDX files made by the real qemu-img, the golden
// source for the structure tests. Commands are recorded here instead of checking in binaries.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * `qemu-img create -f vhdx <f> 64M` (empty, ZERO-state BAT) and
 * `qemu-img convert -f raw -O vhdx` of 20 MiB of 0x5a bytes (allocated blocks, and a stale
 * log entry qemu leaves behind after updating the BAT through its log).
 */
export function qemuVhdxFixtures(): { created: Buffer; converted: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), "lcow-vhd-vhdx-fixture-"));
  try {
    const created = join(dir, "created.vhdx");
    execFileSync("qemu-img", ["create", "-q", "-f", "vhdx", created, "64M"]);
    const raw = join(dir, "in.raw");
    writeFileSync(raw, Buffer.alloc(20 * 1024 * 1024, 0x5a));
    const converted = join(dir, "converted.vhdx");
    execFileSync("qemu-img", ["convert", "-f", "raw", "-O", "vhdx", raw, converted]);
    return { created: readFileSync(created), converted: readFileSync(converted) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
