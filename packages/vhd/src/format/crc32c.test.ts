import { describe, expect, it } from "vitest";
import { crc32c, crc32cUpdate } from "./crc32c.js";

describe("crc32c", () => {
  it("matches the standard check value and RFC 3720 vectors", () => {
    expect(crc32c(Buffer.from("123456789"))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
  });

  it("gives the same result however the input is split", () => {
    const data = Uint8Array.from({ length: 1001 }, (_, i) => (i * 7) & 0xff);
    const whole = crc32cUpdate(0xffffffff, data);
    expect(crc32cUpdate(crc32cUpdate(0xffffffff, data.subarray(0, 13)), data.subarray(13))).toBe(whole);
  });
});
