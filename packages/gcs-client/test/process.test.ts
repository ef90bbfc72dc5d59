// Processes with stdio over real sockets, for every transport: the host listens on a fresh port
// per stream before ExecuteProcess, the guest dials stdin, stdout, stderr in that order before
// it answers, WaitForProcess follows the pid at once, stdin EOF is a half-close, and the host
// closes stdout/stderr after their EOF (spec §1.4, §4.3, §4.4).
import { mkdtemp, rm, stat } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { GcsBridge } from "../src/bridge.js";
import { encodeFrame, FIRST_STDIO_VSOCK_PORT, Hresult, linuxCapabilities, responseTypeOf, toWireHresult, vsockServiceId } from "../src/protocol/index.js";
import { HvsockTransport, TcpTransport, UnixTransport, type HostTransport } from "../src/transport/index.js";
import { bridgePair, dial, FakeGuest, readAll, rejectionOf, within, type Received } from "./helpers.js";
import { WinsockShim } from "./hvsock-shim/shim.js";

interface Setup {
  transport: HostTransport;
  /** Dials what the guest would dial for a wire port. */
  dial(port: number): Promise<Socket>;
  /** Whether a listener for `port` still exists (file-backed transports only). */
  listening?(port: number): Promise<boolean>;
  dispose(): Promise<void>;
}

const VM_ID = "2ad3bd3a-1f4e-4bb1-9b7c-3a8bd5d0c0de";
let shim: WinsockShim;
beforeAll(() => {
  shim = WinsockShim.build();
});
afterAll(() => shim.dispose());

const transports: Array<[string, () => Promise<Setup>]> = [
  [
    "unix",
    async () => {
      const dir = await mkdtemp(join(tmpdir(), "gcs-"));
      const transport = new UnixTransport({ dir });
      return {
        transport,
        dial: (port) => dial({ path: transport.pathOf(port) }),
        listening: (port) => stat(transport.pathOf(port)).then(() => true, () => false),
        dispose: async () => {
          await transport.close();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  ],
  [
    "tcp",
    async () => {
      const transport = new TcpTransport({ host: "127.0.0.1" });
      return { transport, dial: (port) => dial({ port, host: "127.0.0.1" }), dispose: () => transport.close() };
    },
  ],
  [
    "hvsock (Winsock stand-in)",
    async () => {
      const transport = new HvsockTransport({ vmId: VM_ID, library: shim.library });
      return {
        transport,
        dial: (port) => dial({ path: shim.pathOf(VM_ID, vsockServiceId(port)) }),
        listening: (port) => stat(shim.pathOf(VM_ID, vsockServiceId(port))).then(() => true, () => false),
        dispose: () => transport.close(),
      };
    },
  ],
];

interface Relay {
  StdIn?: number;
  StdOut?: number;
  StdErr?: number;
}

/** The guest's side of ExecuteProcess: dials the requested ports in order stdin, stdout, stderr. */
async function dialStdio(setup: Setup, request: Received): Promise<{ params: Record<string, unknown>; relay: Relay; sockets: { stdin?: Socket; stdout?: Socket; stderr?: Socket } }> {
  const settings = request.body["Settings"] as { ProcessParameters: string; VsockStdioRelaySettings: Relay };
  // ProcessParameters is a JSON document inside a JSON string (spec §3.3).
  const params = JSON.parse(settings.ProcessParameters) as Record<string, unknown>;
  const relay = settings.VsockStdioRelaySettings;
  const sockets: { stdin?: Socket; stdout?: Socket; stderr?: Socket } = {};
  if (relay.StdIn) sockets.stdin = await setup.dial(relay.StdIn);
  if (relay.StdOut) sockets.stdout = await setup.dial(relay.StdOut);
  if (relay.StdErr) sockets.stderr = await setup.dial(relay.StdErr);
  return { params, relay, sockets };
}

async function negotiatedPair(transport: HostTransport, timeoutMs = 10_000): Promise<{ bridge: GcsBridge; guest: FakeGuest }> {
  const pair = bridgePair({ transport, timeoutMs });
  const done = pair.bridge.negotiate();
  pair.guest.reply(await pair.guest.next(), { Version: 4, Capabilities: linuxCapabilities() });
  await within(done, 5000, "negotiate");
  return pair;
}

/** Resolves once `socket` has seen EOF from the host (the host closed or half-closed it). */
function sawEof(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.readableEnded) return resolve();
    socket.on("end", resolve);
    socket.on("close", resolve);
    socket.resume();
  });
}

