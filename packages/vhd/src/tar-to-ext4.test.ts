import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { convertTar } from "./convert.js";
import { encodePaxRecords } from "./format/pax.js";
import { encodeTarHeader } from "./format/tar-header.js";
import { normalizePath } from "./tar-to-ext4.js";

/** A small tar in memory: [name, typeflag, data, pax records]. */
function tar(entries: [string, string, string?, Record<string, string>?][]): Uint8Array {
  const parts: Uint8Array[] = [];
  const pad = (n: number) => new Uint8Array((512 - (n % 512)) % 512);
  for (const [name, typeflag, data = "", pax] of entries) {
    if (pax) {
      const body = encodePaxRecords(Object.entries(pax).map(([key, value]) => ({ key, value: new Uint8Array(Buffer.from(value, "latin1")) })));
      parts.push(encodeTarHeader({ name: "PaxHeader", mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: 0, typeflag: "x", linkname: "" }), body, pad(body.length));
    }
    const bytes = Buffer.from(data);
    parts.push(encodeTarHeader({ name, mode: typeflag === "5" ? 0o755 : 0o644, uid: 0, gid: 0, size: typeflag === "0" ? bytes.length : 0, mtime: 1_600_000_000, typeflag, linkname: typeflag === "1" || typeflag === "2" ? data : "" }));
    if (typeflag === "0") parts.push(bytes, pad(bytes.length));
  }
  parts.push(new Uint8Array(1024));
  return Buffer.concat(parts);
}

async function* chunks(bytes: Uint8Array) {
  yield bytes;
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "lcow-t2e-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("tarToExt4", () => {
  it("names the entry when its xattrs cannot fit the inode and one block", async () => {
    const input = tar([["f", "0", "", { "SCHILY.xattr.user.a": "x".repeat(3000), "SCHILY.xattr.user.b": "y".repeat(3000) }]]);
    await expect(convertTar(chunks(input), join(dir, "out.vhd"))).rejects.toMatchObject({ code: "TAR_ENTRY_INVALID", path: "f", message: expect.stringContaining("do not fit") });
    expect(readdirSync(dir)).toEqual([]);
  });

  it("warns about absolute names and AUFS metadata, and fails on them under strict", async () => {
    const input = tar([["/abs", "0", "x"], [".wh..wh.plnk", "5"]]);
    const warnings: string[] = [];
    await convertTar(chunks(input), join(dir, "ok.vhd"), { onWarning: (w) => warnings.push(w.code) });
    expect(warnings).toEqual(["TAR_ABSOLUTE_PATH", "TAR_AUFS_METADATA"]);
    await expect(convertTar(chunks(input), join(dir, "strict.vhd"), { strict: true })).rejects.toMatchObject({ code: "STRICT" });
    expect(readdirSync(dir)).toEqual(["ok.vhd"]);
  });

  it("stops with ABORTED when the signal fires, leaving nothing", async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(convertTar(chunks(tar([["a", "0", "x"]])), join(dir, "out.vhd"), { signal: controller.signal })).rejects.toMatchObject({ code: "ABORTED" });
    expect(readdirSync(dir)).toEqual([]);
  });

  it("refuses a parent that is not a directory", async () => {
    await expect(convertTar(chunks(tar([["a", "0", "x"], ["a/b", "0", "y"]])), join(dir, "out.vhd"))).rejects.toMatchObject({ code: "TAR_ENTRY_INVALID", message: expect.stringContaining("not a directory") });
  });
});

describe("normalizePath", () => {
  const at = { path: "", headerOffset: 0 };
  it.each([
    ["usr/lib/x", ["usr", "lib", "x"]],
    ["./usr/lib/", ["usr", "lib"]],
    ["/etc//passwd", ["etc", "passwd"]],
    ["a/./b/../c", ["a", "c"]],
    ["./", []],
    ["..foo/.bar", ["..foo", ".bar"]],
  ])("%s", (raw, want) => {
    expect(normalizePath(raw, at)).toEqual(want);
  });
  it("refuses names that climb out of the root", () => {
    expect(() => normalizePath("a/../../x", at)).toThrow(/escapes the root/);
  });
});
