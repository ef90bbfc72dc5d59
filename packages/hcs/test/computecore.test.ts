/**
 * The computecore.dll (v2) binding against the Linux shim with the same ABI: every
 * bound function, every error path, zero leaked handles and strings after each test.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ComputeSystem, Hcs, HRESULT, buildLcowUtilityVm, isNotFound, lcowHvSocketServices, memoryUpdateRequest, type ComputeSystemDocument } from "../src/index.js";
import { expectHcsError } from "./helpers.js";
import { Shim, buildShims, type ShimBuild } from "./shim/shim.js";

let build: ShimBuild;
let shim: Shim;
let hcs: Hcs;

const KERNEL = "C:\\Program Files\\Linux Containers\\vmlinux";
const INITRD = "C:\\Program Files\\Linux Containers\\initrd.img";

beforeAll(() => {
  build = buildShims();
  shim = new Shim(build.computecore);
  hcs = Hcs.load({ computecore: build.computecore, defaultTimeoutMs: 5000 });
});
afterAll(() => build.dispose());
beforeEach(() => shim.setDelay(5));
afterEach(async () => {
  expect(await shim.finish()).toEqual({ handles: 0, allocations: 0, badFrees: 0 });
});

async function newVm(id: string, doc: ComputeSystemDocument = buildLcowUtilityVm({ kernelPath: KERNEL, initrdPath: INITRD })): Promise<ComputeSystem> {
  await hcs.grantVmAccess(id, KERNEL);
  await hcs.grantVmAccess(id, INITRD);
  return hcs.createComputeSystem(id, doc);
}

describe("computecore: lifecycle", () => {
  it("loads computecore with LocalFree by default", () => {
    expect(hcs.api).toBe("v2");
    expect(hcs.detection).toEqual({ api: "v2", library: build.computecore, freeFunction: "LocalFree" });
    expect(hcs.backend.optional).toEqual({ waitForSystemExit: true, waitForProcessExit: true });
  });

  it("creates, starts, pauses, resumes, queries, hot-adds/removes a disk, shuts down and closes an LCOW VM", async () => {
    const doc = buildLcowUtilityVm({ owner: "lcow-test", kernelPath: KERNEL, initrdPath: INITRD, hvSocketServices: lcowHvSocketServices() });
    const vm = await newVm("uvm-1", doc);
    // The shim received exactly our document, as UTF-16 decoded back to UTF-8.
    expect(JSON.parse(shim.lastDocument())).toEqual(doc);
    expect(vm.api).toBe("v2");
    expect(await vm.getProperties()).toMatchObject({ Id: "uvm-1", SystemType: "VirtualMachine", Owner: "lcow-test", State: "Created", Stopped: false });

    await vm.start();
    const props = await vm.getProperties({ PropertyTypes: ["Memory", "Statistics"] });
    expect(props.State).toBe("Running");
    expect(props.RuntimeId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);

    await vm.pause();
    expect((await vm.getProperties()).State).toBe("Paused");
    await vm.resume();
    expect((await vm.getProperties()).State).toBe("Running");

    await vm.addScsiDisk({ lun: 3, path: "C:\\lcow\\layer.vhd", readOnly: true });
    expect(JSON.parse(shim.lastDocument())).toEqual({
      ResourcePath: "VirtualMachine/Devices/Scsi/df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments/3",
      RequestType: "Add",
      Settings: { Type: "VirtualDisk", Path: "C:\\lcow\\layer.vhd", ReadOnly: true },
    });
    expect(shim.attachmentCount("uvm-1")).toBe(1);
    await vm.modify(memoryUpdateRequest(2048));
    await vm.removeScsiDisk({ lun: 3 });
    expect(shim.attachmentCount("uvm-1")).toBe(0);

    const listed = await ComputeSystem.enumerate({ Owners: ["lcow-test"] }, { hcs });
    expect(listed.map((p) => p.Id)).toEqual(["uvm-1"]);
    expect(await hcs.enumerateComputeSystems({ Owners: ["nobody"] })).toEqual([]);

    await vm.shutdown();
    expect(await vm.waitForExit({ timeoutMs: 1000 })).toEqual({ Status: 0, ExitType: "GracefulExit" });
    expect((await vm.getProperties()).ExitType).toBe("GracefulExit");
    // A second stop is "already stopped", which hcsshim (and we) treat as success.
    await vm.terminate();
    await vm.shutdown();
    // The raw answer underneath, through a second handle: the documented code, not success.
    const raw = await hcs.backend.open("uvm-1");
    await expectHcsError(hcs.backend.terminate(raw, 1000), "ALREADY_STOPPED", HRESULT.HCS_E_SYSTEM_ALREADY_STOPPED);
    await hcs.backend.closeSystem(raw);
    await vm.close();
    await expectHcsError(vm.start(), "HANDLE_CLOSED");
    expect(vm.closed).toBe(true);
  });

  it("uses all four fixed SCSI controller keys", async () => {
    const vm = await newVm("uvm-scsi", buildLcowUtilityVm({ kernelPath: KERNEL, initrdPath: INITRD, scsiControllers: 4 }));
    await vm.start();
    for (let c = 0; c < 4; c++) await vm.addScsiDisk({ controller: c, lun: 63, path: `C:\\d${c}.vhdx` });
    expect(shim.attachmentCount("uvm-scsi")).toBe(4);
    await vm.terminate();
    await vm.close();
  });

  it("opens a second handle, and closing the last handle terminates the VM (ShouldTerminateOnLastHandleClosed)", async () => {
    const vm = await newVm("uvm-open");
    await vm.start();
    const other = await ComputeSystem.open("uvm-open", { hcs });
    expect((await other.getProperties()).State).toBe("Running");
    await other.close();
    expect((await vm.getProperties()).State).toBe("Running");
    await vm[Symbol.asyncDispose]();
    await expectHcsError(hcs.openComputeSystem("uvm-open"), "NOT_FOUND", HRESULT.HCS_E_SYSTEM_NOT_FOUND);
  });

  it("keeps a VM without ShouldTerminateOnLastHandleClosed running after close", async () => {
    const vm = await newVm("uvm-keep", buildLcowUtilityVm({ kernelPath: KERNEL, initrdPath: INITRD, terminateOnLastHandleClosed: false }));
    await vm.start();
    await vm.close();
    {
      await using again = await hcs.openComputeSystem("uvm-keep");
      expect((await again.getProperties()).State).toBe("Running");
      await again.terminate();
    }
    await expectHcsError(hcs.openComputeSystem("uvm-keep"), "NOT_FOUND");
  });

  it("never closes the handle under a call in flight", async () => {
    const vm = await newVm("uvm-inflight");
    shim.setDelay(80);
    const order: string[] = [];
    const props = vm.getProperties().then((p) => order.push(`props:${p.State}`));
    const closed = vm.close().then(() => order.push("closed"));
    await expectHcsError(vm.getProperties(), "HANDLE_CLOSED");
    await Promise.all([props, closed]);
    expect(order).toEqual(["props:Created", "closed"]);
  });

  it("reports an unexpected exit through HcsWaitForComputeSystemExit", async () => {
    const vm = await newVm("uvm-crash");
    await vm.start();
    const exit = vm.waitForExit({ timeoutMs: 2000 });
    shim.exitSystem("uvm-crash", HRESULT.VMCOMPUTE_E_UNEXPECTED_EXIT, "UnexpectedExit");
    expect(await exit).toEqual({ Status: HRESULT.VMCOMPUTE_E_UNEXPECTED_EXIT | 0, ExitType: "UnexpectedExit" });
    await vm.close();
  });
});

describe("computecore: errors", () => {
  it("duplicate id: HCS_E_SYSTEM_ALREADY_EXISTS with the result document's events", async () => {
    const vm = await newVm("dup");
    const err = await expectHcsError(newVm("dup"), "ALREADY_EXISTS", HRESULT.HCS_E_SYSTEM_ALREADY_EXISTS);
    expect(err.hresultName).toBe("HCS_E_SYSTEM_ALREADY_EXISTS");
    expect(err.hresultHex).toBe("0x8037010F");
    expect(err.operation).toBe("HcsCreateComputeSystem");
    expect(err.systemId).toBe("dup");
    expect(err.events[0]?.message).toMatch(/already exists/);
    await vm.close();
  });

  it("invalid JSON and schema violations are rejected at call time", async () => {
    const bad = await expectHcsError(hcs.createComputeSystem("bad-json", "{\"SchemaVersion\":"), "INVALID_DOCUMENT", HRESULT.HCS_E_INVALID_JSON);
    expect(bad.events).toHaveLength(1);
    const doc = buildLcowUtilityVm({ kernelPath: KERNEL }) as unknown as Record<string, unknown>;
    const both = { ...doc, Container: {} };
    const err = await expectHcsError(hcs.createComputeSystem("bad-schema", JSON.stringify(both)), "INVALID_DOCUMENT", HRESULT.ERROR_INVALID_DATA);
    expect(err.win32OrHresult).toBe(0xd);
    expect(err.message).toMatch(/exactly one of Container, VirtualMachine or HostedSystem/);
    const typo = JSON.parse(JSON.stringify(doc)) as { VirtualMachine: { ComputeTopology: { Memory: Record<string, unknown> } } };
    typo.VirtualMachine.ComputeTopology.Memory["SizeInMb"] = 1024;
    await expectHcsError(hcs.createComputeSystem("bad-field", JSON.stringify(typo)), "INVALID_DOCUMENT", HRESULT.ERROR_INVALID_DATA);
    shim.setSchemaVersion(2, 0);
    await expectHcsError(hcs.createComputeSystem("too-new", JSON.stringify(doc)), "INVALID_DOCUMENT", HRESULT.ERROR_INVALID_DATA);
  });

  it("create without GrantVmAccess fails in the operation result, and the pending handle is closed", async () => {
    const err = await expectHcsError(hcs.createComputeSystem("no-grant", buildLcowUtilityVm({ kernelPath: KERNEL, initrdPath: INITRD })), "ACCESS_DENIED", HRESULT.E_ACCESSDENIED);
    expect(err.events[0]?.message).toMatch(/Access is denied/);
    expect(shim.liveHandles()).toBe(0);
    await expectHcsError(hcs.openComputeSystem("no-grant"), "NOT_FOUND");
  });

  it("modify errors: unknown controller key, missing grant, occupied LUN, empty LUN, stopped system", async () => {
    const vm = await newVm("mod");
    await vm.start();
    const key = await expectHcsError(vm.addScsiDisk({ controller: "0", lun: 1, path: "C:\\a.vhdx" }), "NOT_FOUND", HRESULT.ERROR_NOT_FOUND);
    expect(key.message).toMatch(/SCSI controller '0' does not exist/);
    expect(isNotFound(key)).toBe(true);
    await expectHcsError(vm.addScsiDisk({ lun: 1, path: "C:\\nogrant.vhdx", grant: false }), "ACCESS_DENIED", HRESULT.E_ACCESSDENIED);
    await vm.addScsiDisk({ lun: 1, path: "C:\\a.vhdx" });
    await expectHcsError(vm.addScsiDisk({ lun: 1, path: "C:\\b.vhdx" }), "ALREADY_EXISTS", HRESULT.ERROR_ALREADY_EXISTS);
    await expectHcsError(vm.removeScsiDisk({ lun: 2 }), "NOT_FOUND", HRESULT.ERROR_NOT_FOUND);
    await expectHcsError(vm.modify("{not json"), "INVALID_DOCUMENT", HRESULT.HCS_E_INVALID_JSON);
    await expectHcsError(vm.modify({ ResourcePath: "VirtualMachine/Devices/Battery", RequestType: "Add" }), "INVALID_DOCUMENT", HRESULT.ERROR_INVALID_DATA);
    await vm.terminate();
    await expectHcsError(vm.addScsiDisk({ lun: 5, path: "C:\\a.vhdx" }), "ALREADY_STOPPED", HRESULT.HCS_E_SYSTEM_ALREADY_STOPPED);
    await vm.close();
  });

  it("wrong state: start twice, pause a stopped system", async () => {
    const vm = await newVm("state");
    await vm.start();
    await expectHcsError(vm.start(), "INVALID_STATE", HRESULT.HCS_E_INVALID_STATE);
    await expectHcsError(vm.resume(), "INVALID_STATE", HRESULT.HCS_E_INVALID_STATE);
    await vm.terminate();
    await expectHcsError(vm.pause(), "INVALID_STATE", HRESULT.HCS_E_INVALID_STATE);
    await vm.close();
  });

  it("times out a wait with HCS_E_OPERATION_TIMEOUT, cancels and closes the operation", async () => {
    const vm = await newVm("slow");
    shim.setDelay(300);
    const cancels = shim.callCount("HcsCancelOperation");
    const err = await expectHcsError(vm.start({ timeoutMs: 20 }), "TIMEOUT", HRESULT.HCS_E_OPERATION_TIMEOUT);
    expect(err.message).toMatch(/did not complete within 20 ms/);
    expect(shim.callCount("HcsCancelOperation")).toBe(cancels + 1);
    await shim.quiesce();
    // The abandoned operation still ran to completion inside HCS.
    shim.setDelay(5);
    expect((await vm.getProperties()).State).toBe("Running");
    await vm.close();
  });

  it("a create that times out is terminated and its handle closed", async () => {
    await hcs.grantVmAccess("slow-create", KERNEL);
    await hcs.grantVmAccess("slow-create", INITRD);
    shim.setDelay(200);
    await expectHcsError(hcs.createComputeSystem("slow-create", buildLcowUtilityVm({ kernelPath: KERNEL, initrdPath: INITRD }), { timeoutMs: 10 }), "TIMEOUT");
    await shim.quiesce();
    expect(shim.liveHandles()).toBe(0);
  });

  it("fault injection: NULL operation, failing calls with an attached document, failing completions", async () => {
    const vm = await newVm("faults");
    shim.failNext("HcsCreateOperation", 0);
    await expectHcsError(vm.start(), "OUT_OF_RESOURCES");
    shim.failNext("HcsStartComputeSystem", HRESULT.HCS_E_HYPERV_NOT_INSTALLED);
    const sync = await expectHcsError(vm.start(), "SERVICE_UNAVAILABLE", HRESULT.HCS_E_HYPERV_NOT_INSTALLED);
    // Picked up with HcsGetOperationResult after the call itself failed.
    expect(sync.events[0]?.message).toBe("injected failure");
    shim.failNext("HcsStartComputeSystem", HRESULT.HCS_E_TERMINATED_DURING_START, true);
    await expectHcsError(vm.start(), "UNEXPECTED_EXIT", HRESULT.HCS_E_TERMINATED_DURING_START);
    await vm.start();
    shim.failNext("HcsModifyComputeSystem", HRESULT.HCS_E_SERVICE_DISCONNECT, true);
    await expectHcsError(vm.modify(memoryUpdateRequest(512)), "SERVICE_DISCONNECTED", HRESULT.HCS_E_SERVICE_DISCONNECT);
    shim.failNext("HcsGetComputeSystemProperties", HRESULT.HCS_E_ACCESS_DENIED);
    await expectHcsError(vm.getProperties(), "ACCESS_DENIED", HRESULT.HCS_E_ACCESS_DENIED);
    shim.failNext("HcsEnumerateComputeSystems", HRESULT.HCS_E_SERVICE_NOT_AVAILABLE);
    await expectHcsError(hcs.enumerateComputeSystems(), "SERVICE_UNAVAILABLE");
    shim.failNext("HcsOpenComputeSystem", HRESULT.E_ACCESSDENIED);
    await expectHcsError(hcs.openComputeSystem("faults"), "ACCESS_DENIED");
    shim.failNext("HcsGrantVmAccess", HRESULT.E_ACCESSDENIED);
    await expectHcsError(hcs.grantVmAccess("faults", "C:\\x"), "ACCESS_DENIED", HRESULT.E_ACCESSDENIED);
    shim.failNext("HcsTerminateComputeSystem", HRESULT.HCS_E_SYSTEM_NOT_FOUND);
    await vm.terminate(); // not found counts as stopped
    await vm.terminate();
    await vm.close();
  });

  it("validates arguments before any native call", async () => {
    await expectHcsError(hcs.createComputeSystem("a\0b", "{}"), "INVALID_ARGUMENT");
    await expectHcsError(hcs.createComputeSystem("x", "{}", { timeoutMs: -5 }), "INVALID_ARGUMENT");
    await expectHcsError(hcs.grantVmAccess("x", "C:\\a\0"), "INVALID_ARGUMENT");
    // Inside a document a NUL is JSON-escaped (\u0000), so the string is safe to pass; HCS refuses the value.
    await expectHcsError(hcs.enumerateComputeSystems({ Ids: ["\0"] }), "INVALID_DOCUMENT", HRESULT.HCS_E_INVALID_JSON);
    expect(() => Hcs.load({ computecore: build.computecore, defaultTimeoutMs: 1.5 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("rejects an invalid property query", async () => {
    const vm = await newVm("query");
    await expectHcsError(vm.getProperties({ PropertyTypes: ["Bogus" as "Memory"] }), "INVALID_DOCUMENT", HRESULT.ERROR_INVALID_DATA);
    await vm.close();
  });
});

describe("computecore: processes", () => {
  it("creates a process with stdio pipes, signals it, reads its status and closes pipes with the handle", async () => {
    const vm = await newVm("proc");
    await vm.start();
    const p = await vm.createProcess({ CommandLine: "/bin/sleep 100", CreateStdInPipe: true, CreateStdOutPipe: true, CreateStdErrPipe: true });
    expect(p.pid).toBe(100);
    expect(p.systemId).toBe("proc");
    expect(p.stdio.stdin).not.toBeNull();
    expect(p.stdio.stdout).not.toBeNull();
    expect(p.stdio.stderr).not.toBeNull();
    expect(await p.getProperties()).toEqual({ ProcessId: 100, Exited: false, ExitCode: 0, LastWaitResult: 0 });
    await expectHcsError(p.waitForExit({ timeoutMs: 20 }), "TIMEOUT", HRESULT.HCS_E_OPERATION_TIMEOUT);
    await p.signal("CtrlC");
    expect(await p.waitForExit()).toMatchObject({ Exited: true, ExitCode: 130 });
    await p.terminate(); // already exited: tolerated
    await p.close();
    await expectHcsError(p.getProperties(), "HANDLE_CLOSED");

    const q = await vm.createProcess({ CommandLine: "exit 7" });
    expect(q.stdio).toEqual({ stdin: null, stdout: null, stderr: null });
    expect(await q.waitForExit()).toMatchObject({ ExitCode: 7 });
    await q[Symbol.asyncDispose]();
    const r = await vm.createProcess({ CommandLine: "/bin/init" });
    await r.terminate();
    expect((await r.getProperties()).ExitCode).toBe(137);
    await r.close();
    await vm.terminate();
    await vm.close();
  });

  it("process errors: bad parameters, stopped system, failed completion", async () => {
    const vm = await newVm("proc-err");
    await expectHcsError(vm.createProcess({ WorkingDirectory: "/" }), "INVALID_DOCUMENT", HRESULT.ERROR_INVALID_DATA);
    await expectHcsError(vm.createProcess({ CommandLine: "x" }), "INVALID_STATE", HRESULT.HCS_E_INVALID_STATE);
    await vm.start();
    shim.failNext("HcsCreateProcess", HRESULT.E_ACCESSDENIED, true);
    await expectHcsError(vm.createProcess({ CommandLine: "x", CreateStdOutPipe: true }), "ACCESS_DENIED");
    const p = await vm.createProcess({ CommandLine: "x" });
    await expectHcsError(p.signal("CtrlBogus" as "CtrlC"), "INVALID_DOCUMENT", HRESULT.ERROR_INVALID_DATA);
    shim.failNext("HcsTerminateProcess", HRESULT.E_ACCESSDENIED);
    await expectHcsError(p.terminate(), "ACCESS_DENIED");
    shim.failNext("HcsGetProcessProperties", HRESULT.E_HANDLE);
    await expectHcsError(p.getProperties(), "HANDLE_CLOSED", HRESULT.E_HANDLE);
    await p.close();
    await vm.close();
  });
});

describe("computecore: service and grants", () => {
  it("queries service properties and reports failures with their document", async () => {
    const props = await hcs.getServiceProperties();
    expect(props.Properties?.[0]?.SupportedSchemaVersions).toContainEqual({ Major: 2, Minor: 1 });
    await expectHcsError(hcs.getServiceProperties({ PropertyTypes: ["Nope"] }), "INVALID_DOCUMENT", HRESULT.ERROR_INVALID_DATA);
    shim.failNext("HcsGetServiceProperties", HRESULT.HCS_E_SERVICE_NOT_AVAILABLE);
    const err = await expectHcsError(hcs.getServiceProperties(), "SERVICE_UNAVAILABLE", HRESULT.HCS_E_SERVICE_NOT_AVAILABLE);
    expect(err.events).toHaveLength(1);
  });

  it("revokes a grant, after which a hot-add is denied", async () => {
    const vm = await newVm("revoke");
    await vm.start();
    await hcs.grantVmAccess("revoke", "C:\\r.vhdx");
    await hcs.revokeVmAccess("revoke", "C:\\r.vhdx");
    await expectHcsError(vm.addScsiDisk({ lun: 0, path: "C:\\r.vhdx", grant: false }), "ACCESS_DENIED");
    await expectHcsError(hcs.revokeVmAccess("revoke", "C:\\never.vhdx"), "NOT_FOUND", HRESULT.ERROR_NOT_FOUND);
    await expectHcsError(hcs.grantVmAccess("", "C:\\x"), "INVALID_ARGUMENT", HRESULT.E_INVALIDARG);
    await vm.close();
  });

  it("frees strings with CoTaskMemFree when configured", async () => {
    const alt = Hcs.load({ computecore: build.computecore, freeFunction: "CoTaskMemFree", freeLibrary: build.computecore });
    expect(alt.detection.freeFunction).toBe("CoTaskMemFree");
    expect((await alt.getServiceProperties()).Properties).toHaveLength(1);
    await expectHcsError(alt.openComputeSystem("none"), "NOT_FOUND");
  });
});

describe("computecore: coverage", () => {
  it("called every bound computecore function", () => {
    const names = [
      "HcsCreateOperation", "HcsCloseOperation", "HcsCancelOperation", "HcsGetOperationResult", "HcsWaitForOperationResult",
      "HcsWaitForOperationResultAndProcessInfo", "HcsEnumerateComputeSystems", "HcsCreateComputeSystem", "HcsOpenComputeSystem",
      "HcsCloseComputeSystem", "HcsStartComputeSystem", "HcsShutDownComputeSystem", "HcsTerminateComputeSystem", "HcsPauseComputeSystem",
      "HcsResumeComputeSystem", "HcsGetComputeSystemProperties", "HcsModifyComputeSystem", "HcsWaitForComputeSystemExit", "HcsCreateProcess",
      "HcsCloseProcess", "HcsTerminateProcess", "HcsSignalProcess", "HcsGetProcessProperties", "HcsWaitForProcessExit",
      "HcsGetServiceProperties", "HcsGrantVmAccess", "HcsRevokeVmAccess", "CloseHandle",
    ];
    expect(names.filter((n) => shim.callCount(n) === 0)).toEqual([]);
  });
});
