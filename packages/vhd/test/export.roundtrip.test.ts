// Acceptance (issue 4): for every fixture tar of the convert issue, `convertTar` then
// `exportImage` gives a tar that GNU tar extracts to the same tree as the original: names,
// types, modes, owners, nanosecond mtimes, contents, xattrs, hard links, device numbers, holes.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { convertTar, exportImage } from "../src/index.js";
import { assertTreesEqual, expectedTree, manifestOf, runOk, withTempDir, GNU_TAR_EXTRACT } from "./harness/index.js";
import { fixtures } from "./fixtures/index.js";

async function extract(tarPath: string, dir: string) {
  await mkdir(dir, { recursive: true });
  await runOk("tar", [...GNU_TAR_EXTRACT, "-xf", tarPath, "-C", dir]);
  return manifestOf(dir);
}

describe("export round trip: convert then export gives back the original tree", () => {
  for (const f of fixtures) {
    it(`${f.name}`, () =>
      withTempDir(`rt-${f.name}`, async (dir) => {
        const original = await f.build(dir);
        const image = join(dir, "layer.img");
        await convertTar(original, image, f.convert ?? {});
        const exported = join(dir, "exported.tar");
        // These tars set trusted.overlay.opaque themselves (no .wh..wh..opq entry): a layer
        // export would turn the xattr into a marker entry, so they are exported raw.
        const rawOverlayXattrs = f.name.startsWith("xattrs-");
        const summary = await exportImage(image, exported, { keepWhiteouts: (f.convert?.keepWhiteouts ?? false) || rawOverlayXattrs });
        expect(summary.bytesOut).toBeGreaterThan(0);
        // Whiteouts go out as the `.wh.` files they came in as, so both sides keep them as files.
        const expected = await expectedTree(original, { keepWhiteouts: true, workDir: join(dir, "want") });
        if (!f.convert?.keepWhiteouts) {
          // A whiteout's or opaque marker's own mode, owner and time are not kept in the image
          // (it becomes a 0/0 device or an xattr): only its presence round-trips.
          for (const e of expected.entries) {
            if (/(^|\/)\.wh\./.test(e.path)) {
              e.unspecified = ["mode", "uid", "gid", "mtimeNs"];
              e.note = "whiteout attributes are not stored";
            }
          }
        }
        const actual = await extract(exported, join(dir, "got"));
        assertTreesEqual(expected, actual, `${f.name}: extraction of the exported tar`);
        if (f.name.includes("sparse")) {
          // Holes stay holes: the exported tar's sparse entries extract to files using few blocks.
          const big = actual.entries.filter((e) => e.type === "file" && (e.size ?? 0) >= 1 << 30);
          expect(big.length).toBeGreaterThan(0);
          for (const e of big) expect(e.blocks, `${e.path} allocated blocks`).toBeLessThan((e.size ?? 0) / 512 / 4);
        }
      }));
  }
});
