#!/usr/bin/env node
// `pnpm bench` (gcs-client): the utility VM with the Linux launcher (apps/guest in its own
// namespaces), against references measured in the same run:
//   round trip   a no-op request (DumpStacks) over the bridge, vs. a 16-byte echo over a unix
//                socket between two Node processes (the floor of any request/response on this box)
//   hot-add      addDisk of a layer.vhd until its file is readable through the guest, and
//                removeDisk, vs. `mount -o ro,loop` + `umount` of the same file on the host (what
//                the guest does underneath, without the protocol)
//   boot         UtilityVM.start (spawn, namespaces, dial, negotiate) vs. `node -e 0`
// Needs root and a built apps/guest.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../../..");
const GUEST = join(REPO, "apps/guest/dist/main.js");
const argv = process.argv.slice(2);
if (argv[0] === "--") argv.shift();
const { values } = parseArgs({ args: argv, options: { rounds: { type: "string", default: "2000" }, disks: { type: "string", default: "30" }, json: { type: "boolean", default: false } } });
const log = (s) => process.stderr.write(`${s}\n`);
if (process.getuid?.() !== 0 || !existsSync(GUEST)) {
  log("uvm bench: needs root and a built apps/guest (pnpm build); skipped");
  process.exit(0);
}
const { LinuxLauncher, UtilityVM } = await import("@lcow/gcs-client");
const { convertTar } = await import("@lcow/vhd");
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (t0) => performance.now() - t0;

const work = await mkdtemp(join(tmpdir(), "lcow-uvm-bench-"));
try {
  // A small layer to hot-add.
  const tree = join(work, "tree");
  await mkdir(tree);
  await writeFile(join(tree, "probe"), "probe\n");
  execFileSync("tar", ["-C", tree, "-cf", join(work, "l.tar"), "."]);
  const layer = join(work, "layer.vhd");
  await convertTar(join(work, "l.tar"), layer, { fsync: false });
  const rawSize = (await readFile(layer)).length - 512;

  // Reference 1: echo round trip over a unix socket to another Node process.
  const sock = join(work, "echo.sock");
  const echo = spawn(process.execPath, ["-e", `require("net").createServer(s=>s.pipe(s)).listen(${JSON.stringify(sock)},()=>console.log("up"))`], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise((r) => echo.stdout.once("data", r));
  const client = net.connect(sock);
  await new Promise((r) => client.once("connect", r));
  const rounds = Number(values.rounds);
  const echoTimes = [];
  const msg = Buffer.alloc(16, 1);
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await new Promise((r) => {
      client.once("data", r);
      client.write(msg);
    });
    echoTimes.push(ms(t0));
  }
  client.destroy();
  echo.kill();

  // Boot, vs. starting a bare Node.
  const bootTimes = [];
  const nodeTimes = [];
  const launcher = new LinuxLauncher({ guestCommand: [process.execPath, GUEST] });
  for (let i = 0; i < 3; i++) {
    let t0 = performance.now();
    spawnSync(process.execPath, ["-e", "0"]);
    nodeTimes.push(ms(t0));
    t0 = performance.now();
    const vm = await UtilityVM.start({ name: `bench-${i}`, launcher, timeoutSeconds: 60 });
    bootTimes.push(ms(t0));
    await vm.terminate();
  }

  const vm = await UtilityVM.start({ name: "bench", launcher, timeoutSeconds: 60 });
  const rpcTimes = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await vm.bridge.dumpStacks();
    rpcTimes.push(ms(t0));
  }

  // Hot-add vs. a host loop mount of the same file, interleaved.
  const mnt = join(work, "mnt");
  await mkdir(mnt);
  const addTimes = [];
  const removeTimes = [];
  const loopTimes = [];
  for (let i = 0; i < Number(values.disks); i++) {
    let t0 = performance.now();
    const disk = await vm.addDisk(layer, { readOnly: true });
    await readFile(vm.hostPath(`${disk.guestPath}/probe`));
    addTimes.push(ms(t0));
    t0 = performance.now();
    await vm.removeDisk(layer);
    removeTimes.push(ms(t0));
    t0 = performance.now();
    execFileSync("mount", ["-t", "ext4", "-o", `ro,loop,noload,sizelimit=${rawSize}`, layer, mnt]);
    await readFile(join(mnt, "probe"));
    execFileSync("umount", [mnt]);
    loopTimes.push(ms(t0));
  }
  await vm.terminate();

  const r = {
    roundTripMs: median(rpcTimes),
    echoMs: median(echoTimes),
    bootMs: median(bootTimes),
    nodeStartMs: median(nodeTimes),
    hotAddMs: median(addTimes),
    hotRemoveMs: median(removeTimes),
    hostLoopMountUmountMs: median(loopTimes),
  };
  log(`\n== utility VM (Linux launcher, apps/guest), medians`);
  log(`   no-op request round trip   ${r.roundTripMs.toFixed(3)} ms   (unix-socket echo ${r.echoMs.toFixed(3)} ms: ${(r.roundTripMs / r.echoMs).toFixed(1)}x)`);
  log(`   hot-add + first read       ${r.hotAddMs.toFixed(1)} ms, remove ${r.hotRemoveMs.toFixed(1)} ms   (host mount+umount ${r.hostLoopMountUmountMs.toFixed(1)} ms: ${((r.hotAddMs + r.hotRemoveMs) / r.hostLoopMountUmountMs).toFixed(2)}x)`);
  log(`   start (boot + negotiate)   ${r.bootMs.toFixed(0)} ms   (node -e 0: ${r.nodeStartMs.toFixed(0)} ms: ${(r.bootMs / r.nodeStartMs).toFixed(1)}x)`);
  if (values.json) process.stdout.write(`${JSON.stringify({ bench: "uvm", ...r }, null, 2)}\n`);
} finally {
  await rm(work, { recursive: true, force: true });
}
