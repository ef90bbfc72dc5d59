import { describe, expect, it } from "vitest";
import { formatBytes, formatDuration, formatEntries, mibPerSecond } from "./format.js";

describe("format", () => {
  it.each([
    [0, "0 B"],
    [1023, "1023 B"],
    [1024, "1.0 KiB"],
    [1536, "1.5 KiB"],
    [5 * 2 ** 20 + 2 ** 19, "5.5 MiB"],
    [128 * 2 ** 30, "128.0 GiB"],
    [3 * 2 ** 40, "3.0 TiB"],
  ])("formatBytes(%i) is %s", (n, s) => expect(formatBytes(n)).toBe(s));

  it.each([
    [0.4231, "0.42 s"],
    [12.34, "12.3 s"],
    [125, "2:05"],
    [3723, "1:02:03"],
  ])("formatDuration(%f) is %s", (n, s) => expect(formatDuration(n)).toBe(s));

  it("mibPerSecond never divides by zero", () => {
    expect(mibPerSecond(2 ** 21, 2)).toBe(1);
    expect(mibPerSecond(100, 0)).toBe(0);
  });

  it("formatEntries lists non-zero types in a fixed order, singular and plural, and keeps unknown keys", () => {
    expect(formatEntries({ symlink: 1, file: 5, directory: 4, hardlink: 1, whiteout: 0, opaque: 1 })).toBe(
      "12 (5 files, 4 directories, 1 symlink, 1 hard link, 1 opaque dir)",
    );
    expect(formatEntries({ file: 1, socket: 2 })).toBe("3 (1 file, 2 socket)");
    expect(formatEntries({})).toBe("0");
  });
});
