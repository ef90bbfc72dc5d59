// The layer-store conformance suite (STYLE 10), in the spirit of Docker's graphtest and
// containerd's SnapshotterSuite: run it against every implementation and mounter.
//
//   describeLayerStore("driver (none)", (home) => init(home, ["lcow.mounter=none"], { fsync: false }), { union: false });
//   describeLayerStore("driver (kernel)", (home) => init(home, ["lcow.mounter=kernel"]), { union: true });
import { mkdtemp, readdir, readFile, rm, stat, writeFile, lstat, readlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { LayerStore } from "../src/index.js";
import { chunksOf, collect, dir, file, hardlink, opaque, symlink, tarOf, treeObject, whiteout, type TarEntry } from "./tar.js";

export interface LayerStoreCaps {
  /** `get` returns a real union view of the layer and its chain (files of the layers visible, whiteouts applied, writes land in the writable layer). */
  union: boolean;
}

export type LayerStoreFactory = (home: string) => Promise<LayerStore>;

const ADD = 1;
const MODIFY = 0;
const DELETE = 2;

/** Expects `promise` to reject with a DriverError of `code`. */
async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a ${code} error`).toBeInstanceOf(Error);
  expect((err as { name?: string }).name).toBe("DriverError");
  expect((err as { code?: string }).code).toBe(code);
}

const BASE: TarEntry[] = [
  dir("etc"),
  file("etc/hosts", "127.0.0.1 localhost\n"),
  file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o600),
  dir("bin"),
  file("bin/sh", "#!/bin/busybox sh\n", 0o755),
  symlink("sh", "bin/ash"),
  hardlink("bin/sh", "bin/sh2"),
  dir("var"),
  dir("var/lib"),
  file("var/lib/state", "state v1\n"),
  dir("opt"),
  file("opt/a", "a\n"),
  file("opt/b", "b\n"),
  file("gone", "to be deleted\n"),
];
// Content bytes of BASE as Docker counts them: regular files, symlink targets, a hard link once.
const BASE_SIZE = 20 + 30 + 18 + 2 + 9 + 2 + 2 + 14;

const CHILD: TarEntry[] = [
  dir("etc"), // same attributes as in BASE: not a change by itself
  file("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"), // modified
  file("etc/new.conf", "x=1\n"), // added, in an unchanged directory
  whiteout("gone"), // deleted
  dir("opt", 0o755, 1_700_000_100), // opaque, and its time changed
  opaque("opt"),
  file("opt/c", "c\n"),
  dir("srv", 0o750), // a new directory
  file("srv/data", "data\n"),
];

/** Runs the conformance suite against `factory` (called with a fresh empty folder per test). */
export function describeLayerStore(name: string, factory: LayerStoreFactory, caps: LayerStoreCaps): void {
  describe(`layer store conformance: ${name}`, () => {
    let home: string;
    let store: LayerStore;

    beforeEach(async () => {
      home = await mkdtemp(join(tmpdir(), "lcow-store-"));
      store = await factory(join(home, "store"));
    });
    afterEach(async () => {
      await store.cleanup().catch(() => {});
      await rm(home, { recursive: true, force: true });
    });

    const layer = async (id: string, parent: string | undefined, entries: TarEntry[]) => {
      await store.create(id, parent);
      return store.applyDiff(id, parent, chunksOf(tarOf(...entries)));
    };
    const diffBytes = async (id: string) => collect(await store.diff(id));
    const visible = async (root: string) => (await readdir(root)).filter((n) => n !== "lost+found").sort();

    it("creates an empty layer", async () => {
      await store.create("empty");
      expect(await store.exists("empty")).toBe(true);
      expect(await store.exists("other")).toBe(false);
      expect(await store.changes("empty")).toEqual([]);
      expect(await store.diffSize("empty")).toBe(0);
      expect(treeObject(await diffBytes("empty"))).toEqual({});
      const meta = await store.getMetadata("empty");
      expect(meta["dir"]).toBeTruthy();
      const path = await store.get("empty");
      expect((await stat(path)).isDirectory()).toBe(true);
      if (caps.union) expect(await visible(path)).toEqual([]);
      await store.put("empty");
    });

    it("creates a base layer with files", async () => {
      const size = await layer("base", undefined, BASE);
      expect(size).toBe(BASE_SIZE);
      expect(await store.diffSize("base")).toBe(BASE_SIZE);
      const meta = await store.getMetadata("base");
      expect(meta["type"]).toBe("layer");
      expect(Number(meta["size"])).toBeGreaterThan(0);
      expect(meta["file"]).toMatch(/layer\.vhd$/);
      const changes = await store.changes("base");
      expect(changes.every((c) => c.kind === ADD)).toBe(true);
      expect(changes.map((c) => c.path)).toEqual(["/bin", "/bin/ash", "/bin/sh", "/bin/sh2", "/etc", "/etc/hosts", "/etc/passwd", "/gone", "/opt", "/opt/a", "/opt/b", "/var", "/var/lib", "/var/lib/state"]);
      if (caps.union) {
        const path = await store.get("base");
        expect(await visible(path)).toEqual(["bin", "etc", "gone", "opt", "var"]);
        expect(await readFile(join(path, "etc/hosts"), "utf8")).toBe("127.0.0.1 localhost\n");
        expect((await stat(join(path, "etc/passwd"))).mode & 0o777).toBe(0o600);
        expect(await readlink(join(path, "bin/ash"))).toBe("sh");
        expect((await stat(join(path, "bin/sh2"))).ino).toBe((await stat(join(path, "bin/sh"))).ino);
        await store.put("base");
      }
    });

    it("diffs a layer back to the tar it was given", async () => {
      const tar = tarOf(...BASE);
      await store.create("base");
      await store.applyDiff("base", "", chunksOf(tar));
      const out = await diffBytes("base");
      if (store.reproducesExactDiffs) expect(Buffer.compare(out, Buffer.from(tar))).toBe(0);
      expect(treeObject(out)).toEqual(treeObject(tar));
      // A diff applied to a new layer gives the same tree again.
      await store.create("copy");
      await store.applyDiff("copy", "", chunksOf(out));
      expect(treeObject(await diffBytes("copy"))).toEqual(treeObject(tar));
    });

    it("reports changes and diff size against known answers", async () => {
      await layer("base", undefined, BASE);
      const size = await layer("child", "base", CHILD);
      expect(size).toBe(34 + 4 + 2 + 5); // hosts, new.conf, opt/c, srv/data
      expect(await store.diffSize("child", "base")).toBe(size);
      expect(await store.changes("child", "base")).toEqual([
        { path: "/etc/hosts", kind: MODIFY },
        { path: "/etc", kind: MODIFY }, // parent of an added file, recorded before it (moby#13590)
        { path: "/etc/new.conf", kind: ADD },
        { path: "/gone", kind: DELETE },
        { path: "/opt", kind: MODIFY }, // opaque: replaces the lower directory
        { path: "/opt/a", kind: DELETE },
        { path: "/opt/b", kind: DELETE },
        { path: "/opt/c", kind: ADD },
        { path: "/srv", kind: ADD },
        { path: "/srv/data", kind: ADD },
      ]);
      expect(treeObject(await diffBytes("child"))).toEqual(treeObject(tarOf(...CHILD)));
      await rejectsWith(store.changes("child", "child"), "INVALID_ARGUMENT");
    });

    it("makes snapshots of snapshots", async () => {
      await layer("l1", undefined, [dir("d"), file("d/one", "1"), file("top", "l1")]);
      await layer("l2", "l1", [dir("d"), file("d/two", "2"), file("top", "l2")]);
      await layer("l3", "l2", [dir("d"), file("d/three", "3"), whiteout("d/one")]);
      expect((await store.getMetadata("l3"))["parent"]).toBe("l2");
      expect((await store.getMetadata("l2"))["parent"]).toBe("l1");
      expect((await store.getMetadata("l1"))["parent"]).toBeUndefined();
      expect(await store.changes("l2")).toEqual([
        { path: "/d", kind: MODIFY },
        { path: "/d/two", kind: ADD },
        { path: "/top", kind: MODIFY },
      ]);
      expect(await store.changes("l3", "l2")).toEqual([
        { path: "/d", kind: MODIFY },
        { path: "/d/one", kind: DELETE },
        { path: "/d/three", kind: ADD },
      ]);
      await store.createReadWrite("rw", "l3");
      expect((await store.getMetadata("rw"))["type"]).toBe("sandbox");
      expect(await store.changes("rw")).toEqual([]);
      expect(await store.diffSize("rw")).toBe(0);
      expect(treeObject(await diffBytes("rw"))).toEqual({});
      if (caps.union) {
        const path = await store.get("rw");
        expect(await visible(join(path, "d"))).toEqual(["three", "two"]);
        expect(await readFile(join(path, "top"), "utf8")).toBe("l2");
        await store.put("rw");
      }
    });

    it("keeps writes in a get directory across put and a new get", async () => {
      await layer("base", undefined, BASE);
      await store.createReadWrite("rw", "base");
      const p1 = await store.get("rw");
      await writeFile(join(p1, "written.txt"), "hello\n");
      await store.put("rw");
      const p2 = await store.get("rw");
      expect(await readFile(join(p2, "written.txt"), "utf8")).toBe("hello\n");
      if (caps.union) {
        await rm(join(p2, "etc/hosts"));
        await store.put("rw");
        expect(await store.changes("rw")).toEqual([
          { path: "/etc", kind: MODIFY },
          { path: "/etc/hosts", kind: DELETE },
          { path: "/written.txt", kind: ADD },
        ]);
        const tree = treeObject(await diffBytes("rw"));
        expect(Object.keys(tree).sort()).toEqual(["etc", "etc/.wh.hosts", "written.txt"]);
      } else {
        await store.put("rw");
      }
    });

    it.skipIf(!caps.union)("hides lower files behind whiteouts", async () => {
      await layer("base", undefined, BASE);
      await layer("child", "base", [whiteout("gone"), dir("etc"), whiteout("etc/passwd"), whiteout("bin")]);
      const path = await store.get("child");
      expect(await visible(path)).toEqual(["etc", "opt", "var"]);
      expect(await visible(join(path, "etc"))).toEqual(["hosts"]);
      await store.put("child");
    });

    it.skipIf(!caps.union)("shows only the upper contents of an opaque directory", async () => {
      await layer("base", undefined, BASE);
      await layer("child", "base", CHILD);
      const path = await store.get("child");
      expect(await visible(join(path, "opt"))).toEqual(["c"]);
      expect(await readFile(join(path, "etc/hosts"), "utf8")).toBe("127.0.0.1 localhost\n::1 localhost\n");
      await store.put("child");
    });

    it("builds a 128-layer chain", async () => {
      let parent: string | undefined;
      for (let i = 0; i < 128; i++) {
        const id = `layer${String(i).padStart(3, "0")}`;
        await layer(id, parent, [file(`f${i}`, `${i}\n`), file("common", `from ${i}\n`)]);
        parent = id;
      }
      expect(await store.changes(parent!)).toEqual([
        { path: "/common", kind: MODIFY },
        { path: "/f127", kind: ADD },
      ]);
      await store.createReadWrite("top", parent);
      const path = await store.get("top");
      if (caps.union) {
        expect((await visible(path)).length).toBe(129);
        expect(await readFile(join(path, "common"), "utf8")).toBe("from 127\n");
        expect(await readFile(join(path, "f0"), "utf8")).toBe("0\n");
      }
      await store.put("top");
    }, 90_000);

    it("removes a mounted layer after releasing it, and refuses to remove a parent", async () => {
      await layer("base", undefined, BASE);
      await store.createReadWrite("rw", "base");
      await store.get("rw");
      await store.get("rw");
      await rejectsWith(store.remove("base"), "FAILED_PRECONDITION");
      await store.remove("rw");
      expect(await store.exists("rw")).toBe(false);
      await rejectsWith(store.put("rw"), "NOT_FOUND");
      await store.remove("rw"); // twice: fine
      await store.remove("base");
      expect(await store.exists("base")).toBe(false);
    });

    it("counts references", async () => {
      await layer("base", undefined, BASE);
      const a = await store.get("base");
      const b = await store.get("base");
      expect(b).toBe(a);
      await store.put("base");
      if (caps.union) expect(await visible(a)).toContain("etc");
      await store.put("base");
      await rejectsWith(store.put("base"), "FAILED_PRECONDITION");
    });

    it("runs many operations on different ids at once", async () => {
      await layer("base", undefined, BASE);
      const ids = Array.from({ length: 16 }, (_, i) => `c${i}`);
      await Promise.all(
        ids.map(async (id, i) => {
          await layer(id, "base", [file(`own${i}`, `${id}\n`)]);
          await store.createReadWrite(`${id}-rw`, id);
          const path = await store.get(`${id}-rw`);
          if (caps.union) expect(await readFile(join(path, `own${i}`), "utf8")).toBe(`${id}\n`);
          await store.put(`${id}-rw`);
        }),
      );
      for (const [i, id] of ids.entries()) expect(treeObject(await diffBytes(id))).toEqual(treeObject(tarOf(file(`own${i}`, `${id}\n`))));
      // The same id from many callers at once: exactly one create wins.
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => store.create("same", "base")));
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      for (const r of results) if (r.status === "rejected") expect((r.reason as { code: string }).code).toBe("ALREADY_EXISTS");
      // Gets and puts of one id from many callers balance out.
      await Promise.all(Array.from({ length: 8 }, () => store.get("base")));
      await Promise.all(Array.from({ length: 8 }, () => store.put("base")));
      await rejectsWith(store.put("base"), "FAILED_PRECONDITION");
    });

    it("refuses what the graph-driver contract forbids, with typed errors", async () => {
      await layer("base", undefined, BASE);
      await rejectsWith(store.create("base"), "ALREADY_EXISTS");
      await rejectsWith(store.create("x", "missing"), "NOT_FOUND");
      expect(await store.exists("x")).toBe(false);
      await rejectsWith(store.applyDiff("base", undefined, chunksOf(tarOf(file("a", "a")))), "FAILED_PRECONDITION");
      await rejectsWith(store.applyDiff("missing", undefined, chunksOf(tarOf(file("a", "a")))), "NOT_FOUND");
      await store.createReadWrite("rw", "base");
      await rejectsWith(store.applyDiff("rw", "base", chunksOf(tarOf(file("a", "a")))), "FAILED_PRECONDITION");
      for (const bad of ["", ".", "..", "a/b", "a\\b", "../x", "x-removing", ".hidden", "cache"]) {
        await rejectsWith(store.create(bad), "INVALID_ARGUMENT");
      }
      await rejectsWith(store.get("missing"), "NOT_FOUND");
      await rejectsWith(store.diff("missing"), "NOT_FOUND");
      await rejectsWith(store.diff("rw", "other"), "INVALID_ARGUMENT");
      // A truncated tar leaves the layer empty, ready for another try.
      await store.create("t", "base");
      const tar = tarOf(file("big", "x".repeat(5000)));
      await rejectsWith(store.applyDiff("t", "base", chunksOf(tar.subarray(0, 1500))), "INVALID_ARGUMENT");
      expect((await store.getMetadata("t"))["type"]).toBe("empty");
      await store.applyDiff("t", "base", chunksOf(tar));
      expect((await store.getMetadata("t"))["type"]).toBe("layer");
    });

    it("reports status and survives cleanup twice", async () => {
      const status = await store.status();
      expect(status[0]).toEqual(["LCOW", ""]);
      await layer("base", undefined, BASE);
      await store.get("base");
      await store.cleanup();
      await store.cleanup();
      await rejectsWith(store.put("base"), "FAILED_PRECONDITION");
      expect(await store.exists("base")).toBe(true);
      expect((await lstat(join((await store.getMetadata("base"))["dir"]!, "layer.vhd"))).isFile()).toBe(true);
    });
  });
}
