// The unix and TCP transports: where the sockets are, stale files, and the accept contract
// (queueing, timeouts, aborts, close) that the bridge and the utility-VM handle rely on.
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TcpTransport, UnixTransport } from "../src/transport/index.js";
import { dial, readAll, rejectionOf, within } from "./helpers.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "gcs-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false);

describe("UnixTransport", () => {
  it("listens on <dir>/<port>.sock, reports the vsock port, and removes the file on close", async () => {
    const transport = new UnixTransport({ dir });
    const listener = await transport.listen(0x4000_0000);
    expect(listener.port).toBe(0x4000_0000);
    expect(transport.pathOf(0x4000_0000)).toBe(join(dir, "1073741824.sock"));
    expect((await stat(join(dir, "1073741824.sock"))).isSocket()).toBe(true);
    const accepted = listener.accept({ timeoutMs: 5000 });
    const guest = await dial({ path: join(dir, "1073741824.sock") });
    const host = await accepted;
    guest.end("ping");
    expect(await within(readAll(host), 5000, "data")).toBe("ping");
    host.destroy();
    await listener.close();
    await listener.close();
    expect(await exists(join(dir, "1073741824.sock"))).toBe(false);
    await transport.close();
  });

  it("replaces a stale socket file left by a dead process", async () => {
    // A process killed while listening leaves its socket file behind.
    const path = join(dir, "7.sock");
    const script = `require("node:net").createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, "SIGKILL"))`;
    spawnSync(process.execPath, ["-e", script]);
    expect((await stat(path)).isSocket()).toBe(true);
    await expect(dial({ path })).rejects.toThrow(/ECONNREFUSED/);
    const listener = await new UnixTransport({ dir }).listen(7);
    const accepted = listener.accept({ timeoutMs: 5000 });
    (await dial({ path })).destroy();
    (await accepted).destroy();
    await listener.close();
  });

  it("refuses to replace a file that is not a socket, and a path over 107 bytes", async () => {
    await writeFile(join(dir, "8.sock"), "precious");
    const err = await rejectionOf(new UnixTransport({ dir }).listen(8));
    expect(err).toMatchObject({ code: "ALREADY_EXISTS" });
    expect(err.message).toBe(`${join(dir, "8.sock")} exists and is not a socket; refusing to replace it`);
    const long = new UnixTransport({ dir: join(dir, "d".repeat(100)) });
    expect(await rejectionOf(long.listen(1))).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(await rejectionOf(new UnixTransport({ dir }).listen(-1))).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(() => new UnixTransport({ dir: "" })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("queues connections until accepted, in order, and serves concurrent accepts in call order", async () => {
    const transport = new UnixTransport({ dir });
    const listener = await transport.listen(9);
    const path = transport.pathOf(9);
    const first = await dial({ path });
    first.write("1");
    await new Promise((r) => setTimeout(r, 20));
    const second = await dial({ path });
    second.write("2");
    await new Promise((r) => setTimeout(r, 20));
    const a = await listener.accept({ timeoutMs: 1000 });
    const b = await listener.accept({ timeoutMs: 1000 });
    first.end();
    second.end();
    expect([await readAll(a), await readAll(b)]).toEqual(["1", "2"]);
    const waiting = [listener.accept({ timeoutMs: 5000 }), listener.accept({ timeoutMs: 5000 })];
    const third = await dial({ path });
    third.end("3");
    expect(await readAll(await waiting[0]!)).toBe("3");
    const fourth = await dial({ path });
    fourth.end("4");
    expect(await readAll(await waiting[1]!)).toBe("4");
    for (const s of [a, b, first, second, third, fourth]) s.destroy();
    await transport.close();
  });

  it("rejects accept with TIMEOUT, CANCELLED and CLOSED, and drops connections nobody accepted", async () => {
    const transport = new UnixTransport({ dir });
    const listener = await transport.listen(10);
    expect(await rejectionOf(listener.accept({ timeoutMs: 30 }))).toMatchObject({ code: "TIMEOUT" });
    const controller = new AbortController();
    const aborted = listener.accept({ signal: controller.signal });
    controller.abort();
    expect(await rejectionOf(aborted)).toMatchObject({ code: "CANCELLED" });
    expect(await rejectionOf(listener.accept({ signal: AbortSignal.abort() }))).toMatchObject({ code: "CANCELLED" });
    const pending = rejectionOf(listener.accept());
    // A second listener holds a connection nobody accepts.
    const other = await transport.listen(12);
    const unaccepted = await dial({ path: transport.pathOf(12) });
    const dropped = new Promise((r) => unaccepted.on("end", r));
    unaccepted.resume();
    await new Promise((r) => setTimeout(r, 20));
    // Closing the transport closes all its listeners.
    await transport.close();
    expect(await pending).toMatchObject({ code: "CLOSED" });
    await within(dropped, 5000, "the unaccepted connection being dropped");
    unaccepted.destroy();
    expect(await rejectionOf(listener.accept())).toMatchObject({ code: "CLOSED" });
    expect(await rejectionOf(other.accept())).toMatchObject({ code: "CLOSED" });
    expect(await rejectionOf(transport.listen(11))).toMatchObject({ code: "CLOSED" });
    expect(await exists(transport.pathOf(10))).toBe(false);
  });
});

describe("TcpTransport", () => {
  it("puts the OS-chosen TCP port on the wire, one per listener", async () => {
    const transport = new TcpTransport();
    expect(transport.host).toBe("127.0.0.1");
    const a = await transport.listen(0x4000_0001);
    const b = await transport.listen(0x4000_0002);
    expect(a.port).toBeGreaterThan(0);
    expect(a.port).toBeLessThan(65536);
    expect(b.port).not.toBe(a.port);
    const accepted = b.accept({ timeoutMs: 5000 });
    const guest = await dial({ host: "127.0.0.1", port: b.port });
    guest.end("over tcp");
    expect(await readAll(await accepted)).toBe("over tcp");
    await transport.close();
    await expect(dial({ host: "127.0.0.1", port: a.port })).rejects.toThrow(/ECONNREFUSED/);
    expect(() => new TcpTransport({ host: "" })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("reports a host it cannot listen on as UNAVAILABLE", async () => {
    // TEST-NET-1 (RFC 5737) is never a local address.
    const err = await rejectionOf(new TcpTransport({ host: "192.0.2.1" }).listen(1));
    expect(err).toMatchObject({ code: "UNAVAILABLE" });
    expect(err.message).toMatch(/^cannot listen on tcp listener for vsock port 1 on 192\.0\.2\.1: .*EADDRNOTAVAIL/);
  });
});
