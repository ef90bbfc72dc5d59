#!/usr/bin/env node
// `pnpm bench` (second part): times `lcow export` of an image of each corpus against the two
// ways of getting a tar out of an ext4 image without lcow, in the same run:
//   debugfs:  `debugfs -R 'rdump / DIR' image` then `tar -C DIR -cf out.tar .` (no root needed)
//   loop:     `mount -o ro,loop image MNT`, `tar -C MNT -cf out.tar .`, `umount` (root)
// Targets (issue 4): export faster than debugfs on every corpus, within 1.5x of loop + tar.
// Needs root for the loop mount; without it that column is skipped.

import { spawn } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { CORPORA, ensureCorpus } from "./lib/corpora.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../../..");
const MiB = 1 << 20;

const argv = process.argv.slice(2);
if (argv[0] === "--") argv.shift();
const { values } = parseArgs({
  args: argv,
  options: {
    out: { type: "string" },
    runs: { type: "string", default: "3" },
    only: { type: "string", default: "a,b,c" },
    json: { type: "boolean", default: false },
    cli: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  process.stdout.write("usage: node packages/vhd/bench/export.bench.mjs [--out DIR] [--runs N] [--only a,b,c] [--json] [--cli PATH]\n");
  process.exit(0);
}
const outDir = resolve(values.out ?? join(REPO, "bench-out"));
const cli = resolve(values.cli ?? join(REPO, "apps/cli/dist/main.js"));
const runs = Math.max(1, Number(values.runs));
const log = (s) => process.stderr.write(`${s}\n`);
const isRoot = process.getuid?.() === 0;

/** Runs a command, resolves with its wall time in seconds; rejects on a non-zero exit. */
function timed(cmd, args, opts = {}) {
  return new Promise((resolveRun, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"], ...opts });
    let err = "";
    child.stderr.on("data", (b) => (err += b));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolveRun((performance.now() - t0) / 1000) : reject(new Error(`${cmd} ${args.join(" ")} exited ${code}: ${err.slice(-400)}`))));
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function benchCorpus(id) {
  const corpus = await ensureCorpus(id, outDir, { log });
  const image = join(outDir, `export-${id}.img`);
  const tarOut = join(outDir, `export-${id}.tar`);
  const scratch = join(outDir, `export-${id}-dir`);
  const mnt = join(outDir, `export-${id}-mnt`);
  log(`corpus ${id}: converting to a raw image (setup, not timed)`);
  await timed("node", [cli, "convert", corpus.path, "-o", image, "--no-vhd"]);

  const steps = {
    export: async () => {
      const s = await timed("node", [cli, "export", image, "-o", tarOut]);
      rmSync(tarOut, { force: true });
      return s;
    },
    debugfs: async () => {
      rmSync(scratch, { recursive: true, force: true });
      mkdirSync(scratch);
      const a = await timed("debugfs", ["-R", `rdump / ${scratch}`, image]);
      const b = await timed("tar", ["-C", scratch, "-cf", tarOut, "."]);
      rmSync(scratch, { recursive: true, force: true });
      rmSync(tarOut, { force: true });
      return a + b;
    },
    ...(isRoot
      ? {
          loop: async () => {
            mkdirSync(mnt, { recursive: true });
            const a = await timed("mount", ["-o", "ro,loop", image, mnt]);
            try {
              return a + (await timed("tar", ["-C", mnt, "-cf", tarOut, "."]));
            } finally {
              await timed("umount", [mnt]);
              rmSync(tarOut, { force: true });
            }
          },
        }
      : {}),
  };
  const times = Object.fromEntries(Object.keys(steps).map((k) => [k, []]));
  // One untimed warm-up each, then interleaved rounds so machine noise hits all alike.
  for (let round = -1; round < runs; round++) {
    for (const [name, step] of Object.entries(steps)) {
      const s = await step();
      if (round >= 0) times[name].push(s);
    }
    if (round >= 0) log(`corpus ${id}: run ${round + 1}/${runs}: ${Object.entries(times).map(([k, v]) => `${k} ${v[round].toFixed(3)} s`).join(", ")}`);
  }
  rmSync(image, { force: true });
  rmSync(mnt, { recursive: true, force: true });
  const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  const result = {
    id,
    entries: corpus.entries,
    tarBytes: corpus.bytes,
    seconds: m,
    vsDebugfs: m.export / m.debugfs,
    vsLoop: m.loop === undefined ? null : m.export / m.loop,
  };
  const mibs = (s) => (corpus.bytes / MiB / s).toFixed(1);
  log(`\n== (${id}) ${CORPORA[id].name}: ${CORPORA[id].describe}`);
  log(`   step                wall s (median)    MiB/s   / export`);
  for (const [k, s] of Object.entries(m)) log(`   ${k.padEnd(20)}${s.toFixed(3).padStart(15)}${mibs(s).padStart(9)}${(s / m.export).toFixed(2).padStart(9)}x`);
  log(`   target export < debugfs rdump + tar: ${result.vsDebugfs.toFixed(2)}x  ${result.vsDebugfs < 1 ? "PASS" : "MISS"}`);
  if (result.vsLoop !== null) log(`   target export <= 1.5x loop mount + tar: ${result.vsLoop.toFixed(2)}x  ${result.vsLoop <= 1.5 ? "PASS" : "MISS"}`);
  else log("   (not root: loop mount + tar skipped)");
  return result;
}

const results = [];
for (const id of values.only.split(",").map((s) => s.trim()).filter(Boolean)) {
  if (!CORPORA[id]) {
    log(`unknown corpus ${id}`);
    process.exit(2);
  }
  results.push(await benchCorpus(id));
}
if (values.json) process.stdout.write(`${JSON.stringify({ bench: "export", runs, results }, null, 2)}\n`);

