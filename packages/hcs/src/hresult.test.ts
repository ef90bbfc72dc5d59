import { describe, expect, it } from "vitest";
import {
  HRESULT,
  failed,
  formatHresult,
  hcsCode,
  hresultName,
  isAlreadyStopped,
  isNotFound,
  isNotSupported,
  isPending,
  isTimeout,
  normalizeHresult,
  toSigned,
  toUnsigned,
} from "./hresult.js";

describe("hresult", () => {
  it("converts between koffi's signed int32 and the documented unsigned form", () => {
    expect(toUnsigned(-2147024883)).toBe(0x8007000d);
    expect(toSigned(0x8007000d)).toBe(-2147024883);
    expect(failed(toSigned(0x80370110))).toBe(true);
    expect(failed(0x80370110)).toBe(true);
    expect(failed(0)).toBe(false);
    expect(failed(1)).toBe(false);
  });

  it("formats and names codes of both families", () => {
    expect(formatHresult(-1070137085)).toBe("0xC0370103");
    expect(hresultName(0xc0370103)).toBe("VMCOMPUTE_E_OPERATION_PENDING");
    expect(hresultName(toSigned(0x8037010e))).toBe("HCS_E_SYSTEM_NOT_FOUND");
    expect(hresultName(0x12345678)).toBeUndefined();
  });

  it("has unique values so every name maps back", () => {
    const values = Object.values(HRESULT);
    expect(new Set(values).size).toBe(values.length);
  });

  it("normalises like hcsshim: Win32 facility keeps the low word, others all 32 bits", () => {
    expect(normalizeHresult(0x8007000d)).toBe(0xd);
    expect(normalizeHresult(0x80070490)).toBe(0x490);
    expect(normalizeHresult(toSigned(0xc0370103))).toBe(0xc0370103);
  });

  it("extracts the HCS low word from either family only", () => {
    expect(hcsCode(0x80370110)).toBe(0x110);
    expect(hcsCode(0xc0370110)).toBe(0x110);
    expect(hcsCode(0x80070110)).toBeUndefined();
    expect(hcsCode(0x00370110)).toBeUndefined();
  });

  it("recognises pending, stopped, not-found, not-supported and timeout across families", () => {
    expect(isPending(0xc0370103)).toBe(true);
    expect(isPending(0x80370117)).toBe(true);
    expect(isPending(0x80370110)).toBe(false);
    for (const hr of [0x80370110, 0xc0370110, 0x8037011f, 0x80070490]) expect(isAlreadyStopped(hr)).toBe(true);
    expect(isAlreadyStopped(0x8037010e)).toBe(false);
    for (const hr of [0x8037010e, 0xc037010e, 0x80070490]) expect(isNotFound(hr)).toBe(true);
    expect(isNotFound(0x80370110)).toBe(false);
    for (const hr of [0x8037010d, 0xc037010d, 0x8037010b, 0x8007000d, 0x80070032]) expect(isNotSupported(hr)).toBe(true);
    expect(isTimeout(0x80370118)).toBe(true);
    expect(isTimeout(0x80370117)).toBe(false);
  });

  it("accepts errors carrying an hresult and ignores anything else", () => {
    expect(isNotFound({ hresult: 0xc037010e })).toBe(true);
    expect(isPending(new Error("x"))).toBe(false);
    expect(isAlreadyStopped(undefined)).toBe(false);
    expect(isTimeout({ hresult: "0x80370118" })).toBe(false);
  });
});
