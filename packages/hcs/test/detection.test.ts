/**
 * Library detection and fallback (spec 4), platform behaviour, optional exports and
 * checkHost(), against the shim variants.
 */
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Hcs, HRESULT, buildLcowUtilityVm, checkHost, getHcs, grantVmAccess, revokeVmAccess, setDefaultHcs, ComputeSystem } from "../src/index.js";
import { expectHcsError } from "./helpers.js";
import { Shim, buildShims, type ShimBuild } from "./shim/shim.js";

let build: ShimBuild;
let shims: Shim[];

beforeAll(() => {
  build = buildShims();
  shims = [build.computecore, build.vmcompute, build.computecoreNoOptional, build.computecoreMissingRequired].map((p) => new Shim(p));
});
afterAll(() => build.dispose());
afterEach(async () => {
  setDefaultHcs(undefined);
  delete process.env["LCOW_HCS_API"];
  for (const shim of shims) expect(await shim.finish()).toEqual({ handles: 0, allocations: 0, badFrees: 0 });
});

describe("platform", () => {
  it("imports on Linux and fails with UNSUPPORTED_PLATFORM only when used", async () => {
    expect(process.platform).not.toBe("win32"); // this suite is the Linux stand-in
    const mod = await import("../src/index.js");
    expect(typeof mod.ComputeSystem).toBe("function");
    expect(() => getHcs()).toThrow(expect.objectContaining({ code: "UNSUPPORTED_PLATFORM", message: expect.stringMatching(/^HCS is available on Windows only/) }));
    await expectHcsError(ComputeSystem.open("x"), "UNSUPPORTED_PLATFORM");
    await expectHcsError(grantVmAccess("x", "C:\\k"), "UNSUPPORTED_PLATFORM");
  });

  it("checkHost reports an unsupported platform instead of throwing", async () => {
    const report = await checkHost();
    expect(report).toMatchObject({ ok: false, document: "none", kernelDirect: false, schemaVersions: [] });
    expect(report.error?.code).toBe("UNSUPPORTED_PLATFORM");
    expect(report.problems[0]).toMatch(/Windows only/);
  });
});

