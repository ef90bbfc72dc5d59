import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { sampleEntries, sampleLayer } from "./sample.js";

async function bytes(): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of sampleLayer()) parts.push(c);
  return Buffer.concat(parts);
}

describe("sample layer", () => {
  it("is a tar that GNU tar reads with every entry, type, mode and link", async () => {
    const tar = await bytes();
    expect(tar.length % 512).toBe(0);
    // GNU tar verifies each header checksum and fails on a bad one.
    const listing = execFileSync("tar", ["-tvf", "-", "--numeric-owner"], { input: tar, env: { ...process.env, TZ: "UTC" } }).toString();
    const lines = listing.trim().split("\n");
    expect(lines).toHaveLength(sampleEntries().length);
    expect(listing).toMatch(/^-rwxr-xr-x 0\/0 +\d+ 2023-11-14 22:13 usr\/bin\/hello$/m);
    expect(listing).toMatch(/^hrwxr-xr-x 0\/0 +0 2023-11-14 22:13 usr\/bin\/hi link to usr\/bin\/hello$/m);
    expect(listing).toMatch(/^lrwxrwxrwx 0\/0 +0 2023-11-14 22:13 bin -> usr\/bin$/m);
    expect(listing).toMatch(/^drwxrwxrwt 0\/0 +0 2023-11-14 22:13 tmp\/$/m);
    expect(listing).toMatch(/ etc\/\.wh\.motd$/m);
    expect(listing).toMatch(/ var\/cache\/app\/\.wh\.\.wh\.\.opq$/m);
  });

  it("extracts to the listed contents", async () => {
    const tar = await bytes();
    const hello = execFileSync("tar", ["-xOf", "-", "usr/bin/hello"], { input: tar }).toString();
    expect(hello).toBe("#!/bin/sh\necho 'hello from an lcow layer'\n");
    const lines = execFileSync("tar", ["-xOf", "-", "usr/share/doc/lcow/lines.txt"], { input: tar });
    expect(lines.length).toBeGreaterThan(3 * 4096); // spans several ext4 blocks
  });

  it("is byte-for-byte deterministic", async () => {
    const a = createHash("sha256").update(await bytes()).digest("hex");
    const b = createHash("sha256").update(await bytes()).digest("hex");
    expect(a).toBe(b);
  });
});
