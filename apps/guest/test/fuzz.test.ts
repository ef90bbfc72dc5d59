// Fuzzing the bridge: random and mutated frames, written in random pieces. The guest must keep
// answering (a DumpStacks probe after every batch), or close the connection cleanly when a
// frame's header loses the framing (then it re-dials and we go on), and never crash. Runs a few
// seconds by default; LCOW_FUZZ_SECONDS runs longer, LCOW_FUZZ_SEED replays a seed (the seed in
// use is printed). The guest runs under unshare so that whatever a mutated request manages to
// do stays in its namespaces.
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  HEADER_SIZE,
  MessageKind,
  NULL_ACTIVITY_ID,
  NULL_CONTAINER_ID,
  Rpc,
  baseRequest,
  encodeFrame,
  encodeHeader,
  executeProcessRequest,
  negotiateProtocolRequest,
  requestType,
  rpcOf,
  waitForProcessRequest,
} from "@lcow/gcs-client/protocol";
import { resultOf, TestGuest, type HostConnection } from "./harness.js";

const SECONDS = Number(process.env.LCOW_FUZZ_SECONDS ?? 3);
/** Fixed by default so a failure in CI replays; "lcow" in ASCII. */
const SEED = Number(process.env.LCOW_FUZZ_SEED ?? 0x6c636f77) >>> 0;

/** mulberry32: small, fast, good enough to drive a fuzzer reproducibly. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rand = prng(SEED);
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;

/** Well-formed requests to mutate. Nothing here can reach outside the guest's namespaces. */
const TEMPLATES: Array<[number, unknown]> = [
  [Rpc.NegotiateProtocol, negotiateProtocolRequest()],
  [Rpc.NegotiateProtocol, { ContainerId: "", ActivityId: NULL_ACTIVITY_ID, MinimumVersion: 1, MaximumVersion: 3 }],
  [Rpc.DumpStacks, baseRequest()],
  [Rpc.ModifySettings, { ...baseRequest(), Request: { ResourceType: "MappedVirtualDisk", RequestType: "Add", Settings: { MountPath: "/run/mounts/scsi/m0", Lun: 1, ReadOnly: true, Options: ["ro"] } } }],
  [Rpc.ModifySettings, { ...baseRequest(), Request: { ResourceType: "MappedVirtualDisk", RequestType: "Remove", Settings: { MountPath: "/run/mounts/scsi/m0", Lun: 1 } } }],
  [Rpc.ModifySettings, { ...baseRequest(), Request: { ResourceType: "SCSIDevice", RequestType: "Remove", Settings: { Controller: 0, Lun: 1 } } }],
  [Rpc.ModifySettings, { ...baseRequest(), Request: { ResourceType: "CombinedLayers", RequestType: "Remove", Settings: { ContainerRootPath: "/run/gcs/c/f/rootfs" } } }],
  [Rpc.ExecuteProcess, executeProcessRequest({ CommandArgs: ["/bin/true"], CreateStdOutPipe: true }, { StdOut: 0x4000_0001 })],
  [Rpc.ExecuteProcess, executeProcessRequest({ CommandArgs: ["/bin/true"] }, {})],
  [Rpc.WaitForProcess, waitForProcessRequest(1, 10)],
  [Rpc.SignalProcess, { ...baseRequest(), ProcessId: 1, Options: { Signal: 9 } }],
  [Rpc.Create, { ContainerId: "a".repeat(64), ActivityId: NULL_ACTIVITY_ID, ContainerConfig: "{}" }],
];

/** A request type that never shuts the guest down (those end the run, and are tested elsewhere). */
function safeType(type: number): number {
  const rpc = rpcOf(type);
  return rpc === Rpc.ShutdownForced || rpc === Rpc.ShutdownGraceful ? requestType(Rpc.DumpStacks) : type >>> 0;
}

function frame(type: number, id: bigint, payload: Buffer): Buffer {
  const out = Buffer.alloc(HEADER_SIZE + payload.length);
  encodeHeader({ type: safeType(type), size: out.length, id }, out);
  payload.copy(out, HEADER_SIZE);
  return out;
}

