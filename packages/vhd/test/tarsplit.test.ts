// Byte-exact reproduction (issue 6, applyDiff/diff): for every fixture tar, convertTar with a
// tarsplit record then reproduceTar gives back the very same bytes, whatever the dialect
// (GNU, pax, sparse, long names, repeated entries, whiteouts, compression).
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { convertTar, isVhdError, reproduceTar } from "../src/index.js";
import { runOk, withTempDir } from "./harness/index.js";
import { fixtures } from "./fixtures/index.js";

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c);
  return Buffer.concat(parts);
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** The plain tar a fixture file holds (decompressed when it is gzip or zstd). */
async function plainTar(path: string): Promise<Buffer> {
  const raw = await readFile(path);
  if (raw[0] === 0x1f && raw[1] === 0x8b) return gunzipSync(raw);
  if (raw[0] === 0x28 && raw[1] === 0xb5) return Buffer.from((await runOk("zstd", ["-dc", path], { binary: true })).stdout, "latin1");
  return raw;
}

describe("tarsplit: convert then reproduce gives the original tar byte for byte", () => {
  for (const f of fixtures) {
    it(f.name, () =>
      withTempDir(`split-${f.name}`, async (dir) => {
        const tar = await f.build(dir);
        const image = join(dir, "layer.vhd");
        const split = join(dir, "layer.tarsplit");
        await convertTar(tar, image, { ...(f.convert ?? {}), tarsplitPath: split });
        const back = await collect(reproduceTar(image, split));
        const want = await plainTar(tar);
        expect(back.length).toBe(want.length);
        expect(sha(back)).toBe(sha(want));
      }));
  }

  it("rejects a damaged record with a typed error", () =>
    withTempDir("split-bad", async (dir) => {
      const f = fixtures[0]!;
      const tar = await f.build(dir);
      const image = join(dir, "layer.vhd");
      const split = join(dir, "layer.tarsplit");
      await convertTar(tar, image, { tarsplitPath: split });
      const bytes = await readFile(split);
      await writeFile(join(dir, "cut.tarsplit"), bytes.subarray(0, Math.floor(bytes.length / 2)));
      const err = await collect(reproduceTar(image, join(dir, "cut.tarsplit"))).then(() => undefined, (e: unknown) => e);
      expect(isVhdError(err)).toBe(true);
      const missing = await collect(reproduceTar(image, join(dir, "none.tarsplit"))).then(() => undefined, (e: unknown) => e);
      expect(missing).toMatchObject({ code: "IO" });
    }));
});
