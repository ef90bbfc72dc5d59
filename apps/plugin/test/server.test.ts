// The protocol layer against a fake driver: every endpoint's wire shape, error statuses, a
// chunked ApplyDiff with back-pressure, Diff streaming and Diff failures before and after the 200.

import { mkdtemp, rm, writeFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PluginServer, parseQuery } from "../src/server.js";
import { toPluginResponse } from "../src/errors.js";
import { parsePluginArgs, specFileText } from "../src/args.js";
import { FakeDriver } from "./fake-driver.js";
import { json, post } from "./helpers.js";

let dir: string;
let socket: string;
let driver: FakeDriver;
let server: PluginServer;

async function startServer(withRoot = true, options: string[] = []) {
  const root = withRoot ? join(dir, "home") : undefined;
  driver = new FakeDriver();
  server = new PluginServer({ driver, root, options });
  await server.start();
  await server.listen(socket);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "lcow-plugin-"));
  socket = join(dir, "p.sock");
});
afterEach(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

const ID = "a".repeat(64);
const CHILD = "b".repeat(64);

describe("PluginServer endpoints", () => {
  beforeEach(() => startServer());

  it("Plugin.Activate answers GraphDriver to an empty body", async () => {
    const r = await post(socket, "/Plugin.Activate");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("application/vnd.docker.plugins.v1.1+json");
    expect(json(r)).toEqual({ Implements: ["GraphDriver"] });
  });

  it("Init passes Home and Opts, and --root wins over Home", async () => {
    const r = await post(socket, "/GraphDriver.Init", { Home: "/var/lib/docker/lcow", Opts: ["lcow.sandboxsize=30"], UIDMaps: null, GIDMaps: null });
    expect(r.status).toBe(200);
    expect(json(r)).toEqual({});
    expect(driver.home).toBe(join(dir, "home"));
    expect(driver.options).toEqual(["lcow.sandboxsize=30"]);
    // the same Init again is not a second init
    await post(socket, "/GraphDriver.Init", { Home: "/var/lib/docker/lcow", Opts: ["lcow.sandboxsize=30"], UIDMaps: null, GIDMaps: null });
    expect(driver.inits).toBe(2); // one at start (flags), one for the new options
  });

  it("Init with a bad option or userns maps is a non-200 Err", async () => {
    const bad = await post(socket, "/GraphDriver.Init", { Home: "/h", Opts: ["frob=1"] });
    expect(bad.status).toBe(400);
    expect(json(bad)).toEqual({ Err: "INVALID_ARGUMENT: unknown option frob=1" });
    const maps = await post(socket, "/GraphDriver.Init", { Home: "/h", Opts: [], UIDMaps: [{ container_id: 0, host_id: 100000, size: 65536 }], GIDMaps: null });
    expect(maps.status).toBe(400);
    expect((json(maps) as { Err: string }).Err).toMatch(/userns-remap/);
  });

  it("Capabilities is nested, as the proxy decodes it", async () => {
    expect(json(await post(socket, "/GraphDriver.Capabilities", {}))).toEqual({ Capabilities: { ReproducesExactDiffs: true } });
  });

  it("Status returns pairs", async () => {
    expect(json(await post(socket, "/GraphDriver.Status", {}))).toEqual({ Status: [["Home", join(dir, "home")], ["Layers", "0"]] });
  });

  it("Create, CreateReadWrite, Exists, Get, Put, GetMetadata, Changes, DiffSize, Remove, Cleanup", async () => {
    expect(json(await post(socket, "/GraphDriver.Create", { ID }))).toEqual({});
    expect(json(await post(socket, "/GraphDriver.CreateReadWrite", { ID: CHILD, Parent: ID, MountLabel: "", StorageOpt: { "lcow.sandboxsize": "20" } }))).toEqual({});
    expect(driver.layers.get(CHILD)).toMatchObject({ parent: ID, rw: true });
    expect(json(await post(socket, "/GraphDriver.Exists", { ID }))).toEqual({ Exists: true });
    expect(json(await post(socket, "/GraphDriver.Exists", { ID: "nope" }))).toEqual({ Exists: false });
    expect(json(await post(socket, "/GraphDriver.Get", { ID: CHILD, MountLabel: "" }))).toEqual({ Dir: `${join(dir, "home")}/${CHILD}` });
    expect(json(await post(socket, "/GraphDriver.Put", { ID: CHILD }))).toEqual({});
    expect(json(await post(socket, "/GraphDriver.GetMetadata", { ID: CHILD }))).toEqual({ Metadata: { dir: `${join(dir, "home")}/${CHILD}`, parent: ID } });
    expect(json(await post(socket, "/GraphDriver.Changes", { ID: CHILD, Parent: ID }))).toEqual({ Changes: [{ Path: "/a", Kind: 1 }, { Path: "/b", Kind: 2 }] });
    expect(json(await post(socket, "/GraphDriver.DiffSize", { ID: CHILD, Parent: ID }))).toEqual({ Size: 0 });
    expect(json(await post(socket, "/GraphDriver.Remove", { ID: CHILD }))).toEqual({});
    expect(json(await post(socket, "/GraphDriver.Cleanup", {}))).toEqual({});
    expect(driver.cleanups).toBe(1);
  });

  it("driver errors keep their code and get a non-200 status", async () => {
    const cases: Array<[string, unknown, number, string]> = [
      ["/GraphDriver.Remove", { ID: "missing" }, 404, "NOT_FOUND: layer missing does not exist"],
      ["/GraphDriver.Put", { ID: "missing" }, 404, "NOT_FOUND: layer missing does not exist"],
      ["/GraphDriver.Get", {}, 400, "INVALID_ARGUMENT: missing ID"],
      ["/GraphDriver.Diff", { ID: "missing" }, 404, "NOT_FOUND: layer missing does not exist"],
      ["/GraphDriver.Frobnicate", {}, 404, "NOT_FOUND: unknown method /GraphDriver.Frobnicate"],
    ];
    for (const [path, body, status, err] of cases) {
      const r = await post(socket, path, body);
      expect([path, r.status, json(r)]).toEqual([path, status, { Err: err }]);
    }
    await post(socket, "/GraphDriver.Create", { ID });
    const dup = await post(socket, "/GraphDriver.Create", { ID });
    expect([dup.status, json(dup)]).toEqual([409, { Err: `ALREADY_EXISTS: layer ${ID} exists` }]);
    const notJson = await post(socket, "/GraphDriver.Create", "x" as unknown);
    expect(notJson.status).toBe(400);
  });

  it("ApplyDiff takes a chunked body with an unescaped query, and Diff streams it back", async () => {
    await post(socket, "/GraphDriver.Create", { ID });
    await post(socket, "/GraphDriver.Create", { ID: CHILD, Parent: ID });
    const tar = Buffer.alloc(3 * 1024 * 1024 + 512);
    for (let i = 0; i < tar.length; i++) tar[i] = (i * 7 + (i >> 12)) & 0xff;
    const chunks = Array.from({ length: Math.ceil(tar.length / 65_000) }, (_, i) => tar.subarray(i * 65_000, (i + 1) * 65_000));
    const r = await post(socket, `/GraphDriver.ApplyDiff?id=${CHILD}&parent=${ID}`, Readable.from(chunks));
    expect([r.status, json(r)]).toEqual([200, { Size: tar.length }]);
    const d = await post(socket, "/GraphDriver.Diff", { ID: CHILD, Parent: ID });
    expect(d.status).toBe(200);
    expect(d.headers["content-type"]).toBe("application/x-tar");
    expect(d.body.equals(tar)).toBe(true);
  });

  it("ApplyDiff reads the body only as fast as the driver consumes it", async () => {
    await post(socket, "/GraphDriver.Create", { ID });
    let open!: () => void;
    driver.gate = new Promise((resolve) => (open = resolve));
    let produced = 0;
    const body = new Readable({
      read() {
        if (produced >= 64 * 1024 * 1024) return void this.push(null);
        produced += 1024 * 1024;
        this.push(Buffer.alloc(1024 * 1024));
      },
    });
    const reply = post(socket, `/GraphDriver.ApplyDiff?id=${ID}`, body);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // with the driver stalled, only socket and stream buffers' worth was produced, not 64 MiB
    expect(produced).toBeLessThan(16 * 1024 * 1024);
    open();
    const r = await reply;
    expect(json(r)).toEqual({ Size: 64 * 1024 * 1024 });
  });

  it("a failed ApplyDiff is a non-200 Err and the connection closes", async () => {
    await post(socket, "/GraphDriver.Create", { ID });
    const r = await post(socket, `/GraphDriver.ApplyDiff?id=${ID}&parent=`, Readable.from([Buffer.alloc(100_000), Buffer.from("BAD-TAR"), Buffer.alloc(5_000_000)]));
    expect([r.status, json(r)]).toEqual([400, { Err: `INVALID_ARGUMENT: layer ${ID}: tar header invalid` }]);
    const missing = await post(socket, "/GraphDriver.ApplyDiff?parent=x", Readable.from([Buffer.alloc(10)]));
    expect(missing.status).toBe(400);
  });

  it("a Diff that fails before its first chunk is a non-200 Err", async () => {
    await post(socket, "/GraphDriver.Create", { ID });
    driver.failDiffAfter.set(ID, 0);
    const r = await post(socket, "/GraphDriver.Diff", { ID });
    expect([r.status, json(r)]).toEqual([500, { Err: `DATA_LOSS: layer ${ID}: image is damaged` }]);
  });

  it("a Diff that fails midway cuts the connection (never a complete 200)", async () => {
    await post(socket, "/GraphDriver.Create", { ID });
    await post(socket, `/GraphDriver.ApplyDiff?id=${ID}`, Readable.from([Buffer.alloc(100_000, 1)]));
    driver.failDiffAfter.set(ID, 40_960);
    const r = await post(socket, "/GraphDriver.Diff", { ID });
    expect(r.status).toBe(200);
    expect(r.error).toBeDefined();
    expect(r.body.length).toBeLessThan(100_000);
  });

  it("close() waits for a request in flight, then cleans up and removes the socket", async () => {
    await post(socket, "/GraphDriver.Create", { ID });
    let open!: () => void;
    driver.gate = new Promise((resolve) => (open = resolve));
    const reply = post(socket, `/GraphDriver.ApplyDiff?id=${ID}`, Readable.from([Buffer.alloc(1000, 2)]));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closed = server.close();
    let done = false;
    void closed.then(() => (done = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(done).toBe(false);
    open();
    expect(json(await reply)).toEqual({ Size: 1000 });
    await closed;
    expect(driver.cleanups).toBe(1);
    await expect(stat(socket)).rejects.toThrow();
  });
});

describe("PluginServer without --root", () => {
  beforeEach(() => startServer(false, ["lcow.mounter=none"]));

  it("refuses layer calls until Init, then uses Init's Home with flag options first", async () => {
    const before = await post(socket, "/GraphDriver.Create", { ID });
    expect(before.status).toBe(412);
    expect((json(before) as { Err: string }).Err).toMatch(/^FAILED_PRECONDITION: .*--root/);
    expect(json(await post(socket, "/GraphDriver.Status", {}))).toEqual({ Status: [["Home", "(not initialised)"]] });
    await post(socket, "/GraphDriver.Init", { Home: "/var/lib/docker/lcow", Opts: ["lcow.sandboxsize=25"], UIDMaps: null, GIDMaps: null });
    expect([driver.home, driver.options]).toEqual(["/var/lib/docker/lcow", ["lcow.mounter=none", "lcow.sandboxsize=25"]]);
    expect((await post(socket, "/GraphDriver.Create", { ID })).status).toBe(200);
  });
});

describe("listen", () => {
  it("replaces a stale socket but refuses a live one", async () => {
    await startServer();
    const other = new PluginServer({ driver: new FakeDriver() });
    await expect(other.listen(socket)).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
    await server.close();
    await writeFile(join(dir, "file"), "x");
    await expect(other.listen(join(dir, "file"))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});

describe("helpers", () => {
  it("parseQuery keeps dockerd's unescaped values and decodes curl's", () => {
    expect(parseQuery(`id=${ID}&parent=`)).toEqual({ id: ID, parent: "" });
    expect(parseQuery("id=a%2Db&parent=%zz")).toEqual({ id: "a-b", parent: "%zz" });
  });

  it("toPluginResponse never answers 200 and normalises foreign throws", () => {
    expect(toPluginResponse(Object.assign(new Error("gone"), { code: "NOT_FOUND" }))).toMatchObject({ status: 404, body: { Err: "NOT_FOUND: gone" } });
    expect(toPluginResponse(Object.assign(new Error("disk"), { code: "ENOSPC", syscall: "write" }))).toMatchObject({ status: 500, code: "IO" });
    expect(toPluginResponse(new TypeError("x is undefined"))).toMatchObject({ status: 500, body: { Err: "INTERNAL: x is undefined" } });
    expect(toPluginResponse("a string")).toMatchObject({ status: 500, code: "INTERNAL" });
    expect(toPluginResponse(Object.assign(new Error("bad tar"), { code: "TAR_TRUNCATED" })).status).toBe(400);
  });

  it("parsePluginArgs and specFileText", () => {
    const a = parsePluginArgs(["--root", "/srv/lcow", "--mounter", "kernel", "--storage-opt", "lcow.sandboxsize=30"], "linux");
    expect(a).toMatchObject({ root: "/srv/lcow", socket: "/run/docker/plugins/lcow.sock", options: ["lcow.sandboxsize=30", "lcow.mounter=kernel"] });
    expect(parsePluginArgs([], "win32").socket).toBe("\\\\.\\pipe\\lcow");
    expect(() => parsePluginArgs(["--frob"])).toThrow(/frob/);
    expect(() => parsePluginArgs(["--storage-opt", "size=1"])).toThrow(/lcow\.<name>/);
    expect(specFileText("/run/x.sock")).toBe("unix:///run/x.sock\n");
    expect(specFileText("\\\\.\\pipe\\lcow")).toBe("npipe:////./pipe/lcow\n");
  });
});
