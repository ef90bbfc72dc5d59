import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import * as vhd from "@lcow/vhd";
import { describe, expect, it } from "vitest";
import { init, REPRODUCES_EXACT_DIFFS } from "../src/index.js";
import { describeLayerStore } from "./conformance.js";

/** The kernel mounter needs Linux, root, loop devices, FUSE, overlayfs and qemu-storage-daemon. */
function kernelSupported(): boolean {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return false;
  if (!existsSync("/dev/loop-control") || !existsSync("/dev/fuse")) return false;
  const fs = readFileSync("/proc/filesystems", "utf8");
  if (!/\toverlay$/m.test(fs) || !/\text4$/m.test(fs) || !/\tfuse$/m.test(fs)) return false;
  try {
    execFileSync("qemu-storage-daemon", ["--version"], { stdio: "ignore" });
    execFileSync("losetup", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describeLayerStore("driver, none mounter", (home) => init(home, ["lcow.mounter=none"], { fsync: false }), { union: false });

describe.skipIf(!kernelSupported())("kernel", () => {
  describeLayerStore("driver, kernel mounter", (home) => init(home, ["lcow.mounter=kernel"], { fsync: false }), { union: true });
});

describe("exact diffs", () => {
  it("are on exactly when @lcow/vhd can replay a tar-split record", () => {
    expect(REPRODUCES_EXACT_DIFFS).toBe(typeof (vhd as Record<string, unknown>)["reproduceTar"] === "function");
  });
});
