// The bridge, guest side, against raw frames: negotiation, response shape, concurrency,
// processes with stdio relays, reconnects, shutdown. The guest runs as a plain process here
// (no namespaces: nothing is mounted).
import { rm } from "node:fs/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  HEADER_SIZE,
  Hresult,
  NULL_ACTIVITY_ID,
  NULL_CONTAINER_ID,
  Rpc,
  baseRequest,
  encodeFrame,
  encodeHeader,
  requestType,
  responseTypeOf,
} from "@lcow/gcs-client/protocol";
import { eventually, resultOf, TestGuest } from "./harness.js";
import { runProcess, startFails, startProcess, waitProcess } from "./process-helper.js";

let guest: TestGuest;

beforeEach(async () => {
  guest = await TestGuest.start();
});

afterEach(async () => {
  const crashed = guest.crashed();
  await guest.cleanup();
  expect(crashed, guest.stderr).toBe(false);
});

describe("negotiation", () => {
  it("answers everything but NegotiateProtocol with E_NOTIMPL before it", async () => {
    for (const rpc of [Rpc.ModifySettings, Rpc.DumpStacks, Rpc.ExecuteProcess, Rpc.WaitForProcess]) {
      const r = await guest.conn.request(rpc, baseRequest());
      expect(resultOf(r)).toBe(Hresult.E_NOTIMPL);
      expect(r.type).toBe(responseTypeOf(requestType(rpc)));
    }
  });

  it("rejects version ranges that exclude 4 and accepts those that include it", async () => {
    for (const [min, max] of [
      [1, 3],
      [5, 10],
    ] as const) {
      const r = await guest.conn.request(Rpc.NegotiateProtocol, { ContainerId: "", ActivityId: NULL_ACTIVITY_ID, MinimumVersion: min, MaximumVersion: max });
      expect(resultOf(r)).toBe(Hresult.VMCOMPUTE_UNSUPPORTED_PROTOCOL_VERSION);
      expect(r.body.ErrorRecords).toHaveLength(1);
    }
    expect(resultOf(await guest.conn.request(Rpc.DumpStacks, baseRequest()))).toBe(Hresult.E_NOTIMPL);
    const ok = await guest.conn.request(Rpc.NegotiateProtocol, { ContainerId: "", ActivityId: NULL_ACTIVITY_ID, MinimumVersion: 1, MaximumVersion: 10 });
    expect(ok.body).toEqual({
      Result: 0,
      ActivityId: NULL_ACTIVITY_ID,
      Version: 4,
      Capabilities: {
        SupportedSchemaVersions: [{ Major: 2, Minor: 1 }],
        RuntimeOsType: "Linux",
        GuestDefinedCapabilities: { NamespaceAddRequestSupported: true, SignalProcessSupported: true, DumpStacksSupported: true, DeleteContainerStateSupported: true },
      },
    });
    expect(resultOf(await guest.conn.request(Rpc.DumpStacks, baseRequest()))).toBe(0);
  });

  it("replies with the response type, the same id, the ActivityId echoed and no trailing newline", async () => {
    const activity = "0123abcd-0000-0000-0000-000000000001";
    const r = await guest.conn.request(Rpc.NegotiateProtocol, { ContainerId: "", ActivityId: activity, MinimumVersion: 4, MaximumVersion: 4 }, 0n);
    expect(r.type).toBe(0x20100b01);
    expect(r.id).toBe(0n);
    expect(r.body.ActivityId).toBe(activity);
    expect(r.raw.endsWith("}")).toBe(true);
    const big = await guest.conn.request(Rpc.DumpStacks, baseRequest(), 0xffff_ffff_ffff_fff0n);
    expect(big.id).toBe(0xffff_ffff_ffff_fff0n);
  });
});

