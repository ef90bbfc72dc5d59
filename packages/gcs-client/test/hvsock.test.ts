// The hvsock transport at its real boundary: the koffi binding loads a C library with the
// Winsock names and ABI (test/hvsock-shim/winsock-shim.c), which records what it was called
// with and carries the bytes over unix sockets.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GCS_VSOCK_PORT, linuxCapabilities, vsockServiceId } from "../src/protocol/index.js";
import { decodeGuid, encodeGuid, encodeSockaddrHv, HvsockTransport } from "../src/transport/index.js";
import { GcsBridge } from "../src/bridge.js";
import { dial, FakeGuest, hex, readAll, rejectionOf, within } from "./helpers.js";
import { WinsockShim } from "./hvsock-shim/shim.js";

const VM_ID = "a42e7cda-d03f-480c-9cc2-a4de20abb878";
let shim: WinsockShim;
beforeAll(() => {
  shim = WinsockShim.build();
});
afterAll(() => shim.dispose());

/** Waits until the shim holds no socket (closes deferred behind a WSAPoll finish shortly after). */
async function allClosed(): Promise<void> {
  for (let i = 0; i < 100 && shim.liveSockets() > 0; i++) await new Promise((r) => setTimeout(r, 10));
  expect(shim.liveSockets()).toBe(0);
}

