import { describe, expect, it } from "vitest";
import { HcsError } from "./errors.js";
import { InFlight, checkString, loadKoffi, toDword } from "./native.js";

describe("native helpers", () => {
  it("reports a missing koffi with an actionable error", () => {
    const err = (() => {
      try {
        loadKoffi(() => {
          throw Object.assign(new Error("Cannot find module 'koffi'"), { code: "MODULE_NOT_FOUND" });
        });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(HcsError);
    expect((err as HcsError).code).toBe("KOFFI_MISSING");
    expect((err as HcsError).message).toMatch(/pnpm add koffi/);
    expect((err as HcsError).cause).toBeInstanceOf(Error);
  });

  it("loads the real koffi lazily and unwraps a default export", () => {
    expect(typeof loadKoffi().load).toBe("function");
    const fake = { load: () => undefined };
    expect(loadKoffi(() => ({ default: fake }))).toBe(fake);
  });

  it("validates timeouts as DWORDs", () => {
    expect(toDword(0)).toBe(0);
    expect(toDword(Infinity)).toBe(0xffffffff);
    expect(toDword(0xfffffffe)).toBe(0xfffffffe);
    for (const bad of [-1, 1.5, NaN, 0xffffffff]) expect(() => toDword(bad)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("rejects strings with an embedded NUL, which UTF-16 marshalling would truncate", () => {
    expect(checkString("vm-1", "id")).toBe("vm-1");
    expect(() => checkString("vm\0x", "id")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("drains only after every tracked call settled", async () => {
    const calls = new InFlight();
    let release!: () => void;
    const slow = calls.track(new Promise<void>((r) => (release = r)));
    void calls.track(Promise.reject(new Error("x"))).catch(() => undefined);
    expect(calls.size).toBe(2);
    let drained = false;
    const d = calls.drain().then(() => (drained = true));
    await new Promise((r) => setTimeout(r, 5));
    expect(drained).toBe(false);
    release();
    await slow;
    await d;
    expect(drained).toBe(true);
    expect(calls.size).toBe(0);
  });
});
