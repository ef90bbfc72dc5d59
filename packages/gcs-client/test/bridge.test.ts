// GcsBridge against a scripted guest: matching by id in any order, the write queue, timeouts
// with late answers dropped, failures mapped to codes, and teardown on every kind of bad input.
// (vitest fails the run on any unhandled rejection, so each test also checks there is none.)
import { once } from "node:events";
import { describe, expect, it } from "vitest";
import { GcsBridge } from "../src/bridge.js";
import { HRESULT_CODES } from "../src/bridge-errors.js";
import { GcsError } from "../src/errors.js";
import { encodeFrame, encodeHeader, Hresult, linuxCapabilities, Rpc, requestType, responseTypeOf, toWireHresult } from "../src/protocol/index.js";
import { duplexPair } from "./duplex-pair.js";
import { bridgePair, FakeGuest, rejectionOf, within } from "./helpers.js";

const negotiateAnswer = { Version: 4, Capabilities: linuxCapabilities() };

async function negotiated(options: ConstructorParameters<typeof GcsBridge>[1] = {}): Promise<{ bridge: GcsBridge; guest: FakeGuest }> {
  const pair = bridgePair(options);
  const done = pair.bridge.negotiate();
  pair.guest.reply(await pair.guest.next(), negotiateAnswer);
  await within(done, 5000, "negotiate");
  return pair;
}

const scsi = (lun: number) => ({ ResourceType: "SCSIDevice", RequestType: "Remove" as const, Settings: { Lun: lun } });

