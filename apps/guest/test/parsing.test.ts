// The guest's small parsers, on their own: serve's flags, endpoints, CommandLine words, the
// tools' Go-style flags, and reading payload fields the way Go's decoder does.
import { describe, expect, it } from "vitest";
import { parseServeArgs } from "../src/args.js";
import { parseEndpoint, parseStdioBase, stdioEndpoint } from "../src/endpoint.js";
import { field, jsonInString, str, uint, U8 } from "../src/fields.js";
import { parseExecRequest } from "../src/processes.js";
import { splitShellWords } from "../src/shell-words.js";
import { parseFlags } from "../src/tools/flags.js";

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
};

describe("serve arguments", () => {
  it("reads the launcher's command line", () => {
    const args = ["--bridge", "unix:/r/v/1073741824.sock", "--stdio=unix:/r/v", "--scsi-dir", "/r/scsi", "--state-dir", "/r/state", "--isolated", "--log-level", "debug"];
    expect(parseServeArgs(args)).toEqual({
      bridge: { kind: "unix", path: "/r/v/1073741824.sock" },
      stdio: { kind: "unix", dir: "/r/v" },
      scsiDir: "/r/scsi",
      stateDir: "/r/state",
      isolated: true,
      logLevel: "debug",
    });
  });

  it("names what is missing or wrong", () => {
    const base = ["--bridge", "tcp:127.0.0.1:9", "--stdio", "tcp:127.0.0.1", "--scsi-dir", "/s", "--state-dir", "/t"];
    expect(parseServeArgs(base).logLevel).toBe("warn");
    expect(() => parseServeArgs(base.slice(2))).toThrow("--bridge is required");
    expect(() => parseServeArgs([...base, "--scsi-dir", "rel"])).toThrow('--scsi-dir "rel" must be an absolute path');
    expect(() => parseServeArgs([...base, "--log-level", "loud"])).toThrow("--log-level");
    expect(() => parseServeArgs([...base, "--frobnicate"])).toThrow('unknown argument "--frobnicate"');
    expect(codeOf(() => parseServeArgs([...base, "--state-dir"]))).toBe("INVALID_ARGUMENT");
  });
});

describe("endpoints", () => {
  it("parses unix and TCP addresses, IPv6 in brackets", () => {
    expect(parseEndpoint("tcp:[::1]:4000")).toEqual({ kind: "tcp", host: "::1", port: 4000 });
    expect(parseEndpoint("tcp:localhost:1")).toEqual({ kind: "tcp", host: "localhost", port: 1 });
    for (const bad of ["unix:rel.sock", "tcp:host", "tcp:host:0", "tcp:host:70000", "tcp::80", "vsock:2:1"]) expect(codeOf(() => parseEndpoint(bad)), bad).toBe("INVALID_ARGUMENT");
  });

  it("maps a vsock port to a socket file or a TCP port", () => {
    expect(stdioEndpoint(parseStdioBase("unix:/v"), 0x4000_0001)).toEqual({ kind: "unix", path: "/v/1073741825.sock" });
    expect(stdioEndpoint(parseStdioBase("tcp:10.0.0.1"), 5000)).toEqual({ kind: "tcp", host: "10.0.0.1", port: 5000 });
    expect(codeOf(() => stdioEndpoint(parseStdioBase("tcp:10.0.0.1"), 0x4000_0001))).toBe("INVALID_ARGUMENT");
  });
});

describe("CommandLine words", () => {
  it("splits like a shell, without expansion", () => {
    expect(splitShellWords("exportSandbox -path /mnt/x")).toEqual(["exportSandbox", "-path", "/mnt/x"]);
    expect(splitShellWords(`  a 'b c' "d \\"e\\" $f" g\\ h ''  `)).toEqual(["a", "b c", 'd "e" $f', "g h", ""]);
    expect(splitShellWords("")).toEqual([]);
    for (const bad of ["'open", '"open', "trailing\\"]) expect(codeOf(() => splitShellWords(bad)), bad).toBe("INVALID_ARGUMENT");
  });
});

describe("tool flags", () => {
  const spec = { values: { path: "", fs: "ext4" } };
  it("takes -f v, -f=v and --f v, and stops at the first word or --", () => {
    expect(parseFlags("t", ["-path", "/a", "--fs=xfs", "rest", "-x"], spec)).toMatchObject({ values: { path: "/a", fs: "xfs" }, rest: ["rest", "-x"] });
    expect(parseFlags("t", ["--", "-path"], spec).rest).toEqual(["-path"]);
  });

  it("rejects flags it does not know and flags without their value, as Go's flag package", () => {
    expect(() => parseFlags("t", ["-nope"], spec)).toThrow("t: flag provided but not defined: -nope");
    expect(() => parseFlags("t", ["-path"], spec)).toThrow("t: flag needs an argument: -path");
  });
});

describe("payload fields", () => {
  it("match keys exactly, then case-insensitively; null and absent are zero", () => {
    expect(field({ Lun: 1, lun: 2 }, "Lun")).toBe(1);
    expect(field({ LUN: 3 }, "Lun")).toBe(3);
    expect(str({ MountPath: null }, "MountPath")).toBe("");
    expect(uint({}, "Lun", U8)).toBe(0);
  });

  it("fail with INVALID_JSON on a wrong type", () => {
    expect(codeOf(() => uint({ Lun: 256 }, "Lun", U8))).toBe("INVALID_JSON");
    expect(codeOf(() => uint({ Lun: 1.5 }, "Lun", U8))).toBe("INVALID_JSON");
    expect(codeOf(() => str({ MountPath: 1 }, "MountPath"))).toBe("INVALID_JSON");
    expect(codeOf(() => jsonInString({ P: "[1]" }, "P"))).toBe("INVALID_JSON");
    expect(jsonInString({ P: '{"a":1}' }, "P")).toEqual({ a: 1 });
  });

  it("read ExecuteProcess settings: pipes need ports, containers are not ours", () => {
    const params = (p: object) => ({ ProcessParameters: JSON.stringify(p), VsockStdioRelaySettings: { StdIn: 7, StdErr: 9 } });
    expect(parseExecRequest(params({ CommandArgs: ["ls"], CreateStdInPipe: true, CreateStdErrPipe: true, CreateInUtilityVM: true }))).toEqual({
      args: ["ls"],
      workingDirectory: "",
      env: {},
      external: true,
      ports: [7, undefined, 9],
    });
    expect(codeOf(() => parseExecRequest(params({ CommandArgs: ["ls"], CreateStdOutPipe: true })))).toBe("INVALID_ARGUMENT");
    expect(codeOf(() => parseExecRequest(params({ CommandArgs: [] })))).toBe("INVALID_ARGUMENT");
    expect(codeOf(() => parseExecRequest(params({ CommandArgs: ["sh"], EmulateConsole: true })))).toBe("NOT_IMPLEMENTED");
    expect(codeOf(() => parseExecRequest(params({ CommandArgs: ["sh"], OciProcess: {} })))).toBe("SYSTEM_NOT_FOUND");
    expect(codeOf(() => parseExecRequest(params({ CommandArgs: ["sh"], Environment: { A: 1 } })))).toBe("INVALID_JSON");
  });
});
