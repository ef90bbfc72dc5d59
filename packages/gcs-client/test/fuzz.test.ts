// Random and mutated guest input against the bridge: whatever comes in, every RPC settles (no
// hang: each wait here is bounded), every failure is a typed GcsError, and nothing escapes as an
// unhandled rejection or uncaught exception.
//
// Runs for LCOW_FUZZ_SECONDS (default 3). Iteration i uses seed LCOW_FUZZ_SEED + i (default
// seed below); a failure names its seed, and LCOW_FUZZ_SEED=<that seed> replays it first.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GcsBridge } from "../src/bridge.js";
import { GcsErrorCode, isGcsError } from "../src/errors.js";
import { encodeFrame, encodeHeader, FrameDecoder, Hresult, linuxCapabilities, parsePayload, toWireHresult } from "../src/protocol/index.js";
import { duplexPair } from "./duplex-pair.js";
import { FakeGuest, within } from "./helpers.js";
import { ALL_VECTORS } from "./vectors.js";

const SECONDS = Number(process.env["LCOW_FUZZ_SECONDS"] ?? 3);
const BASE_SEED = Number(process.env["LCOW_FUZZ_SEED"] ?? 0x1c0_f022);
const CODES = new Set<string>(Object.values(GcsErrorCode));

/** mulberry32: small, fast, and the same sequence on every platform. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = rng(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

const RESPONSE_TYPES = [0x20100b01, 0x20100a01, 0x20100501, 0x20100601, 0x20100c01, 0x20100701];
const ODD_TYPES = [0x10100a01, 0x30100101, 0x30100201, 0x00000000, 0x40100101, 0xf0100101, 0x2fffffff];
const HRESULTS = [0, 0, 0, toWireHresult(Hresult.E_FAIL), toWireHresult(Hresult.ERROR_NOT_FOUND), toWireHresult(Hresult.E_NOTIMPL), 1, -1, 2 ** 31];

/** A plausible response body, sometimes with wrong field types. */
function body(g: Gen): unknown {
  const choices: unknown[] = [
    { Result: g.pick(HRESULTS), Version: g.pick([4, 4, 3, "4"]), Capabilities: g.pick([linuxCapabilities(), {}, null, { RuntimeOsType: "Windows" }]) },
    { Result: g.pick(HRESULTS), ProcessId: g.pick([412, -1, 2 ** 33, "1", null]) },
    { Result: g.pick(HRESULTS), ExitCode: g.pick([0, 3, 0xffffffff, -5, 1.5, "x"]) },
    { Result: g.pick(HRESULTS), GuestStacks: g.pick(["s", 5, null]) },
    { Result: g.pick(HRESULTS), ErrorMessage: g.pick(["no", 7]), ErrorRecords: g.pick([[], [{ Result: 1, Message: "m" }], "x", [null]]) },
    { ContainerId: "c", Type: "UnexpectedExit", Operation: "None", Result: 0 },
    g.pick([[], "str", 42, null, {}]),
  ];
  return g.pick(choices);
}

/** One frame from the guest: a valid-looking one for a live id, a vector, or garbage. */
function frame(g: Gen, ids: readonly bigint[]): Buffer {
  switch (g.int(6)) {
    case 0:
    case 1: {
      const id = ids.length > 0 && g.chance(0.8) ? g.pick(ids) : BigInt(g.int(50));
      return encodeFrame(g.chance(0.85) ? g.pick(RESPONSE_TYPES) : g.pick(ODD_TYPES), id, body(g), { newline: g.chance(0.5) });
    }
    case 2:
      return Buffer.from(g.pick(ALL_VECTORS).bytes);
    case 3: {
      // A header whose Size disagrees with what follows.
      const header = Buffer.from(encodeHeader({ type: g.pick(RESPONSE_TYPES), size: g.pick([0, 15, 16, 17, 100, 4096, 4097, 0xffffffff]), id: BigInt(g.int(8)) }));
      return Buffer.concat([header, g.bytes(g.int(64))]);
    }
    case 4:
      return g.bytes(g.int(80));
    default: {
      // A payload that is not JSON, or not an object, behind a correct header.
      const payload = Buffer.from(g.pick(["{", "[]", "null", '"s"', "{}", '{"Result":0}', "\u0000\u0001", "{\"Result\":0,}"]));
      return Buffer.concat([Buffer.from(encodeHeader({ type: g.pick(RESPONSE_TYPES), size: 16 + payload.length, id: ids.length ? g.pick(ids) : 0n })), payload]);
    }
  }
}

function mutate(g: Gen, bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  const edits = g.int(4);
  for (let i = 0; i < edits && out.length > 0; i++) {
    const at = g.int(out.length);
    switch (g.int(4)) {
      case 0:
        out[at] = out[at]! ^ (1 << g.int(8));
        break;
      case 1:
        out[at] = g.int(256);
        break;
      case 2:
        return Buffer.concat([out.subarray(0, at), g.bytes(1 + g.int(4)), out.subarray(at)]);
      default:
        return Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + g.int(4))]);
    }
  }
  return out;
}