function mutate(bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  const edits = 1 + int(6);
  let b = out;
  for (let i = 0; i < edits; i++) {
    switch (int(5)) {
      case 0: // flip bits
        if (b.length) {
          const at = int(b.length);
          b[at] = b[at]! ^ (1 << int(8));
        }
        break;
      case 1: // random byte
        if (b.length) b[int(b.length)] = int(256);
        break;
      case 2: // truncate
        b = b.subarray(0, int(b.length + 1));
        break;
      case 3: // insert garbage
        {
          const at = int(b.length + 1);
          b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + int(16) }, () => int(256))), b.subarray(at)]);
        }
        break;
      case 4: // swap in an interesting token
        {
          const token = Buffer.from(pick(['"', "{", "}", "[", "]", ",", ":", "null", "true", "-1", "1e999", "4294967296", '"\\u0000"', "{}", "[]", '""']));
          const at = int(b.length + 1);
          b = Buffer.concat([b.subarray(0, at), token, b.subarray(Math.min(b.length, at + int(4)))]);
        }
        break;
    }
  }
  return b;
}

/** One fuzz frame: [bytes, whether it breaks the framing]. */
function nextFrame(id: bigint): [Buffer, boolean] {
  const roll = rand();
  const [rpc, body] = pick(TEMPLATES);
  if (roll < 0.3) return [encodeFrame(requestType(rpc), id, body, { newline: rand() < 0.5 }), false];
  if (roll < 0.75) return [frame(requestType(rpc), id, mutate(Buffer.from(JSON.stringify(body)))), false];
  if (roll < 0.85) {
    // A random type: any kind bits, any RPC.
    const type = int(2) === 0 ? (MessageKind.REQUEST | (int(16) << 8) | 0x0010_0001) >>> 0 : Math.floor(rand() * 2 ** 32);
    return [frame(type, id, Buffer.from(JSON.stringify(body))), false];
  }
  if (roll < 0.97) return [frame(requestType(rpc), id, Buffer.from(Array.from({ length: int(200) }, () => int(256)))), false];
  // Framing breakers: Size below the header, or over the limit.
  const bad = Buffer.alloc(HEADER_SIZE);
  const size = rand() < 0.5 ? int(HEADER_SIZE) : DEFAULT_MAX_MESSAGE_SIZE + 1 + int(2 ** 20);
  encodeHeader({ type: requestType(rpc), size, id }, bad);
  return [bad, true];
}

/** Writes `bytes` in random pieces. */
function writePieces(conn: HostConnection, bytes: Buffer): void {
  let at = 0;
  while (at < bytes.length) {
    const n = rand() < 0.5 ? bytes.length - at : 1 + int(bytes.length - at);
    conn.write(bytes.subarray(at, at + n));
    at += n;
  }
}

let guest: TestGuest;

beforeAll(async () => {
  guest = await TestGuest.start({ isolated: true, logLevel: "warn" });
});

afterAll(async () => {
  await guest?.cleanup();
});

it(`keeps answering random and mutated frames (seed ${SEED}, ${SECONDS} s)`, async () => {
  console.log(`fuzz seed ${SEED} (replay with LCOW_FUZZ_SEED=${SEED}), ${SECONDS} s`);
  const deadline = Date.now() + SECONDS * 1000;
  let id = 1n;
  let frames = 0;
  let reconnects = 0;
  let conn = guest.conn;
  expect(resultOf(await conn.negotiate())).toBe(0);
  while (Date.now() < deadline) {
    let broke = false;
    for (let i = 0; i < 25 && !broke; i++) {
      const [bytes, breaks] = nextFrame(id++);
      writePieces(conn, bytes);
      frames++;
      broke = breaks;
    }
    if (broke) {
      // Framing lost: the guest must close this connection and dial again.
      await conn.closed;
      conn = await guest.reconnect();
      reconnects++;
      expect(resultOf(await conn.negotiate())).toBe(0);
      continue;
    }
    // Alive and answering: a probe with an id no fuzz frame uses.
    const probeId = 1n << 62n | id;
    const probe = await Promise.race([
      conn.request(Rpc.DumpStacks, { ContainerId: NULL_CONTAINER_ID, ActivityId: NULL_ACTIVITY_ID }, probeId),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer to a probe after ${frames} frames (seed ${SEED})`)), 10_000)),
    ]);
    expect(probe.type >>> 28).toBe(2);
    expect(typeof probe.body.Result).toBe("number");
  }
  for (const r of guest.conn.frames) {
    expect(r.type >>> 28, `response type 0x${r.type.toString(16)}`).toBe(2);
    expect(typeof r.body.Result).toBe("number");
  }
  console.log(`fuzz: ${frames} frames, ${reconnects} reconnects`);
  expect(guest.child.exitCode).toBe(null);
  expect(guest.crashed(), guest.stderr).toBe(false);
  // Still healthy enough to shut down in order.
  conn.send(Rpc.ShutdownForced, baseRequest());
  await conn.closed;
  expect(await guest.exited).toEqual({ code: 0, signal: null });
  expect(guest.crashed(), guest.stderr).toBe(false);
});
