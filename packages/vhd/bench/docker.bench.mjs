#!/usr/bin/env node
// `docker load` of a ~200 MB four-layer image through lcow-plugin against dockerd's built-in
// `vfs` driver, in the same run, each on a private dockerd (own data root, exec root, socket,
// pidfile). Needs root, Debian's docker.io and a built workspace (`pnpm build`).
//   node packages/vhd/bench/docker.bench.mjs [--mb 200] [--runs 3] [--out DIR]

import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";

const run = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));
const PLUGIN = resolve(HERE, "../../../apps/plugin/dist/main.js");
const DOCKERD = "/usr/sbin/dockerd";
const DOCKER = "/usr/bin/docker";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const { values } = parseArgs({ options: { mb: { type: "string", default: "200" }, runs: { type: "string", default: "3" }, out: { type: "string" } } });
if (process.getuid?.() !== 0 || !existsSync(DOCKERD)) {
  console.log("docker.bench: skipped (needs root and Debian's docker.io)");
  process.exit(0);
}
if (!existsSync(PLUGIN)) throw new Error(`${PLUGIN} missing: run pnpm build`);
const totalMb = Number(values.mb);
const runs = Number(values.runs);
const dir = await mkdtemp(join(values.out ?? tmpdir(), "lcow-docker-bench-"));
const sha = (b) => createHash("sha256").update(b).digest("hex");

/** Four layers: big files, mid-size files, many small files, and a layer of whiteouts/edits. */
async function buildImage() {
  const img = join(dir, "img");
  const layerSpecs = [
    { name: "l1", files: 8, size: Math.floor((totalMb * 0.5 * 2 ** 20) / 8) },
    { name: "l2", files: 200, size: Math.floor((totalMb * 0.3 * 2 ** 20) / 200) },
    { name: "l3", files: 4000, size: Math.floor((totalMb * 0.2 * 2 ** 20) / 4000) },
  ];
  const tars = [];
  for (const spec of layerSpecs) {
    const src = join(dir, spec.name);
    for (let i = 0; i < spec.files; i++) {
      const p = join(src, `d${i % 50}`, `f${i}`);
      await mkdir(dirname(p), { recursive: true });
      // half random (incompressible), half repeated: like real binaries and text
      const half = Math.floor(spec.size / 2);
      await writeFile(p, Buffer.concat([randomBytes(half), Buffer.alloc(spec.size - half, i & 0xff)]));
    }
    tars.push(src);
  }
  const l4 = join(dir, "l4");
  await mkdir(join(l4, "d1"), { recursive: true });
  await writeFile(join(l4, "d1", ".wh.f1"), "");
  await mkdir(join(l4, "d2"), { recursive: true });
  await writeFile(join(l4, "d2", ".wh..wh..opq"), "");
  await writeFile(join(l4, "d2", "new"), "new\n");
  tars.push(l4);
  await mkdir(img, { recursive: true });
  const diffIds = [];
  const names = [];
  for (const [i, src] of tars.entries()) {
    await mkdir(join(img, `l${i}`));
    const out = join(img, `l${i}`, "layer.tar");
    await run("tar", ["--sort=name", "--numeric-owner", "--owner=0", "--group=0", "--mtime=2024-01-01", "-C", src, "-cf", out, "."]);
    diffIds.push(`sha256:${sha(await readFile(out))}`);
    names.push(`l${i}/layer.tar`);
    await rm(src, { recursive: true });
  }
  const config = JSON.stringify({ architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: diffIds } });
  const cfg = `${sha(config)}.json`;
  await writeFile(join(img, cfg), config);
  await writeFile(join(img, "manifest.json"), JSON.stringify([{ Config: cfg, RepoTags: ["bench/img:1"], Layers: names }]));
  const tar = join(dir, "image.tar");
  await run("tar", ["-C", img, "-cf", tar, "manifest.json", cfg, ...names.map((n) => n.split("/")[0])]);
  await rm(img, { recursive: true });
  return tar;
}

async function killPidfile(pidfile) {
  const pid = Number((await readFile(pidfile, "utf8").catch(() => "")).trim());
  if (!pid) return;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  for (;;) {
    try {
      process.kill(pid, 0);
      await sleep(100);
    } catch {
      return;
    }
  }
}

async function withDockerd(name, driver, fn) {
  const d = join(dir, name);
  await mkdir(d, { recursive: true });
  const sock = join(d, "docker.sock");
  const pidfile = join(d, "docker.pid");
  const log = createWriteStream(join(d, "dockerd.log"));
  await new Promise((r) => log.once("open", r));
  const child = spawn(DOCKERD, ["--experimental", "-s", driver, "--data-root", join(d, "data"), "--exec-root", join(d, "exec"), "-H", `unix://${sock}`, "--pidfile", pidfile, "--iptables=false", "--ip-masq=false", "--bridge=none"], { stdio: ["ignore", log, log] });
  const docker = (args) => run(DOCKER, ["-H", `unix://${sock}`, ...args], { maxBuffer: 64 << 20 });
  try {
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`dockerd (${driver}) exited; see ${join(d, "dockerd.log")}`);
      try {
        await docker(["version"]);
        break;
      } catch {
        if (i > 300) throw new Error("dockerd did not start");
        await sleep(200);
      }
    }
    return await fn(docker);
  } finally {
    await killPidfile(pidfile);
  }
}

async function timeLoads(docker, tar) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await docker(["load", "-i", tar]);
    times.push((performance.now() - t0) / 1000);
    await docker(["rmi", "bench/img:1"]);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

const results = [];
let plugin;
try {
  const tar = await buildImage();
  const size = (await readFile(tar)).length;
  console.log(`image: ${(size / 2 ** 20).toFixed(0)} MiB, 4 layers; median of ${runs} loads each`);

  const name = `lcow-bench-${process.pid}`;
  const socket = `/run/docker/plugins/${name}.sock`;
  await mkdir(dirname(socket), { recursive: true });
  const plog = createWriteStream(join(dir, "plugin.log"));
  await new Promise((r) => plog.once("open", r));
  plugin = spawn(process.execPath, [PLUGIN, "--root", join(dir, "lcow-root"), "--socket", socket, "--log-level", "warn"], { stdio: ["ignore", plog, plog] });
  while (!existsSync(socket)) {
    if (plugin.exitCode !== null) throw new Error(`plugin exited; see ${join(dir, "plugin.log")}`);
    await sleep(100);
  }
  results.push({ driver: "lcow (plugin)", seconds: await withDockerd("lcow", name, (docker) => timeLoads(docker, tar)) });
  results.push({ driver: "vfs (built-in)", seconds: await withDockerd("vfs", "vfs", (docker) => timeLoads(docker, tar)) });
  for (const r of results) console.log(`${r.driver.padEnd(16)} ${r.seconds.toFixed(2)} s  ${(size / 2 ** 20 / r.seconds).toFixed(0)} MiB/s`);
  console.log(`lcow / vfs: ${(results[0].seconds / results[1].seconds).toFixed(2)}x`);
} finally {
  if (plugin && plugin.exitCode === null) {
    plugin.kill("SIGTERM");
    await new Promise((r) => plugin.once("exit", r));
  }
  await rm(dir, { recursive: true, force: true });
}