describe("SOCKADDR_HV (spec §1.2)", () => {
  it("lays a GUID out as Windows does in memory", () => {
    expect(Buffer.from(encodeGuid("40000000-facb-11e6-bd58-64006a7986d3"))).toEqual(hex("00 00 00 40 cb fa e6 11 bd 58 64 00 6a 79 86 d3"));
    expect(decodeGuid(hex("00 00 00 40 cb fa e6 11 bd 58 64 00 6a 79 86 d3"))).toBe("40000000-facb-11e6-bd58-64006a7986d3");
    expect(Buffer.from(encodeGuid("{A42E7CDA-D03F-480C-9CC2-A4DE20ABB878}"))).toEqual(hex("da 7c 2e a4 3f d0 0c 48 9c c2 a4 de 20 ab b8 78"));
    expect(() => encodeGuid("40000000-facb-11e6-bd58")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("is 36 bytes: family 34, reserved 0, VmId, ServiceId", () => {
    expect(encodeSockaddrHv(VM_ID, vsockServiceId(GCS_VSOCK_PORT))).toEqual(
      hex("22 00 00 00", "da 7c 2e a4 3f d0 0c 48 9c c2 a4 de 20 ab b8 78", "00 00 00 40 cb fa e6 11 bd 58 64 00 6a 79 86 d3"),
    );
  });
});

describe("HvsockTransport over the Winsock ABI", () => {
  it("creates AF_HYPERV stream sockets and binds the exact SOCKADDR_HV for {vmId, VsockServiceID(port)}", async () => {
    const transport = new HvsockTransport({ vmId: VM_ID, library: shim.library });
    const listener = await transport.listen(GCS_VSOCK_PORT);
    expect(listener.port).toBe(GCS_VSOCK_PORT);
    expect(shim.callCount("WSAStartup")).toBe(1);
    expect(shim.lastSocketArgs()).toEqual({ af: 34, type: 1, protocol: 1 });
    expect(shim.lastBind()).toEqual({
      length: 36,
      bytes: hex("22 00 00 00", "da 7c 2e a4 3f d0 0c 48 9c c2 a4 de 20 ab b8 78", "00 00 00 40 cb fa e6 11 bd 58 64 00 6a 79 86 d3"),
    });
    expect(shim.lastBacklog()).toBe(16);
    // A second transport shares the one Winsock initialisation.
    const other = new HvsockTransport({ vmId: "90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd", library: shim.library });
    const second = await other.listen(0x4000_0007);
    expect(shim.callCount("WSAStartup")).toBe(1);
    expect(shim.lastBind().bytes.subarray(4)).toEqual(hex("89 8b db 90 35 0d 79 4f 8c e9 49 ea 0a c8 b7 cd", "07 00 00 40 cb fa e6 11 bd 58 64 00 6a 79 86 d3"));
    // The same {vmId, service} twice is WSAEADDRINUSE.
    const err = await rejectionOf(transport.listen(GCS_VSOCK_PORT));
    expect(err).toMatchObject({ code: "ALREADY_EXISTS" });
    expect(err.message).toBe(`bind(${VM_ID}, 40000000-facb-11e6-bd58-64006a7986d3) failed with WSAEADDRINUSE (10048)`);
    await second.close();
    await transport.close();
    await other.close();
    await allClosed();
    // Closed means the address is free again at once.
    const again = await transport.listen(GCS_VSOCK_PORT).catch((e: unknown) => e);
    expect(again).toMatchObject({ code: "CLOSED" });
    const fresh = new HvsockTransport({ vmId: VM_ID, library: shim.library });
    await (await fresh.listen(GCS_VSOCK_PORT)).close();
    await allClosed();
  });

  it("carries data both ways with back-pressure, half-closes on end(), and never blocks the JS thread", async () => {
    const transport = new HvsockTransport({ vmId: VM_ID, library: shim.library });
    const listener = await transport.listen(0x4000_0001);
    const accepted = listener.accept({ timeoutMs: 5000 });
    const guest = await dial({ path: shim.pathOf(VM_ID, vsockServiceId(0x4000_0001)) });
    const host = await within(accepted, 5000, "accept");
    await listener.close();

    // 4 MiB each way: far beyond the socket buffers, so sends hit WSAEWOULDBLOCK and wait for POLLWRNORM.
    const up = randomBytes(4 << 20);
    const down = randomBytes(4 << 20);
    const hostGot: Buffer[] = [];
    host.on("data", (c: Buffer) => hostGot.push(c));
    const hostEnd = new Promise((r) => host.on("end", r));
    const guestGot: Buffer[] = [];
    guest.on("data", (c: Buffer) => guestGot.push(c));
    const guestEnd = new Promise((r) => guest.on("end", r));
    const shutdownsBefore = shim.shutdownCount(1);
    host.end(down);
    guest.end(up);
    await within(Promise.all([hostEnd, guestEnd]), 20_000, "both directions to finish");
    expect(Buffer.concat(hostGot).equals(up)).toBe(true);
    expect(Buffer.concat(guestGot).equals(down)).toBe(true);
    // end() was shutdown(SD_SEND), not a close.
    expect(shim.shutdownCount(1) - shutdownsBefore).toBe(1);
    expect(shim.callCount("recv")).toBeGreaterThan(1);
    // Every recv/send/accept ran on a non-blocking socket, and every WSAPoll that could wait ran off the JS thread.
    expect(shim.blockingCalls()).toBe(0);
    expect(shim.pollsOnStartupThread()).toBe(0);
    expect(shim.callCount("WSAPoll")).toBeGreaterThan(0);
    host.destroy();
    guest.destroy();
    await transport.close();
    await allClosed();
  });

  it("reports a reset by the guest as a CLOSED error on the stream", async () => {
    const transport = new HvsockTransport({ vmId: VM_ID, library: shim.library });
    const listener = await transport.listen(0x4000_0002);
    const accepted = listener.accept({ timeoutMs: 5000 });
    const guest = await dial({ path: shim.pathOf(VM_ID, vsockServiceId(0x4000_0002)) });
    const host = await accepted;
    await listener.close();
    // The guest's side vanishes; writing to it is what Windows reports as a reset.
    guest.destroy();
    const failed = new Promise<Error>((resolve) => host.on("error", resolve));
    const timer = setInterval(() => host.write(Buffer.alloc(1024)), 5);
    const err = await within(failed, 5000, "the reset");
    clearInterval(timer);
    expect(err).toMatchObject({ code: "CLOSED" });
    expect(err.message).toMatch(/^hvsock (send|recv) failed with WSAECONNRESET \(10054\)$/);
    await transport.close();
    await allClosed();
  });

  it("runs a bridge over hvsock, end to end", async () => {
    const transport = new HvsockTransport({ vmId: VM_ID, library: shim.library });
    const gcs = await transport.listen(GCS_VSOCK_PORT);
    const accepted = gcs.accept({ timeoutMs: 5000 });
    const guest = new FakeGuest(await dial({ path: shim.pathOf(VM_ID, vsockServiceId(GCS_VSOCK_PORT)) }));
    const bridge = new GcsBridge(await accepted, { transport });
    await gcs.close();
    const negotiated = bridge.negotiate();
    guest.reply(await guest.next(), { Version: 4, Capabilities: linuxCapabilities() });
    expect((await within(negotiated, 5000, "negotiate")).version).toBe(4);
    const started = bridge.executeProcess({ CommandArgs: ["echo", "hi"] }, { stdout: true });
    const exec = await guest.next();
    const port = (exec.body["Settings"] as { VsockStdioRelaySettings: { StdOut: number } }).VsockStdioRelaySettings.StdOut;
    expect(port).toBe(0x4000_0001);
    const stdout = await dial({ path: shim.pathOf(VM_ID, vsockServiceId(port)) });
    guest.reply(exec, { ProcessId: 2 });
    const proc = await within(started, 5000, "ExecuteProcess");
    const wait = await guest.next();
    const out = readAll(proc.stdout!);
    stdout.end("hi\n");
    expect(await within(out, 5000, "stdout")).toBe("hi\n");
    guest.reply(wait, { ExitCode: 0 });
    expect(await proc.wait()).toBe(0);
    await proc.close();
    stdout.destroy();
    const shutdown = bridge.shutdown(true);
    await guest.next();
    guest.stream.end();
    await within(shutdown, 5000, "shutdown");
    await transport.close();
    await allClosed();
    expect(shim.blockingCalls()).toBe(0);
  });

  it("is unavailable on Linux without a library, and checks the vmId", () => {
    expect(() => new HvsockTransport({ vmId: VM_ID })).toThrow(expect.objectContaining({ code: "UNSUPPORTED_PLATFORM" }));
    expect(() => new HvsockTransport({ vmId: "not-a-guid", library: shim.library })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("names the library when it cannot be bound", async () => {
    const err = await rejectionOf(new HvsockTransport({ vmId: VM_ID, library: "/nonexistent/ws2_32.so" }).listen(1));
    expect(err).toMatchObject({ code: "UNAVAILABLE" });
    expect(err.message).toMatch(/^cannot bind Winsock from \/nonexistent\/ws2_32\.so: /);
  });
});
