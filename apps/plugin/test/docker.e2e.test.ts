// End to end with a real dockerd (Debian's docker.io 20.10): a private daemon on its own data
// root, exec root, API socket and pidfile loads the plugin (unique name per run, socket in
// /run/docker/plugins) and runs import, load, save, create, cp, diff, export, commit, run, rm,
// rmi, a daemon restart and a plugin restart, asserting on docker's output and on the files in
// the plugin's root. Skips (with the reason) only when not root or when dockerd cannot start.

import { createHash, randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { BUILTIN_MOUNTERS, LAYER_FILE, SANDBOX_FILE } from "@lcow/driver";
import { checkImage } from "@lcow/vhd";
import { copyBinaries, dockerSkipReason, run, startDockerd, startPlugin, tarDir, type Dockerd, type PluginProcess } from "./docker.js";

const pluginDir = join(import.meta.dirname, "..");
// LCOW_E2E_PLUGIN_MAIN runs another build of the plugin (one that registers an unreleased mounter).
const MAIN = process.env.LCOW_E2E_PLUGIN_MAIN ?? join(pluginDir, "dist", "main.js");
const staticSkip = dockerSkipReason();
if (staticSkip !== undefined) console.warn(`[docker.e2e] skipped: ${staticSkip}`);
// `get` must return a real rootfs for create/cp/export/run: only the kernel mounter does that on Linux.
const KERNEL = BUILTIN_MOUNTERS.kernel !== undefined || process.env.LCOW_E2E_KERNEL === "1";
const RESERVED = new Set(["cache", "scratch", "mounts", "locks"]);

let dir: string;
let root: string;
let name: string;
let socket: string;
let daemon: Dockerd | undefined;
let plugin: PluginProcess | undefined;
let skipReason: string | undefined = staticSkip;
const D = (args: string[]) => daemon!.docker(args);

function need(ctx: TestContext, kernel = false) {
  if (skipReason !== undefined) ctx.skip();
  if (kernel && !KERNEL) ctx.skip();
}

/** Layer folders (ids) in the plugin's root, with what each holds. */
async function layerFolders(): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const entry of await readdir(root, { withFileTypes: true })) {
    if (!entry.isDirectory() || RESERVED.has(entry.name)) continue;
    out.set(entry.name, await readdir(join(root, entry.name)));
  }
  return out;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A three-layer image in `docker save` format: a base, then whiteouts and an opaque dir. */
async function buildMultiLayerImage(work: string): Promise<{ tar: string; layers: Buffer[] }> {
  const l1 = join(work, "l1");
  await copyBinaries(l1, ["/usr/bin/cat", "/usr/bin/ls"]);
  await mkdir(join(l1, "etc"), { recursive: true });
  await mkdir(join(l1, "dir"));
  await mkdir(join(l1, "opq/sub"), { recursive: true });
  await writeFile(join(l1, "file"), "base\n");
  await writeFile(join(l1, "etc/a"), "a\n");
  await writeFile(join(l1, "etc/keep"), "keep\n");
  await writeFile(join(l1, "dir/x"), "x\n");
  await writeFile(join(l1, "dir/y"), "y\n");
  await writeFile(join(l1, "opq/old1"), "old1\n");
  await writeFile(join(l1, "opq/sub/old2"), "old2\n");
  await writeFile(join(l1, "big"), randomBytes(3 * 1024 * 1024));
  await symlink("file", join(l1, "link"));
  const l2 = join(work, "l2");
  await mkdir(join(l2, "etc"), { recursive: true });
  await mkdir(join(l2, "opq"));
  await writeFile(join(l2, "etc/.wh.a"), "");
  await writeFile(join(l2, "opq/.wh..wh..opq"), "");
  await writeFile(join(l2, "opq/new"), "new\n");
  await writeFile(join(l2, "file"), "layer2\n");
  const l3 = join(work, "l3");
  await mkdir(join(l3, "dir"), { recursive: true });
  await writeFile(join(l3, "dir/.wh.x"), "");
  await writeFile(join(l3, "added"), "three\n");
  await chmod(join(l3, "added"), 0o640);

  const img = join(work, "img");
  await mkdir(img);
  const layers: Buffer[] = [];
  for (const [i, src] of [l1, l2, l3].entries()) {
    await mkdir(join(img, `l${i + 1}`));
    await tarDir(src, join(img, `l${i + 1}`, "layer.tar"));
    layers.push(await readFile(join(img, `l${i + 1}`, "layer.tar")));
  }
  const config = {
    architecture: "amd64",
    os: "linux",
    config: { Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["cat", "/file"] },
    rootfs: { type: "layers", diff_ids: layers.map((l) => `sha256:${sha256(l)}`) },
    history: layers.map((_, i) => ({ created: "2024-01-01T00:00:00Z", created_by: `layer ${i + 1}` })),
  };
  const configText = JSON.stringify(config);
  const configName = `${sha256(Buffer.from(configText))}.json`;
  await writeFile(join(img, configName), configText);
  await writeFile(join(img, "manifest.json"), JSON.stringify([{ Config: configName, RepoTags: ["lcow-e2e/multi:1"], Layers: ["l1/layer.tar", "l2/layer.tar", "l3/layer.tar"] }]));
  const tar = join(work, "multi.tar");
  await tarDir(img, tar, ["manifest.json", configName, "l1", "l2", "l3"]);
  return { tar, layers };
}