describe("after negotiation", () => {
  beforeEach(async () => {
    expect(resultOf(await guest.conn.negotiate())).toBe(0);
  });

  it("answers unknown and unimplemented RPCs with E_NOTIMPL, and container RPCs for the VM with 0xC037010E", async () => {
    expect(resultOf(await guest.conn.request(0x0010_1f01, baseRequest()))).toBe(Hresult.E_NOTIMPL);
    expect(resultOf(await guest.conn.request(Rpc.UpdateContainer, baseRequest()))).toBe(Hresult.E_NOTIMPL);
    expect(resultOf(await guest.conn.request(Rpc.ModifyServiceSettings, baseRequest()))).toBe(Hresult.E_NOTIMPL);
    for (const rpc of [Rpc.SignalProcess, Rpc.ResizeConsole, Rpc.GetProperties]) {
      const r = await guest.conn.request(rpc, { ...baseRequest(), ProcessId: 1 });
      expect(resultOf(r)).toBe(Hresult.VMCOMPUTE_SYSTEM_NOT_FOUND);
      expect(r.body.ErrorMessage).toMatch(/not found/);
      expect(r.body.ErrorRecords).toEqual([expect.objectContaining({ Result: r.body.Result, Message: r.body.ErrorMessage })]);
    }
  });

  it("fails unknown resource types and unsupported request types, and reads absent RequestType as Add", async () => {
    expect(resultOf(await guest.conn.modify({ ResourceType: "Bogus", RequestType: "Add", Settings: {} }))).toBe(Hresult.E_FAIL);
    expect(resultOf(await guest.conn.modify({ ResourceType: "SCSIDevice", RequestType: "Add", Settings: {} }))).toBe(Hresult.E_FAIL);
    expect(resultOf(await guest.conn.modify({ ResourceType: "MappedDirectory", Settings: {} }))).toBe(Hresult.E_NOTIMPL);
    // No RequestType: an Add, which fails on its settings.
    const add = await guest.conn.modify({ ResourceType: "CombinedLayers", Settings: { ContainerRootPath: "relative" } });
    expect(resultOf(add)).toBe(Hresult.E_INVALIDARG);
    // A SCSIDevice Remove of a LUN never used (absent Controller and Lun = 0:0) succeeds.
    expect(resultOf(await guest.conn.modify({ ResourceType: "SCSIDevice", RequestType: "Remove", Settings: {} }))).toBe(0);
    // Go's decoder matches keys case-insensitively.
    expect(resultOf(await guest.conn.modify({ resourcetype: "SCSIDevice", requesttype: "Remove", settings: { lun: 3 } }))).toBe(0);
  });

  it("answers bad JSON and wrongly typed fields with 0xC037010D, and keeps serving", async () => {
    const body = Buffer.from("{not json");
    const frame = Buffer.alloc(HEADER_SIZE + body.length);
    encodeHeader({ type: requestType(Rpc.DumpStacks), size: frame.length, id: 7n }, frame);
    body.copy(frame, HEADER_SIZE);
    const answer = guest.conn.response(7n);
    guest.conn.write(frame);
    expect(resultOf(await answer)).toBe(Hresult.VMCOMPUTE_INVALID_JSON);
    expect(resultOf(await guest.conn.request(Rpc.DumpStacks, [1, 2]))).toBe(Hresult.VMCOMPUTE_INVALID_JSON);
    expect(resultOf(await guest.conn.modify({ ResourceType: "MappedVirtualDisk", Settings: { Lun: "one" } }))).toBe(Hresult.VMCOMPUTE_INVALID_JSON);
    const exec = await guest.conn.request(Rpc.ExecuteProcess, { ...baseRequest(), Settings: { ProcessParameters: "{nope", VsockStdioRelaySettings: {} } });
    expect(resultOf(exec)).toBe(Hresult.VMCOMPUTE_INVALID_JSON);
    const notString = await guest.conn.request(Rpc.ExecuteProcess, { ...baseRequest(), Settings: { ProcessParameters: { CommandArgs: ["true"] } } });
    expect(resultOf(notString)).toBe(Hresult.VMCOMPUTE_INVALID_JSON);
    expect(resultOf(await guest.conn.request(Rpc.DumpStacks, baseRequest()))).toBe(0);
  });

  it("runs /bin/sh with stdin, stdout and stderr relayed, and reports exit code 3", async () => {
    const p = await startProcess(guest, { CommandArgs: ["/bin/sh", "-c", "cat; echo err >&2; exit 3"], CreateStdInPipe: true, CreateStdOutPipe: true, CreateStdErrPipe: true });
    expect(p.pid).toBeGreaterThan(1);
    const exit = waitProcess(guest, p.pid);
    p.stdin!.end("hello through the relay\n");
    expect((await p.stdout!).toString()).toBe("hello through the relay\n");
    expect((await p.stderr!).toString()).toBe("err\n");
    const w = await exit;
    expect(w.body).toEqual({ Result: 0, ActivityId: NULL_ACTIVITY_ID, ExitCode: 3 });
    p.stdin!.destroy();
    // Removed after the first completed wait.
    expect(resultOf(await waitProcess(guest, p.pid))).toBe(Hresult.ERROR_NOT_FOUND);
  });

  it("reports a signal death as 4294967295", async () => {
    const p = await startProcess(guest, { CommandArgs: ["/bin/sh", "-c", "kill -9 $$"] });
    expect((await waitProcess(guest, p.pid)).body.ExitCode).toBe(4294967295);
  });

  it("runs with an empty environment when none is given, resolving args[0] with the guest's PATH, in WorkingDirectory", async () => {
    const env = await runProcess(guest, ["env"]);
    expect(env).toMatchObject({ exitCode: 0, stderr: "" });
    expect(env.stdout.toString()).toBe("");
    const pwd = await runProcess(guest, ["sh", "-c", 'echo "$PWD $FOO"'], undefined, { WorkingDirectory: "/usr", Environment: { FOO: "bar" } });
    expect(pwd.stdout.toString()).toBe("/usr bar\n");
    const line = await runProcess(guest, [], undefined, { CommandLine: `sh -c 'echo "a  b" \\$x'` });
    expect(line.stdout.toString()).toBe("a  b $x\n");
  });

  it("fails ExecuteProcess for a missing binary, a missing working directory and a port nobody listens on", async () => {
    const missing = await startFails(guest, { CommandArgs: ["no-such-binary-anywhere"] });
    expect(resultOf(missing)).toBe(Hresult.E_FAIL);
    expect(missing.body.ErrorMessage).toMatch(/not found/);
    const cwd = await startFails(guest, { CommandArgs: ["true"], WorkingDirectory: "/no/such/dir" });
    expect(resultOf(cwd)).toBe(Hresult.E_FAIL);
    const params = JSON.stringify({ CommandArgs: ["true"], CreateStdOutPipe: true });
    const r = await guest.conn.request(Rpc.ExecuteProcess, { ...baseRequest(), Settings: { ProcessParameters: params, VsockStdioRelaySettings: { StdOut: 999 } } });
    expect(resultOf(r)).toBe(Hresult.E_FAIL);
    expect(r.body.ErrorMessage).toMatch(/dialing stdout/);
  });

  it("handles requests concurrently: a quick DumpStacks overtakes a slow WaitForProcess", async () => {
    const p = await startProcess(guest, { CommandArgs: ["sleep", "0.5"] });
    const waitId = guest.conn.send(Rpc.WaitForProcess, { ...baseRequest(), ProcessId: p.pid, TimeoutInMs: 0xffff_ffff });
    const wait = guest.conn.response(waitId);
    const dump = await guest.conn.request(Rpc.DumpStacks, baseRequest());
    expect(String(dump.body.GuestStacks)).toContain(`process ${p.pid}: ["sleep","0.5"] running`);
    expect(String(dump.body.GuestStacks)).toContain(`WaitForProcess id ${waitId}`);
    expect((await wait).body.ExitCode).toBe(0);
    const order = guest.conn.frames.map((f) => f.id);
    expect(order.indexOf(dump.id)).toBeLessThan(order.indexOf(waitId));
  });

  it("times out a wait with 0xC0370109 without ending the process or other waits", async () => {
    const p = await startProcess(guest, { CommandArgs: ["sleep", "0.4"] });
    const long = waitProcess(guest, p.pid);
    expect(resultOf(await waitProcess(guest, p.pid, 50))).toBe(Hresult.VMCOMPUTE_TIMEOUT);
    expect((await long).body.ExitCode).toBe(0);
    expect(resultOf(await waitProcess(guest, p.pid))).toBe(Hresult.ERROR_NOT_FOUND);
  });

  it("starts the next connection un-negotiated after the host drops one, and keeps its processes", async () => {
    const p = await startProcess(guest, { CommandArgs: ["sleep", "0.3"] });
    guest.conn.socket.destroy();
    const conn = await guest.reconnect();
    expect(resultOf(await conn.request(Rpc.DumpStacks, baseRequest()))).toBe(Hresult.E_NOTIMPL);
    expect(resultOf(await conn.negotiate())).toBe(0);
    expect((await waitProcess(guest, p.pid)).body.ExitCode).toBe(0);
  });

  it("closes the connection when framing is lost (Size < 16 or over the limit), then re-dials", async () => {
    const small = Buffer.alloc(HEADER_SIZE);
    encodeHeader({ type: requestType(Rpc.DumpStacks), size: 8, id: 1n }, small);
    guest.conn.write(small);
    await guest.conn.closed;
    let conn = await guest.reconnect();
    expect(resultOf(await conn.negotiate())).toBe(0);
    const huge = Buffer.alloc(HEADER_SIZE);
    encodeHeader({ type: requestType(Rpc.DumpStacks), size: 0xffff_fff0, id: 2n }, huge);
    conn.write(huge);
    await conn.closed;
    conn = await guest.reconnect();
    expect(resultOf(await conn.request(Rpc.DumpStacks, baseRequest()))).toBe(Hresult.E_NOTIMPL);
    expect(guest.child.exitCode).toBe(null);
  });

  it("shuts down on ShutdownForced without a response: kills its processes, closes the stream, exits 0", async () => {
    const p = await startProcess(guest, { CommandArgs: ["sleep", "60"] });
    const wait = waitProcess(guest, p.pid).catch((e: Error) => e);
    guest.conn.write(encodeFrame(requestType(Rpc.ShutdownForced), 50n, { ContainerId: NULL_CONTAINER_ID, ActivityId: NULL_ACTIVITY_ID }));
    await guest.conn.closed;
    expect(await guest.exited).toEqual({ code: 0, signal: null });
    expect(guest.conn.frames.some((f) => f.id === 50n)).toBe(false);
    expect(await wait).toBeInstanceOf(Error);
    expect(() => process.kill(p.pid, 0)).toThrow();
  });

  it("exits 0 once the host's endpoint has been gone for 10 s", async () => {
    await guest.bridge.close();
    await rm(guest.bridge.path, { force: true });
    guest.conn.socket.destroy();
    // The guest re-dials into nothing from here on.
    const started = Date.now();
    expect(await guest.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeGreaterThanOrEqual(9_000);
  }, 30_000);

  it("honours ShutdownGraceful: SIGTERM to processes first", async () => {
    const p = await startProcess(guest, { CommandArgs: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"] });
    guest.conn.send(Rpc.ShutdownGraceful, baseRequest());
    await guest.conn.closed;
    expect(await guest.exited).toEqual({ code: 0, signal: null });
    await eventually(() => {
      try {
        process.kill(p.pid, 0);
        return false;
      } catch {
        return true;
      }
    });
  });
});