describe.each(transports)("stdio over %s", (_name, make) => {
  let setup: Setup;
  beforeEach(async () => {
    setup = await make();
  });
  afterEach(async () => {
    await setup.dispose();
  });

  it("runs `cat; echo err >&2; exit 3` through its whole lifecycle (§4.4)", async () => {
    const { bridge, guest } = await negotiatedPair(setup.transport);
    const started = bridge.executeProcess(
      { CommandArgs: ["/bin/sh", "-c", "cat; echo err >&2; exit 3"], WorkingDirectory: "/", Environment: { PATH: "/usr/bin:/bin" } },
      { stdin: true, stdout: true, stderr: true },
    );
    const exec = await guest.next();
    const { params, relay, sockets } = await dialStdio(setup, exec);
    expect(params).toEqual({
      CommandArgs: ["/bin/sh", "-c", "cat; echo err >&2; exit 3"],
      WorkingDirectory: "/",
      Environment: { PATH: "/usr/bin:/bin" },
      CreateStdInPipe: true,
      CreateStdOutPipe: true,
      CreateStdErrPipe: true,
    });
    if (setup.transport.name !== "tcp") {
      // vsock-like transports put the vsock ports themselves on the wire, from the first stdio port up.
      expect(relay).toEqual({ StdIn: FIRST_STDIO_VSOCK_PORT, StdOut: FIRST_STDIO_VSOCK_PORT + 1, StdErr: FIRST_STDIO_VSOCK_PORT + 2 });
    } else {
      expect(new Set([relay.StdIn, relay.StdOut, relay.StdErr]).size).toBe(3);
    }
    guest.reply(exec, { ProcessId: 412 });
    const proc = await within(started, 5000, "ExecuteProcess");
    expect(proc.pid).toBe(412);
    // WaitForProcess is on the wire before the guest has done anything with stdio.
    const wait = await guest.next();
    expect(wait.body).toMatchObject({ ProcessId: 412, TimeoutInMs: 0xffff_ffff });
    // Each listener accepted once and was closed.
    if (setup.listening) for (const port of [relay.StdIn!, relay.StdOut!, relay.StdErr!]) expect(await setup.listening(port)).toBe(false);

    const { stdin, stdout, stderr } = sockets as Required<typeof sockets>;
    const guestIn = readAll(stdin);
    proc.stdin!.write("line 1\n");
    proc.stdin!.end("line 2\n");
    // stdin EOF is a half-close: the guest reads EOF, and its socket is still writable.
    expect(await within(guestIn, 5000, "stdin EOF in the guest")).toBe("line 1\nline 2\n");
    expect(stdin.writable).toBe(true);

    const hostOut = readAll(proc.stdout!);
    const hostErr = readAll(proc.stderr!);
    stdout.end("line 1\nline 2\n");
    stderr.end("err\n");
    expect(await within(Promise.all([hostOut, hostErr]), 5000, "stdout/stderr EOF on the host")).toEqual(["line 1\nline 2\n", "err\n"]);
    // After EOF the host closes its side, which a guest relay waits for (§4.3).
    await within(Promise.all([sawEof(stdout), sawEof(stderr)]), 5000, "the host closing stdout and stderr");

    guest.reply(wait, { ExitCode: 3 });
    expect(await within(proc.wait(), 5000, "the exit code")).toBe(3);
    expect(proc.exitCode).toBe(3);
    await proc.close();
    await within(sawEof(stdin), 5000, "the host closing stdin");
    for (const s of [stdin, stdout, stderr]) s.destroy();
    expect(proc.streamErrors).toEqual([]);
    await bridge.close();
  });

  it("opens only the pipes asked for, and never reuses a port", async () => {
    const { bridge, guest } = await negotiatedPair(setup.transport);
    const seen: Relay[] = [];
    for (const options of [{ stdout: true }, { stdin: true, stderr: true }]) {
      const started = bridge.executeProcess({ CommandArgs: ["x"] }, options);
      const exec = await guest.next();
      const { params, relay, sockets } = await dialStdio(setup, exec);
      expect(params).toEqual({ CommandArgs: ["x"], ...(options.stdin ? { CreateStdInPipe: true } : {}), ...(options.stdout ? { CreateStdOutPipe: true } : {}), ...(options.stderr ? { CreateStdErrPipe: true } : {}) });
      seen.push(relay);
      guest.reply(exec, { ProcessId: seen.length });
      const proc = await within(started, 5000, "ExecuteProcess");
      expect([proc.stdin !== null, proc.stdout !== null, proc.stderr !== null]).toEqual([!!options.stdin, !!options.stdout, !!options.stderr]);
      guest.reply(await guest.next(), { ExitCode: 0 });
      expect(await within(proc.wait(), 5000, "exit")).toBe(0);
      await proc.close();
      for (const s of Object.values(sockets)) s.destroy();
    }
    expect(Object.keys(seen[0]!)).toEqual(["StdOut"]);
    expect(Object.keys(seen[1]!)).toEqual(["StdIn", "StdErr"]);
    if (setup.transport.name !== "tcp") expect([seen[0]!.StdOut, seen[1]!.StdIn, seen[1]!.StdErr]).toEqual([0x4000_0001, 0x4000_0002, 0x4000_0003]);
    await bridge.close();
  });

  it("closes every listener and accepted channel when ExecuteProcess fails", async () => {
    const { bridge, guest } = await negotiatedPair(setup.transport);
    const started = bridge.executeProcess({ CommandArgs: ["nope"] }, { stdin: true, stdout: true, stderr: true });
    const exec = await guest.next();
    const relay = (exec.body["Settings"] as { VsockStdioRelaySettings: Relay }).VsockStdioRelaySettings;
    // The guest dialled stdin, then failed to dial stdout (spec: the response is then an error).
    const stdin = await setup.dial(relay.StdIn!);
    guest.send(encodeFrame(responseTypeOf(exec.type), exec.id, { Result: toWireHresult(Hresult.E_FAIL), ErrorMessage: "failed to connect to stdout" }, { newline: false }));
    const err = await rejectionOf(started);
    expect(err).toMatchObject({ code: "RPC_FAILED", hresult: Hresult.E_FAIL, operation: "ExecuteProcess" });
    await within(sawEof(stdin), 5000, "the accepted stdin being closed");
    stdin.destroy();
    if (setup.listening) for (const port of [relay.StdIn!, relay.StdOut!, relay.StdErr!]) expect(await setup.listening(port)).toBe(false);
    await expect(setup.dial(relay.StdOut!)).rejects.toThrow();
    // The next process still gets fresh ports.
    const next = bridge.executeProcess({ CommandArgs: ["x"] }, { stdout: true });
    const nextRelay = (await guest.next()).body["Settings"] as { VsockStdioRelaySettings: Relay };
    if (setup.transport.name !== "tcp") expect(nextRelay.VsockStdioRelaySettings.StdOut).toBe(relay.StdErr! + 1);
    await bridge.close();
    expect(await rejectionOf(next)).toMatchObject({ code: "CLOSED" });
  });

  it("fails with TIMEOUT, naming the stream, when the guest answers without dialling it", async () => {
    const { bridge, guest } = await negotiatedPair(setup.transport);
    const started = bridge.executeProcess({ CommandArgs: ["x"] }, { stdin: true, stdout: true, timeoutMs: 300 });
    const exec = await guest.next();
    const relay = (exec.body["Settings"] as { VsockStdioRelaySettings: Relay }).VsockStdioRelaySettings;
    const stdin = await setup.dial(relay.StdIn!);
    guest.reply(exec, { ProcessId: 5 });
    const err = await rejectionOf(started);
    expect(err).toMatchObject({ code: "TIMEOUT", operation: "ExecuteProcess" });
    expect(err.message).toBe(`ExecuteProcess: pid 5 started but the guest never connected stdout (port ${relay.StdOut}) within 300 ms`);
    await within(sawEof(stdin), 5000, "stdin being closed");
    stdin.destroy();
    await bridge.close();
  });

  it("finish() waits for the exit and the output, then closes everything; a late writer is cut off", async () => {
    const { bridge, guest } = await negotiatedPair(setup.transport);
    const started = bridge.executeProcess({ CommandArgs: ["daemonize"] }, { stdin: true, stdout: true, stderr: true });
    const exec = await guest.next();
    const { sockets } = await dialStdio(setup, exec);
    guest.reply(exec, { ProcessId: 9 });
    const proc = await within(started, 5000, "ExecuteProcess");
    const wait = await guest.next();
    const out = readAll(proc.stdout!);
    const finished = proc.finish({ drainTimeoutMs: 200 });
    sockets.stdout!.end("done\n");
    // stderr stays open, as when a daemon inherited it: finish() must not wait for ever.
    guest.reply(wait, { ExitCode: 0 });
    expect(await within(finished, 5000, "finish")).toBe(0);
    expect(await out).toBe("done\n");
    await within(Promise.all([sawEof(sockets.stdin!), sawEof(sockets.stderr!)]), 5000, "every channel closed");
    // Writing to a closed stdin is an error on the stream, never an uncaught exception.
    proc.stdin!.write("late", () => {});
    for (const s of Object.values(sockets)) s.destroy();
    await bridge.close();
  });

  it("ends stdout and stderr for a process that exited before anyone read them", async () => {
    // Regression: a socket that reads EOF with nobody reading emits 'end' at once, so a caller
    // attaching 'data' after executeProcess() resolved never saw an end (seen with `kill -9 $$`).
    const { bridge, guest } = await negotiatedPair(setup.transport);
    const started = bridge.executeProcess({ CommandArgs: ["true"] }, { stdin: true, stdout: true, stderr: true });
    const exec = await guest.next();
    const { sockets } = await dialStdio(setup, exec);
    sockets.stdout!.end();
    sockets.stderr!.end("last words\n");
    await new Promise((r) => setTimeout(r, 50));
    guest.reply(exec, { ProcessId: 3 });
    const proc = await within(started, 5000, "ExecuteProcess");
    await new Promise((r) => setTimeout(r, 50));
    const chunks: string[] = [];
    proc.stdout!.on("data", (c: Buffer) => chunks.push(c.toString()));
    proc.stderr!.on("data", (c: Buffer) => chunks.push(c.toString()));
    const ends = Promise.all([new Promise((r) => proc.stdout!.on("end", r)), new Promise((r) => proc.stderr!.on("end", r))]);
    await within(ends, 5000, "stdout and stderr to end");
    expect(chunks).toEqual(["last words\n"]);
    guest.reply(await guest.next(), { ExitCode: 0 });
    expect(await proc.wait()).toBe(0);
    await proc.close();
    for (const s of Object.values(sockets)) s.destroy();
    await bridge.close();
  });

  it("fails a pending ExecuteProcess with CLOSED when the bridge drops, closing its listeners", async () => {
    const { bridge, guest } = await negotiatedPair(setup.transport);
    const started = bridge.executeProcess({ CommandArgs: ["x"] }, { stdout: true });
    const exec = await guest.next();
    const relay = (exec.body["Settings"] as { VsockStdioRelaySettings: Relay }).VsockStdioRelaySettings;
    guest.stream.end();
    expect(await rejectionOf(started)).toMatchObject({ code: "CLOSED" });
    if (setup.listening) expect(await setup.listening(relay.StdOut!)).toBe(false);
    await expect(setup.dial(relay.StdOut!)).rejects.toThrow();
  });
});