describe("requests and responses", () => {
  it("numbers requests from 0 and matches answers that come in any order", async () => {
    const { bridge, guest } = bridgePair();
    const calls: Array<Promise<unknown>> = [bridge.modifySettings(scsi(1)), bridge.dumpStacks(), bridge.modifySettings(scsi(3))];
    const frames = [await guest.next(), await guest.next(), await guest.next()];
    expect(frames.map((f) => f.id)).toEqual([0n, 1n, 2n]);
    expect(frames.map((f) => f.type)).toEqual([requestType(Rpc.ModifySettings), requestType(Rpc.DumpStacks), requestType(Rpc.ModifySettings)]);
    guest.reply(frames[1]!, { GuestStacks: "stacks of 1" });
    guest.reply(frames[2]!);
    expect(await within(calls[2]!, 5000, "call 2")).toBeUndefined();
    expect(await within(calls[1]!, 5000, "call 1")).toBe("stacks of 1");
    expect(bridge.pendingCount).toBe(1);
    guest.reply(frames[0]!);
    await within(calls[0]!, 5000, "call 0");
    expect(bridge.pendingCount).toBe(0);
    await bridge.close();
  });

  it("writes frames whole and in order through one queue, under back-pressure", async () => {
    const { bridge, guest } = bridgePair();
    // 40 requests of ~60 KiB each overflow the stream's 16 KiB buffer many times over.
    const path = "/x".repeat(30_000);
    const calls = Array.from({ length: 40 }, (_, i) => bridge.addCombinedLayers({ ContainerRootPath: `${path}/${i}` }));
    const frames = [];
    for (let i = 0; i < 40; i++) frames.push(await guest.next());
    expect(frames.map((f) => Number(f.id))).toEqual([...Array(40).keys()]);
    frames.forEach((f, i) => expect((f.body["Request"] as { Settings: { ContainerRootPath: string } }).Settings.ContainerRootPath).toBe(`${path}/${i}`));
    for (const f of frames.reverse()) guest.reply(f);
    await within(Promise.all(calls), 5000, "40 answers");
    await bridge.close();
  });

  it("refuses a request larger than maxMessageSize without sending it or spending an id", async () => {
    const { bridge, guest } = bridgePair({ maxMessageSize: 4096 });
    const err = await rejectionOf(bridge.addCombinedLayers({ ContainerRootPath: "/" + "a".repeat(5000) }));
    expect(err).toMatchObject({ code: "MESSAGE_TOO_LARGE" });
    expect(err.message).toMatch(/ModifySettings: the request is \d+ bytes, over the bridge's limit of 4096/);
    const ok = bridge.dumpStacks();
    const frame = await guest.next();
    expect(frame.id).toBe(0n);
    guest.reply(frame, {});
    expect(await within(ok, 5000, "DumpStacks")).toBe("");
    expect(guest.received).toHaveLength(1);
    await bridge.close();
  });

  it("checks its options", () => {
    const [a] = duplexPair();
    expect(() => new GcsBridge(a, { timeoutMs: 0 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => new GcsBridge(a, { waitTimeoutMs: -1 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => new GcsBridge(a, { maxMessageSize: 8 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    a.destroy();
  });
});

describe("timeouts and cancellation", () => {
  it("rejects a slow RPC with TIMEOUT, keeps its id registered, and drops the late answer", async () => {
    const { bridge, guest } = bridgePair({ timeoutMs: 10_000 });
    const slow = bridge.modifySettings(scsi(1), { timeoutMs: 50 });
    const frame = await guest.next();
    const err = await rejectionOf(slow);
    expect(err).toBeInstanceOf(GcsError);
    expect(err).toMatchObject({ code: "TIMEOUT", operation: "ModifySettings" });
    expect(err.message).toBe("ModifySettings (id 0) got no answer within 50 ms; a late answer will be dropped");
    expect(bridge.pendingCount).toBe(1);
    // The late answer (even a failing one) is not an unknown id: the bridge stays up.
    guest.send(encodeFrame(responseTypeOf(frame.type), frame.id, { Result: toWireHresult(Hresult.E_FAIL) }, { newline: false }));
    const next = bridge.dumpStacks();
    guest.reply(await guest.next(), { GuestStacks: "still here" });
    expect(await within(next, 5000, "the next RPC")).toBe("still here");
    expect(bridge.pendingCount).toBe(0);
    expect(bridge.closeReason).toBeUndefined();
    await bridge.close();
  });

  it("stops waiting when the signal aborts (CANCELLED), with the same late-answer rule", async () => {
    const { bridge, guest } = bridgePair();
    const controller = new AbortController();
    const call = bridge.dumpStacks({ signal: controller.signal });
    const frame = await guest.next();
    controller.abort(new Error("user gave up"));
    const err = await rejectionOf(call);
    expect(err).toMatchObject({ code: "CANCELLED", operation: "DumpStacks" });
    expect((err.cause as Error).message).toBe("user gave up");
    guest.reply(frame, { GuestStacks: "late" });
    await new Promise((r) => setTimeout(r, 20));
    expect(bridge.pendingCount).toBe(0);
    expect(bridge.closeReason).toBeUndefined();
    expect(await rejectionOf(bridge.dumpStacks({ signal: AbortSignal.abort() }))).toMatchObject({ code: "CANCELLED" });
    expect(guest.received).toHaveLength(1);
    await bridge.close();
  });

  it("gives WaitForProcess its own timeout, and records an exit that comes after it", async () => {
    const { bridge, guest } = await negotiated({ timeoutMs: 10_000, waitTimeoutMs: 60 });
    const started = bridge.executeProcess({ CommandArgs: ["true"] });
    const exec = await guest.next();
    expect(exec.body["Settings"]).toEqual({ ProcessParameters: '{"CommandArgs":["true"]}', VsockStdioRelaySettings: {} });
    guest.reply(exec, { ProcessId: 7 });
    const proc = await within(started, 5000, "ExecuteProcess");
    expect([proc.stdin, proc.stdout, proc.stderr]).toEqual([null, null, null]);
    const wait = await guest.next();
    expect(wait.body).toMatchObject({ ProcessId: 7, TimeoutInMs: 0xffff_ffff });
    expect(await rejectionOf(proc.wait())).toMatchObject({ code: "TIMEOUT", operation: "WaitForProcess" });
    expect(proc.exitCode).toBeUndefined();
    guest.reply(wait, { ExitCode: 9 });
    await new Promise((r) => setTimeout(r, 20));
    expect(proc.exitCode).toBe(9);
    expect(bridge.closeReason).toBeUndefined();
    await bridge.close();
  });

  it("times out shutdown() when the guest keeps the bridge open, and swallows an answer to it", async () => {
    const { bridge, guest } = bridgePair();
    const err = await rejectionOf(bridge.shutdown(true, { timeoutMs: 50 }));
    expect(err).toMatchObject({ code: "TIMEOUT", operation: "ShutdownForced" });
    guest.reply(await guest.next());
    const next = bridge.dumpStacks();
    guest.reply(await guest.next());
    await within(next, 5000, "an RPC after the shutdown timeout");
    expect(bridge.closeReason).toBeUndefined();
    await bridge.close();
  });
});

describe("guest failures", () => {
  const cases: Array<[string, number, string]> = [
    ...[...HRESULT_CODES].map(([hr, code]): [string, number, string] => [`0x${hr.toString(16)}`, hr, code]),
    ["E_FAIL (unmapped)", Hresult.E_FAIL, "RPC_FAILED"],
    ["an HRESULT we never heard of", 0x8000_ffff, "RPC_FAILED"],
  ];
  it.each(cases)("maps %s to its code, keeping hresult, records and the guest's message", async (_name, hresult, code) => {
    const { bridge, guest } = await negotiated();
    const call = bridge.removeScsiDevice({ Controller: 1, Lun: 2 });
    const frame = await guest.next();
    const record = { Result: toWireHresult(hresult), Message: "boom", ModuleName: "gcs", FileName: "f.go", Line: 1 };
    guest.send(
      encodeFrame(responseTypeOf(frame.type), frame.id, { Result: toWireHresult(hresult), ActivityId: "x", ErrorMessage: "guest says no", ErrorRecords: [record, "junk"] }, { newline: false }),
    );
    const err = await rejectionOf(call);
    expect(err).toMatchObject({ name: "GcsError", code, hresult, operation: "ModifySettings", records: [record] });
    expect(err.message).toMatch(new RegExp(`^ModifySettings failed in the guest with 0x${hresult.toString(16)}.*: guest says no$`));
    expect(bridge.closeReason).toBeUndefined();
    await bridge.close();
  });

  it("hints at negotiate() when the guest answers E_NOTIMPL before it", async () => {
    const { bridge, guest } = bridgePair();
    const call = bridge.dumpStacks();
    guest.send(encodeFrame(responseTypeOf((await guest.next()).type), 0n, { Result: toWireHresult(Hresult.E_NOTIMPL), ErrorMessage: "bridge: function not supported" }));
    const err = await rejectionOf(call);
    expect(err).toMatchObject({ code: "NOT_IMPLEMENTED", hresult: Hresult.E_NOTIMPL });
    expect(err.message).toBe("DumpStacks failed in the guest with 0x80004001 (E_NOTIMPL): bridge: function not supported (was negotiate() called first?)");
    await bridge.close();
  });

  it.each([
    ["a version other than 4", { ...negotiateAnswer, Version: 3 }, /chose version 3/],
    ["a Windows GCS", { Version: 4, Capabilities: { ...linuxCapabilities(), RuntimeOsType: "Windows" } }, /"Windows" GCS/],
    ["no RuntimeOsType (a Windows GCS)", { Version: 4, Capabilities: { SupportedSchemaVersions: [] } }, /"Windows" GCS/],
  ])("fails negotiate() with UNSUPPORTED_VERSION for %s", async (_name, answer, message) => {
    const { bridge, guest } = bridgePair();
    const call = bridge.negotiate();
    guest.reply(await guest.next(), answer);
    const err = await rejectionOf(call);
    expect(err).toMatchObject({ code: "UNSUPPORTED_VERSION", operation: "NegotiateProtocol" });
    expect(err.message).toMatch(message);
    expect(bridge.protocolVersion).toBeUndefined();
    await bridge.close();
  });

  it("fails negotiate() with UNSUPPORTED_VERSION when the guest refuses the range", async () => {
    const { bridge, guest } = bridgePair();
    const call = bridge.negotiate();
    guest.send(encodeFrame(0x20100b01, 0n, { Result: toWireHresult(Hresult.VMCOMPUTE_UNSUPPORTED_PROTOCOL_VERSION), ErrorMessage: "unsupported" }));
    await guest.next();
    expect(await rejectionOf(call)).toMatchObject({ code: "UNSUPPORTED_VERSION", hresult: 0xc037010c });
    await bridge.close();
  });

  it("rejects a wait for a pid the guest no longer knows with NOT_FOUND", async () => {
    const { bridge, guest } = await negotiated();
    const call = bridge.waitForProcess(412);
    guest.send(encodeFrame(0x20100601, (await guest.next()).id, { Result: toWireHresult(Hresult.ERROR_NOT_FOUND), ErrorMessage: "process 412 not found" }));
    expect(await rejectionOf(call)).toMatchObject({ code: "NOT_FOUND", hresult: 0x80070490 });
    await bridge.close();
  });
});

describe("notifications", () => {
  it("emits container notifications, also for containers it never created, between responses", async () => {
    const { bridge, guest } = await negotiated();
    const seen: unknown[] = [];
    bridge.on("notification", (n) => seen.push(n));
    const call = bridge.dumpStacks();
    const frame = await guest.next();
    const note = (id: string) => encodeFrame(0x30100101, 0n, { ContainerId: id, ActivityId: "", Type: "UnexpectedExit", Operation: "None", Result: 0 }, { newline: false });
    // One chunk: two notifications around the response.
    guest.send(Buffer.concat([note("a".repeat(64)), guest.responseBytes(frame, { GuestStacks: "s" }), note("unknown")]));
    expect(await within(call, 5000, "DumpStacks")).toBe("s");
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual([expect.objectContaining({ ContainerId: "a".repeat(64) }), expect.objectContaining({ ContainerId: "unknown", Type: "UnexpectedExit" })]);
    await bridge.close();
  });
});

describe("teardown", () => {
  const header = (type: number, size: number, id: bigint): Buffer => Buffer.from(encodeHeader({ type, size, id }));
  const cases: Array<[string, (pendingType: number) => Buffer, RegExp]> = [
    ["a Size below 16", () => header(0x20100c01, 15, 0n), /has Size 15; a frame is 16 to/],
    ["a Size above maxMessageSize", () => header(0x20100c01, 4097, 0n), /has Size 4097; a frame is 16 to 4096 bytes/],
    ["a response to no request", () => encodeFrame(0x20100c01, 99n, { Result: 0 }), /with id 99, which matches no request/],
    ["a response of the wrong RPC", () => encodeFrame(0x20100a01, 0n, { Result: 0 }), /id 0, a DumpStacks request, with ModifySettings/],
    ["a request from the guest", () => encodeFrame(0x10100c01, 0n, {}), /the guest sent DumpStacks \(type 0x10100c01\)/],
    ["a notification type other than 0x30100101", () => encodeFrame(0x30100201, 0n, {}), /type 0x30100201/],
    ["a message kind of 0", () => encodeFrame(0x00100c01, 0n, {}), /type 0x00100c01/],
    ["a payload that is not JSON", () => Buffer.concat([header(0x20100c01, 16 + 5, 0n), Buffer.from("{nope")]), /payload is not JSON/],
    ["a payload that is a JSON array", () => encodeFrame(0x20100c01, 0n, [1]), /payload is not a JSON object/],
    ["a Result that is not a number", () => encodeFrame(0x20100c01, 0n, { Result: "0" }), /Result "0" is not a 32-bit HRESULT/],
    ["a Result out of the int32 range", () => encodeFrame(0x20100c01, 0n, { Result: 2 ** 40 }), /is not a 32-bit HRESULT/],
  ];

  it.each(cases)("tears down on %s, failing every pending RPC with PROTOCOL", async (_name, bad, message) => {
    const { bridge, guest } = bridgePair({ maxMessageSize: 4096 });
    const closed = once(bridge, "close");
    const pending = [bridge.dumpStacks(), bridge.waitForProcess(1)];
    // One that already timed out: its id is still registered, and the teardown must not touch it.
    const timedOut = rejectionOf(bridge.modifySettings(scsi(1), { timeoutMs: 1 }));
    await Promise.all([guest.next(), guest.next(), guest.next()]);
    expect(await timedOut).toMatchObject({ code: "TIMEOUT" });
    guest.send(bad(0x10100c01));
    const errors = await Promise.all(pending.map((p) => rejectionOf(p)));
    expect(errors.map((e) => e.code)).toEqual(["PROTOCOL", "PROTOCOL"]);
    expect(errors[0]!.message).toMatch(/^DumpStacks: /);
    expect(errors[1]!).toMatchObject({ operation: "WaitForProcess" });
    expect((errors[0]!.cause as GcsError).message).toMatch(message);
    const [reason] = (await within(closed, 5000, "the close event")) as [GcsError];
    expect(reason).toBe(bridge.closeReason);
    expect(reason.code).toBe("PROTOCOL");
    expect(await bridge.closed).toBe(reason);
    expect(bridge.pendingCount).toBe(0);
    expect(await rejectionOf(bridge.dumpStacks())).toMatchObject({ code: "PROTOCOL" });
    expect(guest.ended).toBe(true);
  });

  it("tears down with PROTOCOL when the stream ends inside a frame", async () => {
    const { bridge, guest } = bridgePair();
    const call = bridge.dumpStacks();
    const frame = await guest.next();
    guest.send(guest.responseBytes(frame, {}).subarray(0, 20));
    guest.stream.end();
    const err = await rejectionOf(call);
    expect(err.code).toBe("PROTOCOL");
    expect((err.cause as Error).message).toBe("stream ended inside a frame (20 bytes of it received)");
  });

  it("closes with CLOSED on a clean EOF, and on a stream error keeping it as the cause", async () => {
    const first = bridgePair();
    const a = first.bridge.dumpStacks();
    await first.guest.next();
    first.guest.stream.end();
    expect(await rejectionOf(a)).toMatchObject({ code: "CLOSED", message: "DumpStacks: the guest closed the bridge" });

    const [host, guestEnd] = duplexPair();
    const bridge = new GcsBridge(host);
    const b = bridge.dumpStacks();
    const boom = new Error("ECONNRESET");
    host.destroy(boom);
    const err = await rejectionOf(b);
    expect(err.code).toBe("CLOSED");
    expect(((err.cause as GcsError).cause as Error).message).toBe("ECONNRESET");
    guestEnd.destroy();
  });

  it("close() fails what is pending with CLOSED, is idempotent, and later calls fail at once", async () => {
    const { bridge, guest } = bridgePair();
    const closes: unknown[] = [];
    bridge.on("close", (r) => closes.push(r));
    const call = bridge.modifySettings(scsi(1));
    await guest.next();
    await bridge.close();
    await bridge.close();
    expect(await rejectionOf(call)).toMatchObject({ code: "CLOSED", message: "ModifySettings: bridge closed by the host" });
    expect(await rejectionOf(bridge.negotiate())).toMatchObject({ code: "CLOSED" });
    expect(await rejectionOf(bridge.shutdown())).toMatchObject({ code: "CLOSED" });
    await new Promise((r) => setTimeout(r, 10));
    expect(closes).toHaveLength(1);
    expect(guest.ended).toBe(true);
  });

  it("refuses stdio pipes without a transport, sending nothing", async () => {
    const { bridge, guest } = bridgePair();
    const err = await rejectionOf(bridge.executeProcess({ CommandArgs: ["cat"], CreateStdInPipe: true }));
    expect(err).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(err.message).toBe("ExecuteProcess: stdin requested but the bridge has no transport to open stdio channels on");
    expect(guest.received).toHaveLength(0);
    await bridge.close();
  });
});