describe("detection", () => {
  it("prefers computecore when it has every required export", () => {
    const hcs = Hcs.load({ computecore: build.computecore, vmcompute: build.vmcompute });
    expect(hcs.detection).toEqual({ api: "v2", library: build.computecore, freeFunction: "LocalFree" });
  });

  it("falls back to vmcompute as a whole when a required export is missing", async () => {
    const hcs = Hcs.load({ computecore: build.computecoreMissingRequired, vmcompute: build.vmcompute });
    expect(hcs.api).toBe("v1");
    expect(hcs.detection.fallbackReason).toMatch(/HcsGrantVmAccess/);
    // Everything, including the grant, goes to vmcompute: its state sees the VM, computecore's does not.
    await hcs.grantVmAccess("fb", "C:\\k");
    const vm = await hcs.createComputeSystem("fb", buildLcowUtilityVm({ kernelPath: "C:\\k" }));
    expect(shims[1]!.attachmentCount("fb")).toBe(0);
    expect(shims[3]!.attachmentCount("fb")).toBe(-1);
    expect(shims[3]!.callCount("HcsCreateComputeSystem")).toBe(0);
    await vm.close();
  });

  it("falls back when computecore does not load, and fails when nothing loads", () => {
    const missing = path.join(build.dir, "computecore-absent.so");
    const hcs = Hcs.load({ computecore: missing, vmcompute: build.vmcompute });
    expect(hcs.api).toBe("v1");
    expect(hcs.detection.fallbackReason).toContain(missing);
    expect(() => Hcs.load({ computecore: missing, vmcompute: path.join(build.dir, "absent.so") })).toThrow(
      expect.objectContaining({ code: "LIBRARY_LOAD_FAILED", message: expect.stringContaining("absent.so") }),
    );
    expect(() => Hcs.load({ computecore: build.computecoreMissingRequired })).toThrow(expect.objectContaining({ code: "LIBRARY_LOAD_FAILED" }));
  });

  it("honours a forced API from the options or LCOW_HCS_API", () => {
    expect(() => Hcs.load({ computecore: build.computecoreMissingRequired, vmcompute: build.vmcompute, api: "v2" })).toThrow(
      expect.objectContaining({ code: "LIBRARY_LOAD_FAILED", message: expect.stringMatching(/api "v2" was forced/) }),
    );
    expect(Hcs.load({ computecore: build.computecore, vmcompute: build.vmcompute, api: "v1" }).detection).toMatchObject({ api: "v1", fallbackReason: "api v1 forced" });
    process.env["LCOW_HCS_API"] = "v1";
    expect(Hcs.load({ computecore: build.computecore, vmcompute: build.vmcompute }).api).toBe("v1");
    process.env["LCOW_HCS_API"] = "v3";
    expect(() => Hcs.load({ computecore: build.computecore })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("never accepts a handle from the other DLL", async () => {
    const v2 = Hcs.load({ computecore: build.computecore });
    const v1 = Hcs.load({ vmcompute: build.vmcompute });
    await v1.grantVmAccess("mix", "C:\\k");
    const vm = await v1.createComputeSystem("mix", buildLcowUtilityVm({ kernelPath: "C:\\k" }));
    const raw = await v1.backend.open("mix");
    await expectHcsError(v2.backend.start(raw, 1000), "INVALID_ARGUMENT");
    await expectHcsError(v2.backend.closeSystem(raw), "INVALID_ARGUMENT");
    await v1.backend.closeSystem(raw);
    await vm.close();
  });

  it("uses the shared default instance once set", async () => {
    setDefaultHcs(Hcs.load({ computecore: build.computecore }));
    await grantVmAccess("def", ["C:\\k", "C:\\i"]);
    await revokeVmAccess("def", "C:\\i");
    const vm = await ComputeSystem.create("def", buildLcowUtilityVm({ kernelPath: "C:\\k" }));
    expect((await ComputeSystem.enumerate()).map((p) => p.Id)).toEqual(["def"]);
    await vm.close();
  });
});

describe("optional exports", () => {
  it("polls for exits when HcsWaitForComputeSystemExit / HcsWaitForProcessExit are missing", async () => {
    const hcs = Hcs.load({ computecore: build.computecoreNoOptional });
    expect(hcs.backend.optional).toEqual({ waitForSystemExit: false, waitForProcessExit: false });
    const shim = shims[2]!;
    await hcs.grantVmAccess("old", "C:\\k");
    const vm = await hcs.createComputeSystem("old", buildLcowUtilityVm({ kernelPath: "C:\\k" }));
    await vm.start();
    const p = await vm.createProcess({ CommandLine: "/bin/true" });
    await expectHcsError(p.waitForExit({ timeoutMs: 30, pollIntervalMs: 5 }), "TIMEOUT");
    await p.signal("CtrlShutdown");
    expect(await p.waitForExit({ pollIntervalMs: 5 })).toMatchObject({ Exited: true, ExitCode: 130 });
    await expectHcsError(hcs.backend.waitForProcessExit({ api: "v2", systemId: "old", pid: p.pid, stdio: p.stdio }, 10), "INVALID_ARGUMENT");
    await p.close();
    await expectHcsError(vm.waitForExit({ timeoutMs: 30, pollIntervalMs: 5 }), "TIMEOUT");
    shim.exitSystem("old", 0, "GracefulExit");
    expect(await vm.waitForExit({ pollIntervalMs: 5 })).toEqual({ ExitType: "GracefulExit" });
    const raw = await hcs.backend.open("old");
    await expectHcsError(hcs.backend.waitForExit(raw, 10), "NOT_IMPLEMENTED", HRESULT.ERROR_PROC_NOT_FOUND);
    await hcs.backend.closeSystem(raw);
    await vm.close();
  });
});

describe("checkHost", () => {
  it("reports a v2-capable host", async () => {
    const report = await checkHost({ computecore: build.computecore });
    expect(report).toMatchObject({ ok: true, document: "v2", kernelDirect: true, api: "v2", library: build.computecore, problems: [] });
    expect(report.schemaVersions).toContainEqual({ Major: 2, Minor: 1 });
  });

  it("reports builds too old for direct kernel boot or for schema 2", async () => {
    const hcs = Hcs.load({ computecore: build.computecore });
    const uefi = await checkHost({ hcs, windowsBuild: 17763 });
    expect(uefi).toMatchObject({ ok: true, document: "v2", kernelDirect: false, windowsBuild: 17763 });
    expect(uefi.problems[0]).toMatch(/BootThis/);
    expect(await checkHost({ hcs, windowsBuild: 17134 })).toMatchObject({ ok: false, document: "none" });
  });

  it("reports a pre-1809 vmcompute host as able to run the v1 document", async () => {
    shims[1]!.setSchemaVersion(1, 0);
    const report = await checkHost({ vmcompute: build.vmcompute });
    expect(report).toMatchObject({ ok: true, document: "v1", api: "v1", schemaVersions: [{ Major: 1, Minor: 0 }] });
    shims[0]!.setSchemaVersion(1, 0);
    expect(await checkHost({ computecore: build.computecore })).toMatchObject({ ok: false, document: "none" });
  });

  it("reports a service that does not answer, and a fallback reason", async () => {
    shims[1]!.failNext("HcsGetServiceProperties", HRESULT.HCS_E_HYPERV_NOT_INSTALLED);
    const report = await checkHost({ computecore: build.computecoreMissingRequired, vmcompute: build.vmcompute });
    expect(report).toMatchObject({ ok: false, api: "v1" });
    expect(report.fallbackReason).toMatch(/HcsGrantVmAccess/);
    expect(report.error?.code).toBe("SERVICE_UNAVAILABLE");
    expect(report.problems[0]).toMatch(/Hyper-V enabled/);
  });
});
