import { describe, expect, it } from "vitest";
import { decodePaxRecords, encodePaxRecords, parsePaxTime } from "./pax.js";

describe("pax records", () => {
  it("round-trips binary values and keeps repeated keys in order", () => {
    const records = [
      { key: "path", value: new Uint8Array(Buffer.from("a/\u00e9t\u00e9")) },
      { key: "SCHILY.xattr.security.capability", value: new Uint8Array([0, 0xff, 0x0a, 0x3d, 0x80]) },
      { key: "GNU.sparse.offset", value: new Uint8Array(Buffer.from("0")) },
      { key: "GNU.sparse.offset", value: new Uint8Array(Buffer.from("4096")) },
    ];
    const body = encodePaxRecords(records);
    expect(Buffer.from(body).toString("latin1").startsWith("16 path=a/")).toBe(true);
    expect(decodePaxRecords(body)).toEqual(records);
  });

  it("counts the length prefix's own digits (9 -> 10 byte boundary)", () => {
    const body = encodePaxRecords([{ key: "k", value: new Uint8Array(Buffer.from("12345")) }]);
    expect(Buffer.from(body).toString()).toBe("11 k=12345\n");
  });

  it("rejects malformed records with the header offset", () => {
    expect(() => decodePaxRecords(Buffer.from("99 path=x\n"), 1536)).toThrow(/offset 1536.*record length 99/);
    expect(() => decodePaxRecords(Buffer.from("x path=x\n"))).toThrow(/decimal/);
    expect(() => decodePaxRecords(Buffer.from("9 pathx\n"))).toThrow(expect.objectContaining({ code: "TAR_HEADER_INVALID" }));
  });

  it("parses times with fractions, negative ones floored as POSIX says", () => {
    expect(parsePaxTime("1700000000.123456789")).toEqual({ sec: 1700000000, nsec: 123456789 });
    expect(parsePaxTime("5.5")).toEqual({ sec: 5, nsec: 500000000 });
    expect(parsePaxTime("-1.25")).toEqual({ sec: -2, nsec: 750000000 });
    expect(parsePaxTime("-3")).toEqual({ sec: -3, nsec: 0 });
    expect(parsePaxTime("1.0000000009")).toEqual({ sec: 1, nsec: 0 });
    expect(parsePaxTime("abc")).toBeUndefined();
  });
});
