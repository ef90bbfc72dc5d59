import { describe, expect, it } from "vitest";
import { HCS_ERROR_CODES, HcsError, codeForHresult, parseResultError, toHcsError } from "./errors.js";

const doc = JSON.stringify({
  Error: -2147024883,
  ErrorMessage: "The data is invalid.",
  ErrorEvents: [
    { Message: "bad field", StackTrace: "vmcompute!x", Provider: "17103e3f", EventId: 8197, Flags: 0, Source: "hcs", Data: [{ junk: 1 }] },
    { Message: "second" },
  ],
});

describe("HcsError", () => {
  it("carries hresult (unsigned), hex, symbolic name, operation, system and decoded events", () => {
    const err = HcsError.fromHresult(-2147024883, { operation: "HcsCreateComputeSystem", systemId: "vm1", resultDocument: doc });
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe("HcsError");
    expect(err.code).toBe("INVALID_DOCUMENT");
    expect(err.hresult).toBe(0x8007000d);
    expect(err.hresultHex).toBe("0x8007000D");
    expect(err.hresultName).toBe("ERROR_INVALID_DATA");
    expect(err.win32OrHresult).toBe(0xd);
    expect(err.operation).toBe("HcsCreateComputeSystem");
    expect(err.systemId).toBe("vm1");
    expect(err.errorMessage).toBe("The data is invalid.");
    expect(err.events).toEqual([
      { message: "bad field", stackTrace: "vmcompute!x", provider: "17103e3f", eventId: 8197, flags: 0, source: "hcs" },
      { message: "second" },
    ]);
    // hcsshim's log format: "<op> <id>: <message>" then one line per event.
    expect(err.message.split("\n")).toEqual([
      "HcsCreateComputeSystem vm1: The data is invalid. (0x8007000D ERROR_INVALID_DATA)",
      "[Event Detail: bad field Stack Trace: vmcompute!x Provider: 17103e3f EventID: 8197 Source: hcs]",
      "[Event Detail: second]",
    ]);
  });

  it("works without a result document", () => {
    const err = HcsError.fromHresult(0xc0370110, { operation: "HcsTerminateComputeSystem" });
    expect(err.code).toBe("ALREADY_STOPPED");
    expect(err.message).toBe("HcsTerminateComputeSystem: VMCOMPUTE_E_SYSTEM_ALREADY_STOPPED (0xC0370110)");
    expect(err.events).toEqual([]);
    expect(err.systemId).toBeUndefined();
    const unknown = HcsError.fromHresult(0x8123abcd, { operation: "X" });
    expect(unknown.code).toBe("OPERATION_FAILED");
    expect(unknown.hresultName).toBeUndefined();
    expect(unknown.message).toBe("X: HCS call failed (0x8123ABCD)");
  });

  it("maps both HCS families and the Win32 codes to the same stable codes", () => {
    expect(codeForHresult(0x8037010e)).toBe("NOT_FOUND");
    expect(codeForHresult(0xc037010e)).toBe("NOT_FOUND");
    expect(codeForHresult(0x80070490)).toBe("NOT_FOUND");
    expect(codeForHresult(0x80370105)).toBe("INVALID_STATE");
    expect(codeForHresult(0xc0370105)).toBe("INVALID_STATE");
    expect(codeForHresult(0x80070005)).toBe("ACCESS_DENIED");
    expect(codeForHresult(0x8037011b)).toBe("ACCESS_DENIED");
    expect(codeForHresult(0x80370118)).toBe("TIMEOUT");
    expect(codeForHresult(0x80370102)).toBe("SERVICE_UNAVAILABLE");
    expect(codeForHresult(0xc0370106)).toBe("UNEXPECTED_EXIT");
    expect(codeForHresult(0x8037010f)).toBe("ALREADY_EXISTS");
    expect(codeForHresult(0x80370119)).toBe("OPERATION_FAILED");
    for (const hr of [0x8037010e, 0x80070005, 0x12345678]) expect(Object.values(HCS_ERROR_CODES)).toContain(codeForHresult(hr));
  });

  it("ignores absent, empty and malformed documents", () => {
    expect(parseResultError(undefined)).toBeUndefined();
    expect(parseResultError("  ")).toBeUndefined();
    expect(parseResultError("{nope")).toBeUndefined();
    expect(parseResultError("[1]")).toBeUndefined();
    expect(parseResultError('{"ErrorEvents":[1,null,{"EventId":"x","Message":3}]}')).toEqual({ events: [{}] });
  });

  it("wraps foreign throws as INTERNAL and keeps the cause", () => {
    const cause = new TypeError("boom");
    const err = toHcsError(cause, "op");
    expect(err.code).toBe("INTERNAL");
    expect(err.cause).toBe(cause);
    expect(err.message).toBe("op: boom");
    const same = new HcsError("TIMEOUT", "t");
    expect(toHcsError(same)).toBe(same);
  });
});
