/**
 * The vmcompute.dll (v1) binding against the Linux shim: pending calls complete
 * through notification callbacks fired from shim threads, queued until a callback
 * is registered; zero leaked handles, callbacks and strings after each test.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  ComputeSystem,
  Hcs,
  HRESULT,
  buildLcowContainerConfig,
  buildLcowUtilityVm,
  isAlreadyStopped,
  isNotFound,
  isNotSupported,
  mappedVirtualDiskRequest,
} from "../src/index.js";
import { expectHcsError, until } from "./helpers.js";
import { Shim, buildShims, type ShimBuild } from "./shim/shim.js";

let build: ShimBuild;
let shim: Shim;
let hcs: Hcs;

const KERNEL = "C:\\lcow\\vmlinux";
const INITRD = "C:\\lcow\\initrd.img";

beforeAll(() => {
  build = buildShims();
  shim = new Shim(build.vmcompute);
  hcs = Hcs.load({ vmcompute: build.vmcompute, defaultTimeoutMs: 5000 });
});
afterAll(() => build.dispose());
beforeEach(() => shim.setDelay(5));
afterEach(async () => {
  expect(await shim.finish()).toEqual({ handles: 0, allocations: 0, badFrees: 0 });
});

async function newVm(id: string): Promise<ComputeSystem> {
  await hcs.grantVmAccess(id, KERNEL);
  await hcs.grantVmAccess(id, INITRD);
  return hcs.createComputeSystem(id, buildLcowUtilityVm({ kernelPath: KERNEL, initrdPath: INITRD }));
}

describe("vmcompute: lifecycle", () => {
  it("loads vmcompute with CoTaskMemFree (hcsshim's choice) by default", () => {
    expect(hcs.api).toBe("v1");
    expect(hcs.detection).toEqual({ api: "v1", library: build.vmcompute, freeFunction: "CoTaskMemFree" });
  });

  it("runs a schema-2 LCOW VM through pending calls and notifications (v1 DLL + v2 document)", async () => {
    const vm = await newVm("v1-uvm");
    expect(vm.api).toBe("v1");
    expect(shim.callCount("HcsRegisterComputeSystemCallback")).toBeGreaterThan(0);
    expect((await vm.getProperties()).State).toBe("Created");
    await vm.start();
    expect((await vm.getProperties()).State).toBe("Running");
    await vm.pause();
    expect((await vm.getProperties()).State).toBe("Paused");
    await vm.resume();
    await vm.addScsiDisk({ lun: 0, path: "C:\\lcow\\sandbox.vhdx" });
    expect(shim.attachmentCount("v1-uvm")).toBe(1);
    await vm.removeScsiDisk({ lun: 0 });
    expect((await hcs.enumerateComputeSystems()).map((p) => p.Id)).toEqual(["v1-uvm"]);
    const exit = vm.waitForExit({ timeoutMs: 2000 });
    await vm.terminate();
    expect(await exit).toEqual({ Status: 0, ExitType: "ForcedExit" });
    // After the exit notification arrived, waiting again answers at once.
    expect(await vm.waitForExit({ timeoutMs: 0 })).toEqual({ Status: 0, ExitType: "ForcedExit" });
    await vm.terminate(); // 0xC0370110: already stopped, tolerated
    const unregisters = shim.callCount("HcsUnregisterComputeSystemCallback");
    await vm.close();
    expect(shim.callCount("HcsUnregisterComputeSystemCallback")).toBe(unregisters + 1);
  });

  it("runs the 2017 v1 ContainerConfig with MappedVirtualDisk hot-add/remove", async () => {
    const config = buildLcowContainerConfig({ name: "svm_1", owner: "lcow", mappedVirtualDisks: [{ ContainerPath: "/tmp/scratch", CreateInUtilityVM: true }] });
    const svm = await hcs.createComputeSystem("svm_1", config);
    expect(JSON.parse(shim.lastDocument())).toEqual(config);
    expect(await svm.getProperties()).toMatchObject({ SystemType: "Container", Owner: "lcow" });
    await svm.start();
    await hcs.grantVmAccess("svm_1", "C:\\layers\\a.vhd");
    await svm.modify(mappedVirtualDiskRequest("Add", { HostPath: "C:\\layers\\a.vhd", ContainerPath: "/mnt/a", ReadOnly: true, CreateInUtilityVM: true }));
    expect(shim.attachmentCount("svm_1")).toBe(2);
    await expectHcsError(svm.modify(mappedVirtualDiskRequest("Add", { HostPath: "C:\\layers\\a.vhd", ContainerPath: "/mnt/a" })), "ALREADY_EXISTS");
    await svm.modify(mappedVirtualDiskRequest("Remove", { ContainerPath: "/mnt/a" }));
    await expectHcsError(svm.modify(mappedVirtualDiskRequest("Remove", { ContainerPath: "/mnt/a" })), "NOT_FOUND", HRESULT.ERROR_NOT_FOUND);
    await svm.shutdown();
    expect(await svm.waitForExit()).toEqual({ Status: 0, ExitType: "GracefulExit" });
    await svm.close();
  });

  it("holds a create completion raised before the callback is registered, and delivers it on registration", async () => {
    shim.setDelay(0);
    const vm = await newVm("v1-queued");
    expect((await vm.getProperties()).State).toBe("Created");
    await vm.close();
  });

  it("opens an existing system with its own callback", async () => {
    const vm = await newVm("v1-open");
    await vm.start();
    const other = await hcs.openComputeSystem("v1-open");
    const exit = other.waitForExit();
    await vm.terminate();
    expect((await exit).ExitType).toBe("ForcedExit");
    await other.close();
    await vm.close();
  });
});

describe("vmcompute: errors", () => {
  it("reports the legacy 0xC037 family and recognises it with the helpers", async () => {
    const json = await expectHcsError(hcs.createComputeSystem("v1-json", "{"), "INVALID_DOCUMENT", HRESULT.VMCOMPUTE_E_INVALID_JSON);
    expect(isNotSupported(json)).toBe(true);
    expect(json.events[0]?.message).toBe("The JSON document is invalid.");
    const missing = await expectHcsError(hcs.openComputeSystem("v1-none"), "NOT_FOUND", HRESULT.VMCOMPUTE_E_SYSTEM_NOT_FOUND);
    expect(isNotFound(missing)).toBe(true);
    expect(missing.hresultName).toBe("VMCOMPUTE_E_SYSTEM_NOT_FOUND");

    const vm = await newVm("v1-err");
    await expectHcsError(newVm("v1-err"), "ALREADY_EXISTS", HRESULT.HCS_E_SYSTEM_ALREADY_EXISTS);
    await expectHcsError(vm.resume(), "INVALID_STATE", HRESULT.VMCOMPUTE_E_INVALID_STATE);
    await expectHcsError(vm.modify({ ResourcePath: "x", RequestType: "Add" }), "INVALID_STATE", HRESULT.VMCOMPUTE_E_INVALID_STATE);
    await vm.start();
    await vm.terminate();
    const raw = await hcs.backend.open("v1-err");
    const stopped = await expectHcsError(hcs.backend.terminate(raw, 1000), "ALREADY_STOPPED", HRESULT.VMCOMPUTE_E_SYSTEM_ALREADY_STOPPED);
    expect(isAlreadyStopped(stopped)).toBe(true);
    await hcs.backend.closeSystem(raw);
    // Modify on a stopped system: 0xC0370105 in the v1 family.
    await expectHcsError(vm.addScsiDisk({ lun: 0, path: "C:\\x.vhdx" }), "INVALID_STATE", HRESULT.VMCOMPUTE_E_INVALID_STATE);
    await vm.close();
  });

  it("create that fails asynchronously: the failure arrives as the create notification's status", async () => {
    const err = await expectHcsError(hcs.createComputeSystem("v1-nogrant", buildLcowUtilityVm({ kernelPath: KERNEL })), "ACCESS_DENIED", HRESULT.E_ACCESSDENIED);
    expect(err.events[0]?.message).toMatch(/Access is denied/);
    expect(err.operation).toBe("HcsCreateComputeSystem");
  });

  it("start that fails asynchronously, and synchronous faults with result documents", async () => {
    const vm = await newVm("v1-fault");
    shim.failNext("HcsStartComputeSystem", HRESULT.HCS_E_TERMINATED_DURING_START, true);
    await expectHcsError(vm.start(), "UNEXPECTED_EXIT", HRESULT.HCS_E_TERMINATED_DURING_START);
    shim.failNext("HcsStartComputeSystem", HRESULT.HCS_E_SERVICE_NOT_AVAILABLE);
    const sync = await expectHcsError(vm.start(), "SERVICE_UNAVAILABLE", HRESULT.HCS_E_SERVICE_NOT_AVAILABLE);
    expect(sync.events).toHaveLength(1);
    shim.failNext("HcsGetComputeSystemProperties", HRESULT.E_ACCESSDENIED);
    await expectHcsError(vm.getProperties(), "ACCESS_DENIED");
    shim.failNext("HcsEnumerateComputeSystems", HRESULT.E_ACCESSDENIED);
    await expectHcsError(hcs.enumerateComputeSystems(), "ACCESS_DENIED");
    shim.failNext("HcsOpenComputeSystem", HRESULT.E_ACCESSDENIED);
    await expectHcsError(hcs.openComputeSystem("v1-fault"), "ACCESS_DENIED");
    shim.failNext("HcsRegisterComputeSystemCallback", HRESULT.HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET);
    await expectHcsError(hcs.openComputeSystem("v1-fault"), "OPERATION_FAILED", HRESULT.HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET);
    shim.failNext("HcsCreateComputeSystem", HRESULT.E_OUTOFMEMORY);
    await expectHcsError(newVm("v1-oom"), "OUT_OF_RESOURCES", HRESULT.E_OUTOFMEMORY);
    shim.failNext("GrantVmAccess", HRESULT.E_ACCESSDENIED);
    await expectHcsError(hcs.grantVmAccess("v1-fault", "C:\\x"), "ACCESS_DENIED");
    await vm.close();
  });

  it("an exit while waiting for a start completion is an unexpected exit", async () => {
    const vm = await newVm("v1-crash");
    shim.setDelay(400);
    const before = shim.callCount("HcsStartComputeSystem");
    const start = vm.start();
    await until(() => shim.callCount("HcsStartComputeSystem") > before);
    shim.exitSystem("v1-crash", HRESULT.VMCOMPUTE_E_UNEXPECTED_EXIT, "UnexpectedExit");
    const err = await expectHcsError(start, "UNEXPECTED_EXIT", HRESULT.VMCOMPUTE_E_UNEXPECTED_EXIT);
    expect(err.operation).toBe("HcsStartComputeSystem");
    expect(await vm.waitForExit({ timeoutMs: 100 })).toEqual({ Status: HRESULT.VMCOMPUTE_E_UNEXPECTED_EXIT | 0, ExitType: "UnexpectedExit" });
    await vm.close();
  });

  it("a service disconnect fails the waiters", async () => {
    const vm = await newVm("v1-disc");
    await vm.start();
    shim.setDelay(300);
    const before = shim.callCount("HcsPauseComputeSystem");
    const pause = vm.pause();
    await until(() => shim.callCount("HcsPauseComputeSystem") > before);
    shim.setDelay(0);
    shim.serviceDisconnect();
    await expectHcsError(pause, "SERVICE_DISCONNECTED");
    // Every later wait on the handle fails the same way, at once.
    await expectHcsError(vm.waitForExit({ timeoutMs: 5000 }), "SERVICE_DISCONNECTED");
    await vm.close();
  });

  it("times out a pending call with our own timer; the late notification is harmless", async () => {
    const vm = await newVm("v1-slow");
    shim.setDelay(200);
    const err = await expectHcsError(vm.start({ timeoutMs: 20 }), "TIMEOUT");
    expect(err.hresult).toBeUndefined();
    expect(err.message).toMatch(/no completion notification within 20 ms/);
    await shim.quiesce();
    shim.setDelay(5);
    expect((await vm.getProperties()).State).toBe("Running");
    await vm.close();
  });

  it("closing fails the waiters of the handle and later calls", async () => {
    const vm = await newVm("v1-close");
    await vm.start();
    const exit = expectHcsError(vm.waitForExit({ timeoutMs: Infinity }), "HANDLE_CLOSED");
    await vm.close();
    await exit;
    await expectHcsError(vm.terminate(), "HANDLE_CLOSED");
  });
});

describe("vmcompute: processes, service, grants", () => {
  it("creates processes with pipes, signals, terminates and polls for exit", async () => {
    const vm = await newVm("v1-proc");
    await expectHcsError(vm.createProcess({ CommandLine: "x" }), "INVALID_STATE", HRESULT.VMCOMPUTE_E_INVALID_STATE);
    await vm.start();
    await expectHcsError(vm.createProcess({ User: "root" }), "INVALID_DOCUMENT", HRESULT.ERROR_INVALID_DATA);
    const p = await vm.createProcess({ CommandLine: "/bin/sh", CreateStdOutPipe: true, CreateStdErrPipe: true });
    expect(p.stdio.stdin).toBeNull();
    expect(p.stdio.stdout).not.toBeNull();
    await expectHcsError(p.waitForExit({ timeoutMs: 30, pollIntervalMs: 5 }), "TIMEOUT");
    await p.signal("CtrlBreak");
    expect(await p.waitForExit({ pollIntervalMs: 5 })).toMatchObject({ Exited: true, ExitCode: 130 });
    await p.terminate(); // already stopped: tolerated
    await expectHcsError(p.signal("CtrlC"), "ALREADY_STOPPED", HRESULT.HCS_E_PROCESS_ALREADY_STOPPED);
    await p.close();
    const q = await vm.createProcess({ CommandLine: "/bin/sh" });
    await q.terminate();
    expect(await q.getProperties()).toMatchObject({ Exited: true, ExitCode: 137 });
    shim.failNext("HcsGetProcessProperties", HRESULT.E_ACCESSDENIED);
    await expectHcsError(q.getProperties(), "ACCESS_DENIED");
    // vmcompute.dll has no wait export; HcsProcess polls instead (above).
    await expectHcsError(hcs.backend.waitForProcessExit({ api: "v1", systemId: "v1-proc", pid: q.pid, stdio: q.stdio }, 10), "NOT_IMPLEMENTED");
    await q.close();
    await vm.close();
  });

  it("service properties, and revoke is not part of the v1 API", async () => {
    const props = await hcs.getServiceProperties();
    expect(props.Properties?.[0]?.SupportedSchemaVersions).toContainEqual({ Major: 2, Minor: 1 });
    shim.failNext("HcsGetServiceProperties", HRESULT.HCS_E_SERVICE_NOT_AVAILABLE);
    const err = await expectHcsError(hcs.getServiceProperties(), "SERVICE_UNAVAILABLE");
    expect(err.events).toHaveLength(1);
    await expectHcsError(hcs.getServiceProperties({ PropertyTypes: ["Memory"] }), "INVALID_DOCUMENT");
    await expectHcsError(hcs.revokeVmAccess("x", "C:\\x"), "NOT_IMPLEMENTED", HRESULT.ERROR_PROC_NOT_FOUND);
  });

  it("frees with LocalFree when configured, without a bad free", async () => {
    const alt = Hcs.load({ vmcompute: build.vmcompute, freeFunction: "LocalFree" });
    expect(alt.detection.freeFunction).toBe("LocalFree");
    await expectHcsError(alt.openComputeSystem("nothing"), "NOT_FOUND");
    expect((await alt.enumerateComputeSystems()).length).toBe(0);
  });
});

describe("vmcompute: coverage", () => {
  it("called every bound vmcompute function", () => {
    const names = [
      "HcsEnumerateComputeSystems", "HcsCreateComputeSystem", "HcsOpenComputeSystem", "HcsCloseComputeSystem", "HcsStartComputeSystem",
      "HcsShutdownComputeSystem", "HcsTerminateComputeSystem", "HcsPauseComputeSystem", "HcsResumeComputeSystem", "HcsGetComputeSystemProperties",
      "HcsModifyComputeSystem", "HcsGetServiceProperties", "HcsRegisterComputeSystemCallback", "HcsUnregisterComputeSystemCallback",
      "HcsCreateProcess", "HcsCloseProcess", "HcsTerminateProcess", "HcsSignalProcess", "HcsGetProcessProperties", "GrantVmAccess", "CloseHandle",
    ];
    expect(names.filter((n) => shim.callCount(n) === 0)).toEqual([]);
  });
});
