// Golden bytes: every frame the bridge writes must equal the spec's, and every frame it reads is
// decoded the same whether it arrives whole or one byte at a time.
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FrameDecoder, HEADER_SIZE, NULL_CONTAINER_ID, Rpc, decodeHeader, parsePayload } from "../src/protocol/index.js";
import { UnixTransport } from "../src/transport/index.js";
import { bridgePair, dial, readAll, rejectionOf, within } from "./helpers.js";
import * as V from "./vectors.js";

describe("golden vectors decode", () => {
  for (const v of V.ALL_VECTORS) {
    describe(v.name, () => {
      it("has the size the header states", () => {
        const header = decodeHeader(v.bytes);
        expect(header).toEqual({ type: v.type, size: v.size, id: v.id });
        expect(v.bytes.length).toBe(v.size);
      });

      it("decodes fed whole", () => {
        const frames = new FrameDecoder().push(v.bytes);
        expect(frames).toHaveLength(1);
        expect(frames[0]!.type).toBe(v.type);
        expect(frames[0]!.id).toBe(v.id);
        expect(frames[0]!.payload.length).toBe(v.size - HEADER_SIZE);
        expect(parsePayload(frames[0]!)).toEqual(v.body);
      });

      it("decodes fed in 1-byte chunks, completing only at the last byte", () => {
        const decoder = new FrameDecoder();
        for (let i = 0; i < v.bytes.length - 1; i++) expect(decoder.push(v.bytes.subarray(i, i + 1))).toEqual([]);
        const frames = decoder.push(v.bytes.subarray(v.bytes.length - 1));
        expect(frames).toHaveLength(1);
        expect(frames[0]!.id).toBe(v.id);
        expect(parsePayload(frames[0]!)).toEqual(v.body);
        expect(() => decoder.end()).not.toThrow();
      });
    });
  }

  it("decodes all of them back to back, in 7-byte chunks", () => {
    const stream = Buffer.concat(V.ALL_VECTORS.map((v) => v.bytes));
    const decoder = new FrameDecoder();
    const frames = [];
    for (let at = 0; at < stream.length; at += 7) frames.push(...decoder.push(stream.subarray(at, at + 7)));
    expect(frames.map((f) => [f.type, f.id, parsePayload(f)])).toEqual(V.ALL_VECTORS.map((v) => [v.type, v.id, v.body]));
  });
});