async function startOurPlugin() {
  plugin = await startPlugin({ main: MAIN, root, socket, mounter: KERNEL ? "kernel" : "none", log: join(dir, "plugin.log") });
}

describe.skipIf(staticSkip !== undefined)("lcow-plugin under a real dockerd", () => {
  let multi: { tar: string; layers: Buffer[] };
  let importedId = "";

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "lcow-plugin-e2e-"));
    root = join(dir, "plugin-root");
    name = `lcow-e2e-${process.pid}-${randomBytes(3).toString("hex")}`;
    socket = `/run/docker/plugins/${name}.sock`;
    await stat(MAIN).catch(() => {
      throw new Error(`${MAIN} is missing: run pnpm build first`);
    });
    multi = await buildMultiLayerImage(join(dir, "build"));
    await startOurPlugin();
    try {
      daemon = await startDockerd(join(dir, "docker"), name);
    } catch (err) {
      skipReason = `dockerd cannot start: ${(err as Error).message}`;
      console.warn(`[docker.e2e] skipped: ${skipReason}`);
    }
  }, 180_000);

  afterAll(async () => {
    if (daemon !== undefined) {
      const ids = (await D(["ps", "-aq"]).catch(() => "")).split("\n").filter(Boolean);
      if (ids.length > 0) await D(["rm", "-f", ...ids]).catch(() => {});
      await daemon.stop();
    }
    const code = plugin === undefined ? 0 : await plugin.stop();
    if (code !== 0 || process.env.LCOW_E2E_SHOW_LOGS === "1") {
      console.warn(`[docker.e2e] plugin log tail:\n${(await readFile(join(dir, "plugin.log"), "utf8").catch(() => "")).slice(-6000)}`);
      if (daemon !== undefined) console.warn(`[docker.e2e] dockerd log tail:\n${(await readFile(daemon.log, "utf8").catch(() => "")).slice(-4000)}`);
    }
    // Nothing may stay mounted or attached under our directory.
    const mounts = (await readFile("/proc/self/mountinfo", "utf8")).split("\n").filter((l) => dir !== undefined && l.includes(dir));
    const loops = dir === undefined ? "" : (await run("losetup", ["-a"]).catch(() => ({ stdout: "" }))).stdout.split("\n").filter((l) => l.includes(dir)).join("\n");
    if (dir !== undefined) await rm(dir, { recursive: true, force: true }).catch(() => {});
    await rm(socket, { force: true }).catch(() => {});
    expect(code).toBe(0);
    expect(mounts).toEqual([]);
    expect(loops).toBe("");
  }, 180_000);

  it("docker info shows the plugin as the storage driver with our Status", async (ctx) => {
    need(ctx);
    const info = await D(["info"]);
    expect(info).toContain(`Storage Driver: ${name}`);
    expect(info).toMatch(new RegExp(`Home: ${root}`));
    expect(info).toMatch(/Exact diffs: true/);
  });

  it("docker import makes one layer whose layer.vhd passes checkImage and e2fsck -fn", async (ctx) => {
    need(ctx);
    const rootfs = join(dir, "build", "rootfs");
    await copyBinaries(rootfs, ["/usr/bin/cat"]);
    await writeFile(join(rootfs, "file"), "imported\n");
    const tar = join(dir, "build", "rootfs.tar");
    await tarDir(rootfs, tar);
    importedId = (await D(["import", tar, "lcow-e2e/imported:1"])).trim();
    expect(importedId).toMatch(/^sha256:[0-9a-f]{64}$/);
    const folders = await layerFolders();
    expect(folders.size).toBe(1);
    const [id, files] = [...folders][0]!;
    expect(files).toContain(LAYER_FILE);
    const vhd = join(root, id, LAYER_FILE);
    expect((await checkImage(vhd)).ok).toBe(true);
    const raw = join(dir, "raw.ext4");
    await copyFile(vhd, raw);
    await truncate(raw, (await stat(raw)).size - 512); // strip the fixed VHD footer
    await run("e2fsck", ["-fn", raw]);
    await rm(raw);
    // The daemon's DiffID is the sha256 of the tar we gave it (a reproduced diff would differ if not exact).
    const diffIds = JSON.parse(await D(["image", "inspect", "-f", "{{json .RootFS.Layers}}", "lcow-e2e/imported:1"])) as string[];
    expect(diffIds).toEqual([`sha256:${sha256(await readFile(tar))}`]);
  });

  it("docker load of a multi-layer image with whiteouts and an opaque dir", async (ctx) => {
    need(ctx);
    const out = await D(["load", "-i", multi.tar]);
    expect(out).toContain("Loaded image: lcow-e2e/multi:1");
    const folders = await layerFolders();
    expect(folders.size).toBe(4);
    for (const [id, files] of folders) {
      expect(files, id).toContain(LAYER_FILE);
      const report = await checkImage(join(root, id, LAYER_FILE));
      expect(report.ok, `${id}: ${JSON.stringify(report.findings?.slice(0, 3))}`).toBe(true);
    }
  });

  it("docker save gives layer tars whose sha256 equal the DiffIDs (and the tars we loaded, byte for byte)", async (ctx) => {
    need(ctx);
    const saved = join(dir, "saved");
    await mkdir(saved);
    await writeFile(join(dir, "saved.tar"), await daemon!.dockerBuffer(["save", "lcow-e2e/multi:1"]));
    await run("tar", ["-C", saved, "-xf", join(dir, "saved.tar")]);
    const manifest = JSON.parse(await readFile(join(saved, "manifest.json"), "utf8")) as Array<{ Config: string; Layers: string[] }>;
    const config = JSON.parse(await readFile(join(saved, manifest[0]!.Config), "utf8")) as { rootfs: { diff_ids: string[] } };
    const got = await Promise.all(manifest[0]!.Layers.map(async (l) => `sha256:${sha256(await readFile(join(saved, l)))}`));
    expect(got).toEqual(config.rootfs.diff_ids);
    expect(got).toEqual(multi.layers.map((l) => `sha256:${sha256(l)}`));
  });

  it("docker run --rm sees the union (whiteouts, opaque dir, last layer wins)", async (ctx) => {
    need(ctx, true);
    expect(await D(["run", "--rm", "--network", "none", "lcow-e2e/multi:1", "cat", "/file"])).toBe("layer2\n");
    expect(await D(["run", "--rm", "--network", "none", "lcow-e2e/multi:1", "ls", "-a", "/opq", "/etc", "/dir"])).toBe(
      // /etc also holds what dockerd's init layer adds (hostname, hosts, mtab, resolv.conf)
      "/dir:\n.\n..\ny\n\n/etc:\n.\n..\nhostname\nhosts\nkeep\nmtab\nresolv.conf\n\n/opq:\n.\n..\nnew\n",
    );
    expect(await D(["run", "--rm", "--network", "none", "lcow-e2e/imported:1", "cat", "/file"])).toBe("imported\n");
  });

  it("create, cp in and out, diff, export, commit, then run the committed image", async (ctx) => {
    need(ctx, true);
    const c = (await D(["create", "--network", "none", "lcow-e2e/multi:1", "cat", "/copied"])).trim();
    const folders = await layerFolders();
    expect([...folders.values()].filter((f) => f.includes(SANDBOX_FILE)).length).toBe(2); // <id>-init and <id>
    await writeFile(join(dir, "copied"), "copied in\n");
    await D(["cp", join(dir, "copied"), `${c}:/copied`]);
    await D(["cp", `${c}:/added`, join(dir, "added.out")]);
    expect(await readFile(join(dir, "added.out"), "utf8")).toBe("three\n");
    const diff = (await D(["diff", c])).split("\n").filter(Boolean);
    expect(diff).toContain("A /copied");
    const exported = join(dir, "export.tar");
    await writeFile(exported, await daemon!.dockerBuffer(["export", c]));
    const list = (await run("tar", ["-tf", exported])).stdout.split("\n");
    expect(list).toEqual(expect.arrayContaining(["copied", "file", "added", "opq/new", "dir/y", "etc/keep"]));
    expect(list.filter((p) => /^(etc\/a|dir\/x|opq\/old1|opq\/sub.*)$/.test(p))).toEqual([]);
    const committed = (await D(["commit", c, "lcow-e2e/committed:1"])).trim();
    expect(committed).toMatch(/^sha256:/);
    expect(await D(["run", "--rm", "--network", "none", "lcow-e2e/committed:1"])).toBe("copied in\n");
    await D(["rm", c]);
  });

  it("rm and rmi remove the layers from disk", async (ctx) => {
    need(ctx);
    const before = await layerFolders();
    const c = (await D(["create", "--network", "none", "lcow-e2e/imported:1", "cat", "/file"])).trim();
    await D(["rm", c]);
    expect([...(await layerFolders()).keys()].sort()).toEqual([...before.keys()].sort());
    if (KERNEL) await D(["rmi", "lcow-e2e/committed:1"]);
    await D(["rmi", "lcow-e2e/imported:1"]);
    const after = await layerFolders();
    expect(after.size).toBe(3); // the multi-layer image's three layers remain
    expect((await readdir(root)).filter((n) => n.endsWith("-removing"))).toEqual([]);
  });

  it("dockerd restarted on the same root keeps everything", async (ctx) => {
    need(ctx);
    await daemon!.stop();
    daemon = await startDockerd(join(dir, "docker"), name);
    expect(await D(["images", "--format", "{{.Repository}}:{{.Tag}}"])).toBe("lcow-e2e/multi:1\n");
    const save = await daemon.dockerBuffer(["save", "lcow-e2e/multi:1"]);
    expect(save.length).toBeGreaterThan(3 * 1024 * 1024);
    if (KERNEL) expect(await D(["run", "--rm", "--network", "none", "lcow-e2e/multi:1"])).toBe("layer2\n");
  });

  it("the plugin restarted while dockerd runs keeps working (no second Init)", async (ctx) => {
    need(ctx);
    expect(await plugin!.stop()).toBe(0);
    await startOurPlugin();
    expect(await D(["info"])).toContain(`Home: ${root}`);
    await D(["load", "-i", multi.tar]);
    await D(["import", join(dir, "build", "rootfs.tar"), "lcow-e2e/again:1"]);
    if (KERNEL) expect(await D(["run", "--rm", "--network", "none", "lcow-e2e/again:1", "cat", "/file"])).toBe("imported\n");
    await D(["rmi", "lcow-e2e/again:1"]);
    expect((await layerFolders()).size).toBe(3);
    const log = await readFile(join(dir, "plugin.log"), "utf8");
    expect(log.split("\n").filter((l) => l.includes('"method":"GraphDriver.Init"')).length).toBe(2); // two daemon starts, none after the plugin restart
  });
});
