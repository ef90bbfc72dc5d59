// The protocol layer on top of the real @lcow/driver (temp root, `none` mounter): what dockerd
// sends for an image pull, a container and a commit, checked on the wire and on disk.

import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkImage } from "@lcow/vhd";
import { createLcowDriver } from "../src/driver.js";
import { PluginServer } from "../src/server.js";
import { json, post } from "./helpers.js";

const run = promisify(execFile);
const BASE = "1".repeat(64);
const TOP = "2".repeat(64);
const RW = "3".repeat(64);

let dir: string;
let root: string;
let socket: string;
let server: PluginServer;
let baseTar: Buffer;
let topTar: Buffer;

async function makeTar(name: string, files: Record<string, string>): Promise<Buffer> {
  const src = join(dir, name);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(src, path, ".."), { recursive: true });
    await writeFile(join(src, path), text);
  }
  const out = join(dir, `${name}.tar`);
  await run("tar", ["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=2024-01-01", "-C", src, "-cf", out, "."]);
  return readFile(out);
}

/** Splits a buffer into odd-size chunks, as a chunked HTTP body arrives. */
const chunked = (b: Buffer) => Readable.from(Array.from({ length: Math.ceil(b.length / 7777) }, (_, i) => b.subarray(i * 7777, (i + 1) * 7777)));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lcow-plugin-real-"));
  root = join(dir, "root");
  socket = join(dir, "p.sock");
  baseTar = await makeTar("base", { "etc/a": "a\n", "etc/b": "b\n", "file": "base\n" });
  topTar = await makeTar("top", { "etc/.wh.a": "", "file": "top\n", "new/x": "x\n" });
  server = new PluginServer({ driver: createLcowDriver(), options: ["lcow.mounter=none"] });
  await server.start();
  await server.listen(socket);
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe("PluginServer over @lcow/driver", () => {
  it("activates, refuses work before Init, and reports the driver's capabilities", async () => {
    expect(json(await post(socket, "/Plugin.Activate"))).toEqual({ Implements: ["GraphDriver"] });
    expect((await post(socket, "/GraphDriver.Create", { ID: BASE })).status).toBe(412);
    const badInit = await post(socket, "/GraphDriver.Init", { Home: root, Opts: ["lcow.frob=1"], UIDMaps: null, GIDMaps: null });
    expect(badInit.status).toBe(400);
    expect((json(badInit) as { Err: string }).Err).toMatch(/^INVALID_ARGUMENT: .*lcow\.frob/);
    expect(json(await post(socket, "/GraphDriver.Init", { Home: root, Opts: [], UIDMaps: null, GIDMaps: null }))).toEqual({});
    expect(json(await post(socket, "/GraphDriver.Capabilities", {}))).toEqual({ Capabilities: { ReproducesExactDiffs: true } });
    const status = (json(await post(socket, "/GraphDriver.Status", {})) as { Status: [string, string][] }).Status;
    expect(status).toContainEqual(["Home", root]);
  });

  it("pull: Create + chunked ApplyDiff per layer; Diff gives the applied tars back byte for byte", async () => {
    expect((await post(socket, "/GraphDriver.Create", { ID: BASE })).status).toBe(200);
    const a = await post(socket, `/GraphDriver.ApplyDiff?id=${BASE}&parent=`, chunked(baseTar));
    expect(a.status).toBe(200);
    expect((json(a) as { Size: number }).Size).toBeGreaterThan(0);
    expect((await post(socket, "/GraphDriver.Create", { ID: TOP, Parent: BASE })).status).toBe(200);
    expect((await post(socket, `/GraphDriver.ApplyDiff?id=${TOP}&parent=${BASE}`, chunked(topTar))).status).toBe(200);
    for (const [id, parent, tar] of [[BASE, "", baseTar], [TOP, BASE, topTar]] as const) {
      const d = await post(socket, "/GraphDriver.Diff", parent === "" ? { ID: id } : { ID: id, Parent: parent });
      expect(d.status).toBe(200);
      expect(d.body.equals(tar), `diff of ${id.slice(0, 4)}`).toBe(true);
      expect((await checkImage(join(root, id, "layer.vhd"))).ok).toBe(true);
    }
  });

  it("Changes, DiffSize, GetMetadata, Exists", async () => {
    const changes = (json(await post(socket, "/GraphDriver.Changes", { ID: TOP, Parent: BASE })) as { Changes: Array<{ Path: string; Kind: number }> }).Changes;
    expect(changes).toEqual(expect.arrayContaining([{ Path: "/etc/a", Kind: 2 }, { Path: "/file", Kind: 0 }, { Path: "/new", Kind: 1 }, { Path: "/new/x", Kind: 1 }]));
    expect((json(await post(socket, "/GraphDriver.DiffSize", { ID: TOP, Parent: BASE })) as { Size: number }).Size).toBeGreaterThan(0);
    const meta = (json(await post(socket, "/GraphDriver.GetMetadata", { ID: TOP })) as { Metadata: Record<string, string> }).Metadata;
    expect(meta).toMatchObject({ parent: BASE });
    expect(json(await post(socket, "/GraphDriver.Exists", { ID: TOP }))).toEqual({ Exists: true });
    expect(json(await post(socket, "/GraphDriver.Exists", { ID: "9".repeat(64) }))).toEqual({ Exists: false });
  });

  it("container: CreateReadWrite, Get/Put (none mounter: the layer folder), Remove", async () => {
    expect((await post(socket, "/GraphDriver.CreateReadWrite", { ID: RW, Parent: TOP, StorageOpt: {} })).status).toBe(200);
    expect(await readdir(join(root, RW))).toContain("sandbox.vhdx");
    expect(json(await post(socket, "/GraphDriver.Get", { ID: RW, MountLabel: "" }))).toEqual({ Dir: join(root, RW) });
    expect(json(await post(socket, "/GraphDriver.Put", { ID: RW }))).toEqual({});
    const putAgain = await post(socket, "/GraphDriver.Put", { ID: RW });
    expect(putAgain.status).toBe(412);
    const diff = await post(socket, "/GraphDriver.Diff", { ID: RW, Parent: TOP });
    expect(diff.status).toBe(200); // an empty writable layer: a tar with only its end blocks
    expect(json(await post(socket, "/GraphDriver.Remove", { ID: RW }))).toEqual({});
    expect(await readdir(root)).not.toContain(RW);
  });

  it("errors: duplicate create 409, missing parent 404, bad tar 400, Diff of a missing layer non-200, Remove with children 412", async () => {
    const dup = await post(socket, "/GraphDriver.Create", { ID: BASE });
    expect(dup.status).toBe(409);
    expect((json(dup) as { Err: string }).Err).toMatch(/^ALREADY_EXISTS: /);
    expect((await post(socket, "/GraphDriver.Create", { ID: "4".repeat(64), Parent: "5".repeat(64) })).status).toBe(404);
    await post(socket, "/GraphDriver.Create", { ID: "6".repeat(64) });
    const bad = await post(socket, `/GraphDriver.ApplyDiff?id=${"6".repeat(64)}&parent=`, chunked(Buffer.concat([baseTar.subarray(0, 700), Buffer.alloc(300, 0x41)])));
    expect(bad.status).toBe(400);
    expect((json(bad) as { Err: string }).Err).toMatch(/^INVALID_ARGUMENT: /);
    const missing = await post(socket, "/GraphDriver.Diff", { ID: "7".repeat(64) });
    expect(missing.status).not.toBe(200);
    expect((json(missing) as { Err: string }).Err).toMatch(/^NOT_FOUND: /);
    const parentRemove = await post(socket, "/GraphDriver.Remove", { ID: BASE });
    expect(parentRemove.status).toBe(412);
  });

  it("Cleanup keeps the store usable", async () => {
    expect(json(await post(socket, "/GraphDriver.Cleanup", {}))).toEqual({});
    expect(json(await post(socket, "/GraphDriver.Exists", { ID: BASE }))).toEqual({ Exists: true });
  });
});
