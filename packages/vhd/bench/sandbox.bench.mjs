#!/usr/bin/env node
// Blank sandboxes (issue 5): times `createSandbox` of a 20 GiB sandbox and a copy from the
// sandbox cache, against references measured in the same run, and checks the issue's targets:
//   create  < 100 ms, < 8 MiB on disk        (reference: `qemu-img create -f vhdx` of an empty,
//                                             unformatted 20G disk, and `mkfs.ext4` of a 20G raw
//                                             file with the seed's options: the work the seed did
//                                             in its utility VM, without the VM)
//   copy    < 20 ms with reflinks            (reference: `cp --reflink=auto` of the cached blank)
// The copy is measured on the folder given by --out (this host: ext4, no reflinks, so a byte
// copy) and, when we are root and mkfs.xfs exists, on a scratch XFS (reflink=1) made on a loop
// device for the run and removed after it.
// Needs the library built (`cd packages/vhd && npx tsup`, or `pnpm build`).

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, stat, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../../..");
const MiB = 2 ** 20;
const SIZE = 20 * 2 ** 30;

const argv = process.argv.slice(2);
if (argv[0] === "--") argv.shift();
const { values } = parseArgs({
  args: argv,
  options: {
    out: { type: "string" },
    runs: { type: "string", default: "15" },
    json: { type: "boolean", default: false },
    "no-xfs": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  process.stdout.write("usage: node packages/vhd/bench/sandbox.bench.mjs [--out DIR] [--runs N] [--json] [--no-xfs]\n");
  process.exit(0);
}
const runs = Math.max(1, Number(values.runs));
const log = (s) => process.stderr.write(`${s}\n`);
const dist = join(REPO, "packages/vhd/dist/index.js");
if (!existsSync(dist)) {
  log(`${dist} is missing: build the library first (cd packages/vhd && npx tsup)`);
  process.exit(1);
}
const { createSandbox, SandboxCache } = await import(dist);

/** Runs a command; resolves with its wall time in seconds (spawn to exit). */
function timed(cmd, args) {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (b) => (err += b));
    child.on("error", rej);
    child.on("exit", (code) => (code === 0 ? res((performance.now() - t0) / 1000) : rej(new Error(`${cmd} ${args.join(" ")} exited ${code}: ${err.slice(-400)}`))));
  });
}
const run = (cmd, args) => timed(cmd, args).then(() => undefined);
async function timeIt(fn) {
  const t0 = performance.now();
  const r = await fn();
  return { seconds: (performance.now() - t0) / 1000, result: r };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const min = (xs) => Math.min(...xs);
const diskBytes = async (p) => (await stat(p)).blocks * 512;
const ms = (s) => `${(s * 1000).toFixed(1)} ms`;
const mib = (b) => `${(b / MiB).toFixed(2)} MiB`;

/**
 * Times each step `runs` times, interleaved and rotated (round i starts with step i mod n) so
 * host noise hits all alike; each step runs once untimed first. A step is `{ name, run, after? }`:
 * `run()` resolves with seconds, `after()` cleans up untimed.
 */
async function rounds(steps) {
  const times = Object.fromEntries(steps.map((s) => [s.name, []]));
  for (const s of steps) {
    await s.run();
    await s.after?.();
  }
  for (let i = 0; i < runs; i++) {
    for (let k = 0; k < steps.length; k++) {
      const s = steps[(i + k) % steps.length];
      times[s.name].push(await s.run());
      await s.after?.();
    }
  }
  return Object.fromEntries(Object.entries(times).map(([n, xs]) => [n, { median: median(xs), min: min(xs) }]));
}

const outDir = resolve(values.out ?? join(REPO, "bench-out"));
await mkdir(outDir, { recursive: true });
const work = await mkdtemp(join(outDir, "sandbox-bench-"));
const report = { runs, sizeBytes: SIZE, create: {}, copy: {}, targets: {} };
let xfs;
try {
  // ---- create ------------------------------------------------------------------------------
  const ours = join(work, "ours.vhdx");
  const qemu = join(work, "qemu.vhdx");
  const mkfsRaw = join(work, "mkfs.raw");
  const haveMkfs = existsSync("/usr/sbin/mkfs.ext4") || existsSync("/sbin/mkfs.ext4");
  const createSteps = [
    { name: "createSandbox", run: async () => (await timeIt(() => createSandbox(ours, { size: SIZE }))).seconds },
    { name: "qemu-img create -f vhdx (empty, unformatted)", run: () => timed("qemu-img", ["create", "-q", "-f", "vhdx", "-o", "subformat=dynamic,block_size=1M", qemu, String(SIZE)]), after: () => rm(qemu, { force: true }) },
  ];
  if (haveMkfs) {
    // The seed's format step (opengcs CreateExt4Vhdx), on a raw file instead of a VM's /dev/sdX.
    createSteps.push({
      name: "mkfs.ext4 20G raw (seed's options)",
      run: async () => {
        await truncate(mkfsRaw, 0).catch(() => {});
        return timed("mkfs.ext4", ["-q", "-F", "-E", "lazy_itable_init=1,nodiscard", "-O", "^has_journal,sparse_super2,uninit_bg,^resize_inode", mkfsRaw, `${SIZE / 1024}k`]);
      },
      after: () => rm(mkfsRaw, { force: true }),
    });
  }
  const createTimes = await rounds(createSteps);
  const summary = await createSandbox(ours, { size: SIZE });
  await run("qemu-img", ["create", "-q", "-f", "vhdx", "-o", "subformat=dynamic,block_size=1M", qemu, String(SIZE)]);
  report.create = {
    times: createTimes,
    ours: { diskBytes: summary.diskBytes, fileBytes: summary.fileBytes, allocatedBlocks: summary.allocatedBlocks },
    qemuImgDiskBytes: await diskBytes(qemu),
  };
  if (haveMkfs) {
    await run("mkfs.ext4", ["-q", "-F", "-E", "lazy_itable_init=1,nodiscard", "-O", "^has_journal,sparse_super2,uninit_bg,^resize_inode", mkfsRaw, `${SIZE / 1024}k`]);
    report.create.mkfsRawDiskBytes = await diskBytes(mkfsRaw);
    await rm(mkfsRaw, { force: true });
  }

  // ---- copy from the cache ------------------------------------------------------------------
  async function copyBench(label, dir) {
    const cache = new SandboxCache(join(dir, "cache"));
    const cached = await cache.get("sandbox", SIZE);
    const dest = join(dir, "layer.vhdx");
    let method;
    const steps = [
      {
        name: "SandboxCache.copyTo",
        run: async () => {
          const { seconds, result } = await timeIt(() => cache.copyTo("sandbox", SIZE, dest));
          method = result.method;
          return seconds;
        },
        after: () => rm(dest, { force: true }),
      },
      { name: "fs.copyFile (plain)", run: async () => (await timeIt(() => copyFile(cached, dest))).seconds, after: () => rm(dest, { force: true }) },
      { name: "cp --reflink=auto", run: () => timed("cp", ["--reflink=auto", cached, dest]), after: () => rm(dest, { force: true }) },
    ];
    const times = await rounds(steps);
    await cache.copyTo("sandbox", SIZE, dest);
    const copyDisk = await diskBytes(dest);
    await rm(dest, { force: true });
    return { label, method, times, cachedDiskBytes: await diskBytes(cached), copyDiskBytes: copyDisk };
  }
  const fsType = (await timedOutput("stat", ["-f", "-c", "%T", outDir])).trim();
  report.copy.local = await copyBench(`${outDir} (${fsType})`, work);

  const canXfs = !values["no-xfs"] && process.getuid?.() === 0 && existsSync("/dev/loop-control") && (existsSync("/usr/sbin/mkfs.xfs") || existsSync("/sbin/mkfs.xfs"));
  if (canXfs) {
    xfs = { img: join(work, "xfs.img"), mnt: await mkdtemp(join(tmpdir(), "lcow-xfs-")) };
    await truncate(xfs.img, 0).catch(() => {});
    await run("truncate", ["-s", "1G", xfs.img]);
    await run("mkfs.xfs", ["-q", "-m", "reflink=1", xfs.img]);
    await run("mount", ["-o", "loop", xfs.img, xfs.mnt]);
    xfs.mounted = true;
    report.copy.xfs = await copyBench("scratch XFS on a loop device (reflink=1)", xfs.mnt);
  } else {
    log("(no XFS run: needs root, a loop device and mkfs.xfs (xfsprogs); --no-xfs skips it)");
  }

  // ---- report -------------------------------------------------------------------------------
  const c = report.create;
  const t = c.times;
  log(`\nsandbox bench: 20 GiB (${SIZE} bytes), ${runs} timed runs per step, median (min)`);
  log("\ncreate");
  for (const [name, v] of Object.entries(t)) log(`  ${name.padEnd(46)} ${ms(v.median).padStart(10)} (${ms(v.min)})`);
  log(`  on disk: ours ${mib(c.ours.diskBytes)} (file length ${mib(c.ours.fileBytes)}, ${c.ours.allocatedBlocks} blocks allocated); qemu-img empty VHDX ${mib(c.qemuImgDiskBytes)}${c.mkfsRawDiskBytes !== undefined ? `; mkfs.ext4 raw ${mib(c.mkfsRawDiskBytes)}` : ""}`);
  const ratios = {};
  for (const name of Object.keys(t)) if (name !== "createSandbox") ratios[name] = t.createSandbox.median / t[name].median;
  log(`  ratio createSandbox / reference: ${Object.entries(ratios).map(([n, r]) => `${r.toFixed(2)}x ${n.split(" (")[0]}`).join(", ")} (references are spawned processes: their start-up is in their time)`);
  report.create.ratios = ratios;
  for (const [key, v] of Object.entries(report.copy)) {
    log(`\ncopy from the cache: ${v.label}; copyTo used: ${v.method}`);
    for (const [name, x] of Object.entries(v.times)) log(`  ${name.padEnd(46)} ${ms(x.median).padStart(10)} (${ms(x.min)})`);
    v.ratioToCp = v.times["SandboxCache.copyTo"].median / v.times["cp --reflink=auto"].median;
    log(`  on disk: cached blank ${mib(v.cachedDiskBytes)}, copy ${mib(v.copyDiskBytes)}; ratio copyTo / cp: ${v.ratioToCp.toFixed(2)}x`);
    report.copy[key] = v;
  }
  const reflink = Object.values(report.copy).find((v) => v.method === "reflink");
  report.targets = {
    createUnder100ms: t.createSandbox.median < 0.1,
    diskUnder8MiB: c.ours.diskBytes < 8 * MiB,
    reflinkCopyUnder20ms: reflink ? reflink.times["SandboxCache.copyTo"].median < 0.02 : null,
  };
  log(`\ntargets: create < 100 ms ${report.targets.createUnder100ms ? "PASS" : "FAIL"}; < 8 MiB on disk ${report.targets.diskUnder8MiB ? "PASS" : "FAIL"}; reflink copy < 20 ms ${reflink ? (report.targets.reflinkCopyUnder20ms ? "PASS" : "FAIL") : "not measured (no reflink filesystem)"}`);
  if (report.copy.local.method !== "reflink") log(`note: ${report.copy.local.label} has no reflinks, so the local copy is a byte copy (measured above, no target)`);
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  if (!report.targets.createUnder100ms || !report.targets.diskUnder8MiB || report.targets.reflinkCopyUnder20ms === false) process.exitCode = 1;
} finally {
  if (xfs?.mounted) await run("umount", [xfs.mnt]).catch((e) => log(`umount ${xfs.mnt}: ${e.message}`));
  if (xfs) await rm(xfs.mnt, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
}

/** Runs a command and resolves with its stdout. */
function timedOutput(cmd, args) {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    child.stdout.on("data", (b) => (out += b));
    child.on("error", rej);
    child.on("exit", (code) => (code === 0 ? res(out) : rej(new Error(`${cmd} exited ${code}`))));
  });
}