const problems: string[] = [];
const onRejection = (reason: unknown): void => void problems.push(`unhandled rejection: ${String(reason)}`);
const onException = (err: unknown): void => void problems.push(`uncaught exception: ${String(err)}`);
beforeAll(() => {
  process.on("unhandledRejection", onRejection);
  process.on("uncaughtException", onException);
});
afterAll(() => {
  process.off("unhandledRejection", onRejection);
  process.off("uncaughtException", onException);
});

/** The only acceptable way for a call to fail. */
function checkFailure(err: unknown, where: string): void {
  if (!isGcsError(err) || !CODES.has(err.code)) throw new Error(`${where}: a non-GcsError escaped: ${String(err)}`);
}

async function iteration(seed: number): Promise<void> {
  const g = new Gen(seed);
  const [host, guestEnd] = duplexPair();
  const bridge = new GcsBridge(host, { maxMessageSize: g.pick([4096, 1 << 20]), timeoutMs: g.pick([20, 200, 10_000]) });
  const guest = new FakeGuest(guestEnd);
  let closeReason: unknown;
  bridge.on("close", (reason) => (closeReason = reason));
  bridge.on("notification", () => {});
  const calls: Array<Promise<unknown>> = [
    bridge.negotiate(),
    bridge.dumpStacks({ timeoutMs: g.pick([5, 1000]) }),
    bridge.addMappedVirtualDisk({ MountPath: "/m", Lun: 1 }),
    bridge.waitForProcess(412, { timeoutMs: g.pick([5, 1000]) }),
    bridge.executeProcess({ CommandArgs: ["x"] }),
  ];
  if (g.chance(0.2)) calls.push(bridge.shutdown(g.chance(0.5), { timeoutMs: 50 }));
  const settled = calls.map((call, i) =>
    call.then(
      () => undefined,
      (err: unknown) => checkFailure(err, `call ${i}`),
    ),
  );
  // Let the requests reach the guest so their ids are known.
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  const ids = guest.received.map((f) => f.id);

  const input = Buffer.concat(Array.from({ length: 1 + g.int(6) }, () => (g.chance(0.5) ? mutate(g, frame(g, ids)) : frame(g, ids))));
  let at = 0;
  while (at < input.length) {
    const n = 1 + g.int(g.chance(0.3) ? 3 : 200);
    guest.send(input.subarray(at, at + n));
    at += n;
    if (g.chance(0.2)) await new Promise((r) => setImmediate(r));
  }
  if (g.chance(0.5)) guest.stream.end();
  await new Promise((r) => setTimeout(r, g.int(3)));
  await bridge.close();
  // Every call settles once the bridge is closed; bounded so a hang fails instead of stalling.
  await within(Promise.all(settled), 2000, `the RPCs of seed ${seed} to settle`);
  if (!isGcsError(closeReason) && closeReason !== undefined) throw new Error(`close reason is not a GcsError: ${String(closeReason)}`);
  expect(bridge.pendingCount).toBe(0);
  guestEnd.destroy();
}

describe("fuzz", () => {
  it("the frame decoder throws only GcsErrors, for any bytes in any chunks", () => {
    const deadline = Date.now() + (SECONDS * 1000) / 3;
    let seed = BASE_SEED;
    for (; Date.now() < deadline; seed++) {
      const g = new Gen(seed);
      const decoder = new FrameDecoder({ maxMessageSize: g.pick([16, 100, 4096]) });
      const input = Buffer.concat(Array.from({ length: 1 + g.int(5) }, () => mutate(g, frame(g, [0n, 1n]))));
      try {
        for (let at = 0; at < input.length; ) {
          const n = 1 + g.int(64);
          for (const f of decoder.push(input.subarray(at, at + n))) {
            try {
              parsePayload(f);
            } catch (err) {
              checkFailure(err, "parsePayload");
            }
          }
          at += n;
        }
        decoder.end();
      } catch (err) {
        try {
          checkFailure(err, "FrameDecoder");
        } catch (escaped) {
          throw new Error(`${(escaped as Error).message} (replay with LCOW_FUZZ_SEED=${seed})`);
        }
      }
    }
    expect(seed).toBeGreaterThan(BASE_SEED);
  });

  it(`the bridge survives ${SECONDS * (2 / 3)} s of random and mutated guest input`, async () => {
    const deadline = Date.now() + (SECONDS * 2000) / 3;
    let seed = BASE_SEED;
    for (; Date.now() < deadline; seed++) {
      try {
        await iteration(seed);
      } catch (err) {
        throw new Error(`fuzz seed ${seed} failed (replay with LCOW_FUZZ_SEED=${seed}): ${(err as Error).message}`, { cause: err });
      }
    }
    // Let stray timers of the last iterations fire before checking that nothing escaped.
    await new Promise((r) => setTimeout(r, 50));
    expect(problems, `seeds ${BASE_SEED}..${seed - 1}`).toEqual([]);
    expect(seed - BASE_SEED).toBeGreaterThan(10);
  }, 120_000);
});
