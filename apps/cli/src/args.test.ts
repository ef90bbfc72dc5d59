import { describe, expect, it } from "vitest";
import { parseCommandArgs, parseSize, parseTimestamp, parseUuid } from "./args.js";
import { CliError, UsageError } from "./errors.js";

describe("parseSize", () => {
  it.each([
    ["128G", 128 * 2 ** 30],
    ["512M", 512 * 2 ** 20],
    ["1T", 2 ** 40],
    ["2GiB", 2 * 2 ** 30],
    ["2gib", 2 * 2 ** 30],
    ["64KB", 64 * 1024],
    ["64k", 64 * 1024],
    ["1.5G", 1.5 * 2 ** 30],
    ["4096", 4096],
    ["4096B", 4096],
    [" 20 G ", 20 * 2 ** 30],
    ["1P", 2 ** 50],
  ])("%s is %i bytes", (text, bytes) => {
    expect(parseSize(text, "--max-size")).toBe(bytes);
  });

  it.each([
    ["", /expected a size/],
    ["12Q", /expected a size/],
    ["G", /expected a size/],
    ["-1G", /expected a size/],
    ["1e9", /expected a size/],
    ["0", /greater than zero/],
    ["0G", /greater than zero/],
    ["1.5", /whole number of bytes/],
    ["9999999P", /too large/],
  ])("rejects %j", (text, why) => {
    let err: unknown;
    try {
      parseSize(text, "--max-size");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).code).toBe("INVALID_ARGUMENT");
    expect((err as CliError).message).toMatch(new RegExp(`^invalid --max-size '${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}': `));
    expect((err as CliError).message).toMatch(why);
  });
});

describe("parseTimestamp and parseUuid", () => {
  it("accepts whole seconds within 32 bits", () => {
    expect(parseTimestamp("0", "--timestamp")).toBe(0);
    expect(parseTimestamp("4294967295", "--timestamp")).toBe(4294967295);
  });

  it.each(["-1", "1.5", "4294967296", "now", ""])("rejects timestamp %j", (t) => {
    expect(() => parseTimestamp(t, "--timestamp")).toThrow(/^invalid --timestamp/);
  });

  it("normalises a UUID to lower case and rejects others", () => {
    expect(parseUuid("0F8FAD5B-D9CB-469F-A165-70867728950E", "--uuid")).toBe("0f8fad5b-d9cb-469f-a165-70867728950e");
    expect(() => parseUuid("0f8fad5bd9cb469fa16570867728950e", "--uuid")).toThrow(/^invalid --uuid/);
    expect(() => parseUuid("xyz", "--uuid")).toThrow(CliError);
  });
});

describe("parseCommandArgs", () => {
  const spec = { output: { type: "string", short: "o" }, "no-vhd": { type: "boolean" } } as const;

  it("parses flags, short flags, `-` as a positional, and --help", () => {
    const r = parseCommandArgs(["-", "-o", "x.vhd", "--no-vhd", "--help"], spec);
    expect(r.positionals).toEqual(["-"]);
    expect(r.values).toMatchObject({ output: "x.vhd", "no-vhd": true, help: true });
  });

  it.each([
    [["--frob"], /Unknown option '--frob'$/],
    [["-o"], /argument missing/],
    [["--no-vhd=yes"], /does not take an argument/],
  ])("turns %j into a UsageError", (argv, message) => {
    expect(() => parseCommandArgs(argv, spec)).toThrow(UsageError);
    expect(() => parseCommandArgs(argv, spec)).toThrow(message);
  });
});