describe.each(["whole", "byte by byte"] as const)("a bridge session against the spec's bytes (guest answers %s)", (mode) => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "gcs-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("writes every request byte for byte and reads every answer", async () => {
    const transport = new UnixTransport({ dir });
    const { bridge, guest } = bridgePair({ transport, timeoutMs: 10_000 });
    const feed = (bytes: Buffer): Promise<void> => (mode === "whole" ? (guest.send(bytes), Promise.resolve()) : guest.sendBytewise(bytes));

    // id 0: NegotiateProtocol
    const negotiated = bridge.negotiate();
    expect((await guest.next()).raw).toEqual(V.NEGOTIATE_REQUEST.bytes);
    await feed(V.NEGOTIATE_RESPONSE.bytes);
    const capabilities = (V.NEGOTIATE_RESPONSE.body as { Capabilities: object }).Capabilities;
    expect(await within(negotiated, 5000, "negotiate")).toEqual({ version: 4, capabilities });
    expect(bridge.protocolVersion).toBe(4);
    expect(bridge.capabilities).toEqual(capabilities);

    // id 1: hot-add the disk
    const added = bridge.addMappedVirtualDisk({ MountPath: "/run/mounts/scsi/m0", Controller: 0, Lun: 1, ReadOnly: true, Options: ["ro"] });
    const add = await guest.next();
    expect(add.raw).toEqual(V.MAPPED_DISK_ADD.bytes);
    await feed(guest.responseBytes(add, {}));
    await within(added, 5000, "MappedVirtualDisk Add");

    // id 2: ExecuteProcess; the guest dials stdin, stdout, stderr, in that order, before it answers.
    const started = bridge.executeProcess(
      { CommandArgs: ["/bin/sh", "-c", "cat; exit 3"], WorkingDirectory: "/", Environment: { PATH: "/usr/bin:/bin" } },
      { stdin: true, stdout: true, stderr: true },
    );
    const exec = await guest.next();
    expect(exec.raw).toEqual(V.EXECUTE_PROCESS.bytes);
    const stdin = await dial({ path: transport.pathOf(0x4000_0001) });
    const stdout = await dial({ path: transport.pathOf(0x4000_0002) });
    const stderr = await dial({ path: transport.pathOf(0x4000_0003) });
    await feed(V.EXECUTE_PROCESS_RESPONSE.bytes);
    const proc = await within(started, 5000, "ExecuteProcess");
    expect(proc.pid).toBe(412);

    // id 3: WaitForProcess goes out as soon as the pid is known, before any stdio traffic.
    expect((await guest.next()).raw).toEqual(V.WAIT_FOR_PROCESS.bytes);

    // "cat": what the host writes comes back on stdout; stdin EOF is a half-close.
    const guestSaw = readAll(stdin);
    proc.stdin!.end("hello through the relay\n");
    expect(await within(guestSaw, 5000, "stdin EOF in the guest")).toBe("hello through the relay\n");
    const hostSaw = readAll(proc.stdout!);
    stdout.end("hello through the relay\n");
    stderr.end();
    expect(await within(hostSaw, 5000, "stdout EOF on the host")).toBe("hello through the relay\n");
    await feed(V.WAIT_FOR_PROCESS_RESPONSE.bytes);
    expect(await within(proc.wait(), 5000, "the exit code")).toBe(3);
    await proc.close();
    for (const s of [stdin, stdout, stderr]) s.destroy();

    // ids 4..7: the union, then the disk's removal.
    const layers = bridge.addCombinedLayers({
      ContainerRootPath: `/run/gcs/c/${V.CONTAINER}/rootfs`,
      Layers: [{ Path: "/run/mounts/scsi/m1" }, { Path: "/run/mounts/scsi/m0" }],
      ScratchPath: `/run/mounts/scsi/m2/scratch/${V.CONTAINER}`,
    });
    const layersReq = await guest.next();
    expect(layersReq.raw).toEqual(V.COMBINED_LAYERS_ADD.bytes);
    await feed(guest.responseBytes(layersReq, {}));
    await within(layers, 5000, "CombinedLayers Add");

    const unlayered = bridge.removeCombinedLayers(`/run/gcs/c/${V.CONTAINER}/rootfs`);
    const unlayerReq = await guest.next();
    expect(unlayerReq.raw).toEqual(V.COMBINED_LAYERS_REMOVE.bytes);
    await feed(guest.responseBytes(unlayerReq, {}));
    await within(unlayered, 5000, "CombinedLayers Remove");

    const removed = bridge.removeMappedVirtualDisk({ MountPath: "/run/mounts/scsi/m0", Controller: 0, Lun: 1, ReadOnly: true, Options: ["ro"] });
    const removeReq = await guest.next();
    expect(removeReq.raw).toEqual(V.MAPPED_DISK_REMOVE.bytes);
    await feed(guest.responseBytes(removeReq, {}));
    await within(removed, 5000, "MappedVirtualDisk Remove");

    const unplugged = bridge.removeScsiDevice({ Controller: 2, Lun: 1 });
    const unplugReq = await guest.next();
    expect(unplugReq.raw).toEqual(V.SCSI_DEVICE_REMOVE.bytes);
    await feed(guest.responseBytes(unplugReq, {}));
    await within(unplugged, 5000, "SCSIDevice Remove");

    // id 8: an RPC the guest fails (SignalProcess of a UVM process: 0xC037010E, spec §3.5).
    const signalled = bridge.request(Rpc.SignalProcess, { ContainerId: NULL_CONTAINER_ID, ActivityId: NULL_CONTAINER_ID, ProcessId: 412, Options: { Signal: 15 } });
    expect((await guest.next()).raw).toEqual(V.SIGNAL_PROCESS.bytes);
    await feed(V.ERROR_RESPONSE.bytes);
    const err = await rejectionOf(signalled);
    expect(err).toMatchObject({
      name: "GcsError",
      code: "NOT_FOUND",
      hresult: 0xc037010e,
      operation: "SignalProcess",
      records: (V.ERROR_RESPONSE.body as { ErrorRecords: unknown[] }).ErrorRecords,
    });
    expect(err.message).toBe("SignalProcess failed in the guest with 0xc037010e (VMCOMPUTE_SYSTEM_NOT_FOUND): HRESULT: 0xc037010e");

    // id 9: DumpStacks.
    const stacks = bridge.dumpStacks();
    expect((await guest.next()).raw).toEqual(V.DUMP_STACKS.bytes);
    await feed(V.DUMP_STACKS_RESPONSE.bytes);
    expect(await within(stacks, 5000, "DumpStacks")).toBe("goroutine 1 [running]:\nmain.main()\n");

    // A notification for a container this client never created is passed on, not fatal.
    const notified = once(bridge, "notification");
    await feed(V.CONTAINER_NOTIFICATION_FRAME.bytes);
    expect(await within(notified, 5000, "the notification")).toEqual([V.CONTAINER_NOTIFICATION_FRAME.body]);

    expect(bridge.pendingCount).toBe(0);
    expect(bridge.closeReason).toBeUndefined();
    await bridge.close();
    await transport.close();
  });
});

describe.each([
  [false, V.SHUTDOWN_GRACEFUL],
  [true, V.SHUTDOWN_FORCED],
] as const)("shutdown(forced = %s)", (forced, vector) => {
  it("writes the spec's bytes, expects no answer, and resolves when the guest drops the bridge", async () => {
    const { bridge, guest } = bridgePair();
    const shutdown = bridge.shutdown(forced, { timeoutMs: 5000 });
    const pending = bridge.dumpStacks();
    expect((await guest.next()).raw).toEqual(vector.bytes);
    await guest.next(); // the DumpStacks, never answered
    guest.stream.end(); // the guest powers off
    await within(shutdown, 5000, "shutdown");
    const err = await rejectionOf(pending);
    expect(err).toMatchObject({ code: "CLOSED", operation: "DumpStacks" });
    expect(err.message).toContain(`after ${forced ? "ShutdownForced" : "ShutdownGraceful"}`);
    expect(bridge.closeReason?.code).toBe("CLOSED");
  });
});
