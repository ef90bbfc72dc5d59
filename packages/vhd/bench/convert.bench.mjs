#!/usr/bin/env node
// `pnpm bench`: times `lcow convert` against two floors on three generated corpora.
// See README.md next to this file for what is measured and how to read it.

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { CORPORA, ensureCorpus } from "./lib/corpora.mjs";
import { formatTop, selfTimes } from "./lib/profile.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../../..");
const DRAIN = join(HERE, "drain.mjs");
const MiB = 1 << 20;

/** Targets from issue 3's Acceptance section. */
const TARGETS = {
  a: { floor: "drain", maxRatio: 1.2 },
  b: { floor: "drain", maxRatio: 2.0 },
  c: { floor: "cp", maxRatio: 1.3 },
};
/** Peak RSS limit: 256 MiB on (c); 128 MiB + 1 KiB per entry elsewhere. */
const rssLimit = (id, entries) => (id === "c" ? 256 * MiB : 128 * MiB + 1024 * entries);

const USAGE = `usage: node packages/vhd/bench/convert.bench.mjs [options]

  --out DIR       cache and scratch directory (default: <repo>/bench-out)
  --runs N        timed runs per step, median reported (default: 3), after one untimed warm-up
  --only a,b,c    corpora to run (default: a,b,c)
  --json          print machine-readable results on stdout (the tables go to stderr)
  --profile       also run each convert once under node --cpu-prof and print the top 20
                  self-time functions (profiles kept in DIR/prof/)
  --cli PATH      the lcow CLI to time (default: <repo>/apps/cli/dist/main.js)
  --regen         regenerate the corpora even if cached
  --verify        re-hash cached corpora against the manifest before using them
  --keep          keep the last convert output (DIR/convert-<id>.vhd)
  --timeout S     kill a step that runs longer than S seconds (default: 900)
  -h, --help      this text
`;

function parseOptions() {
  // `pnpm bench -- --profile` passes the "--" through to the script: skip it.
  const argv = process.argv.slice(2);
  if (argv[0] === "--") argv.shift();
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: "string" },
      runs: { type: "string", default: "3" },
      only: { type: "string", default: "a,b,c" },
      json: { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      cli: { type: "string" },
      regen: { type: "boolean", default: false },
      verify: { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
      timeout: { type: "string", default: "900" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) { process.stdout.write(USAGE); process.exit(0); }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new UsageError(`--runs must be a positive integer, got ${values.runs}`);
  const timeout = Number(values.timeout);
  if (!(timeout > 0)) throw new UsageError(`--timeout must be a positive number of seconds, got ${values.timeout}`);
  const only = values.only.split(",").map((s) => s.trim()).filter(Boolean);
  for (const id of only) if (!CORPORA[id]) throw new UsageError(`--only: unknown corpus "${id}" (known: ${Object.keys(CORPORA).join(", ")})`);
  return {
    outDir: resolve(values.out ?? join(REPO, "bench-out")),
    runs,
    only: [...new Set(only)],
    json: values.json,
    profile: values.profile,
    cli: resolve(values.cli ?? join(REPO, "apps/cli/dist/main.js")),
    regen: values.regen,
    verify: values.verify,
    keep: values.keep,
    timeoutMs: timeout * 1000,
  };
}

class UsageError extends Error {}

// ---------------------------------------------------------------------------------------------
// Child processes

/**
 * Runs a command to completion; wall time is measured here around spawn -> exit.
 * @returns {Promise<{ code: number|null, signal: string|null, wallSeconds: number, stdout: string, stderr: string, error?: Error, timedOut: boolean }>}
 */
function run(cmd, args, timeoutMs) {
  return new Promise((resolvePromise) => {
    const out = [];
    const err = [];
    let exitAt = 0;
    let timedOut = false;
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], cwd: REPO });
    const timer = setTimeout(() => { timedOut = true; child.kill("SIGKILL"); }, timeoutMs);
    child.stdout.on("data", (c) => out.push(c));
    child.stderr.on("data", (c) => err.push(c));
    child.on("exit", () => { exitAt = performance.now(); });
    const finish = (code, signal, error) => {
      clearTimeout(timer);
      resolvePromise({
        code, signal, error, timedOut,
        wallSeconds: ((exitAt || performance.now()) - t0) / 1000,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    };
    child.on("error", (e) => finish(null, null, e));
    child.on("close", (code, signal) => finish(code, signal));
  });
}

/** The last line of stdout that parses as a JSON object, or undefined. */
function lastJson(stdout) {
  const lines = stdout.trim().split("\n").reverse();
  for (const line of lines) {
    const s = line.trim();
    if (!s.startsWith("{")) continue;
    try { return JSON.parse(s); } catch { /* keep looking */ }
  }
  return undefined;
}

function describeFailure(r, what) {
  const tail = r.stderr.trim().split("\n").slice(-6).join("\n    ");
  const how = r.error ? `could not start: ${r.error.message}`
    : r.timedOut ? "timed out (see --timeout)"
    : r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`;
  return `${what}: ${how}${tail ? `\n    ${tail}` : ""}`;
}

class StepError extends Error {}

// ---------------------------------------------------------------------------------------------
// The three steps. Each returns { wallSeconds, peakRssBytes?, reported? } or throws StepError.

function makeSteps(corpus, opts) {
  const cpOut = join(opts.outDir, `cp-${corpus.id}.tmp`);
  const vhdOut = join(opts.outDir, `convert-${corpus.id}.vhd`);
  const cleanup = () => { rmSync(cpOut, { force: true }); rmSync(vhdOut, { force: true }); };
  cleanup();

  const drain = async () => {
    const r = await run(process.execPath, [DRAIN, corpus.path], opts.timeoutMs);
    if (r.code !== 0) throw new StepError(describeFailure(r, "drain"));
    const j = lastJson(r.stdout);
    if (!j) throw new StepError("drain: no JSON on stdout");
    if (j.entries !== corpus.entries) throw new StepError(`drain: saw ${j.entries} entries, the manifest says ${corpus.entries}`);
    return { wallSeconds: r.wallSeconds, peakRssBytes: j.peakRssBytes, reported: j };
  };

  const cp = async () => {
    // --reflink=never: on a CoW file system (btrfs, XFS) cp would otherwise clone, not copy.
    const r = await run("cp", ["--reflink=never", corpus.path, cpOut], opts.timeoutMs);
    rmSync(cpOut, { force: true });
    if (r.code !== 0) throw new StepError(describeFailure(r, "cp"));
    return { wallSeconds: r.wallSeconds };
  };

  const notes = new Set();
  const convert = async (extraNodeArgs = []) => {
    if (!existsSync(opts.cli)) {
      throw new StepError(`convert: ${opts.cli} does not exist (the CLI is not built yet; \`pnpm build\` builds it)`);
    }
    rmSync(vhdOut, { force: true });
    const r = await run(process.execPath, [...extraNodeArgs, opts.cli, "convert", corpus.path, "-o", vhdOut, "--json"], opts.timeoutMs);
    try {
      const j = lastJson(r.stdout);
      if (r.code !== 0) {
        const why = j && j.ok === false ? ` [${j.code}] ${j.message ?? ""}` : "";
        throw new StepError(describeFailure(r, "convert") + why);
      }
      if (!j) throw new StepError(`convert: exit 0 but no JSON object on stdout (got ${JSON.stringify(r.stdout.slice(0, 200))})`);
      // apps/cli/README.md: `entries` is an object of counts by type; a plain number is accepted too.
      if (j.entries && typeof j.entries === "object") {
        j.entriesByType = j.entries;
        j.entries = Object.values(j.entries).reduce((s, n) => s + (typeof n === "number" ? n : 0), 0);
      }
      for (const k of ["entries", "bytesIn", "imageBytes", "seconds", "peakRssBytes"]) {
        if (typeof j[k] !== "number") notes.add(`convert --json has no numeric "${k}"`);
      }
      if (!existsSync(vhdOut)) throw new StepError(`convert: exit 0 but ${vhdOut} was not written`);
      const size = statSync(vhdOut).size;
      if (typeof j.imageBytes === "number" && j.imageBytes !== size) notes.add(`convert reports imageBytes ${j.imageBytes}, the file has ${size} bytes`);
      if (typeof j.bytesIn === "number" && j.bytesIn !== corpus.bytes) notes.add(`convert reports bytesIn ${j.bytesIn}, the tar has ${corpus.bytes}`);
      if (typeof j.entries === "number" && j.entries !== corpus.entries) notes.add(`convert reports ${j.entries} entries, tar-stream sees ${corpus.entries}`);
      return { wallSeconds: r.wallSeconds, peakRssBytes: typeof j.peakRssBytes === "number" ? j.peakRssBytes : undefined, reported: j, imageBytes: size };
    } finally {
      if (!opts.keep) rmSync(vhdOut, { force: true });
    }
  };

  // Not a floor: the cost of starting node and exiting, which drain and convert both pay and cp
  // does not. Reported so that ratios to cp on sub-second runs can be read net of it.
  const startup = async () => {
    const r = await run(process.execPath, ["-e", "0"], opts.timeoutMs);
    if (r.code !== 0) throw new StepError(describeFailure(r, "node start-up"));
    return { wallSeconds: r.wallSeconds };
  };

  return { steps: { drain, cp, convert, startup }, notes, cleanup, vhdOut };
}

// ---------------------------------------------------------------------------------------------
// Measurement

const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function benchCorpus(corpus, opts, log) {
  const { steps, notes, cleanup, vhdOut } = makeSteps(corpus, opts);
  const names = ["drain", "cp", "convert", "startup"];
  const results = Object.fromEntries(names.map((n) => [n, { runs: [], error: undefined }]));

  const attempt = async (name) => {
    const res = results[name];
    if (res.error) return;
    try {
      const r = await steps[name]();
      return r;
    } catch (err) {
      if (!(err instanceof StepError)) throw err;
      res.error = err.message;
      log(`  ${err.message}`);
    }
  };

  // Warm-up: every step once, untimed. It also pulls the tar into the page cache, so all timed
  // runs read from memory (we may not drop caches on a shared host; warming is the fair
  // alternative).
  log(`corpus ${corpus.id}: warm-up`);
  for (const name of names) await attempt(name);

  // Timed runs, interleaved and rotated: run i starts with step i mod 4, so host noise is spread
  // over the steps and no step always runs right after another's writes.
  for (let i = 0; i < opts.runs; i++) {
    const order = names.map((_, k) => names[(k + i) % names.length]);
    const line = [];
    for (const name of order) {
      const r = await attempt(name);
      if (!r) continue;
      results[name].runs.push(r);
      line.push(`${name} ${r.wallSeconds.toFixed(3)} s`);
    }
    log(`corpus ${corpus.id}: run ${i + 1}/${opts.runs}: ${line.join(", ")}`);
  }

  let profile;
  if (opts.profile && !results.convert.error) {
    const dir = join(opts.outDir, "prof");
    mkdirSync(dir, { recursive: true });
    const name = `convert-${corpus.id}.cpuprofile`;
    rmSync(join(dir, name), { force: true });
    log(`corpus ${corpus.id}: profiling convert (node --cpu-prof)`);
    try {
      // 250 us sampling (default 1 ms): a convert of these corpora takes well under a few seconds.
      await steps.convert(["--cpu-prof", "--cpu-prof-dir", dir, "--cpu-prof-name", name, "--cpu-prof-interval", "250"]);
      const file = join(dir, name);
      if (!existsSync(file)) throw new StepError(`profile: ${file} was not written (found: ${readdirSync(dir).join(", ")})`);
      profile = { file, ...selfTimes(file) };
    } catch (err) {
      if (!(err instanceof StepError)) throw err;
      // The timed runs stand; the profile run's failure is a failed step of its own.
      results.profile = { runs: [], error: `profile run: ${err.message}` };
      log(`  ${results.profile.error}`);
    }
  }
  if (!opts.keep) cleanup();
  return summarize(corpus, results, notes, profile, opts.keep ? vhdOut : undefined);
}

function summarize(corpus, results, notes, profile, keptOutput) {
  const steps = {};
  for (const [name, r] of Object.entries(results)) {
    if (r.error || r.runs.length === 0) { steps[name] = { ok: false, error: r.error ?? "no runs" }; continue; }
    const walls = r.runs.map((x) => x.wallSeconds);
    const wall = median(walls);
    const rss = r.runs.map((x) => x.peakRssBytes).filter((x) => typeof x === "number");
    steps[name] = {
      ok: true,
      wallSeconds: wall,
      minWallSeconds: Math.min(...walls),
      walls,
      mibPerSecond: corpus.bytes / MiB / wall,
      entriesPerSecond: corpus.entries / wall,
      peakRssBytes: rss.length ? Math.max(...rss) : undefined,
      reported: r.runs.at(-1).reported,
    };
  }
  const ratio = (a, b) => (steps[a]?.ok && steps[b]?.ok ? steps[a].wallSeconds / steps[b].wallSeconds : undefined);
  const ratios = { convertVsDrain: ratio("convert", "drain"), convertVsCp: ratio("convert", "cp"), drainVsCp: ratio("drain", "cp") };
  // The same ratios from the best (minimum) runs: on a noisy host, a cross-check for the medians.
  const best = (a, b) => (steps[a]?.ok && steps[b]?.ok ? steps[a].minWallSeconds / steps[b].minWallSeconds : undefined);
  const ratiosBest = { convertVsDrain: best("convert", "drain"), convertVsCp: best("convert", "cp"), drainVsCp: best("drain", "cp") };
  const up = steps.startup?.ok ? steps.startup.wallSeconds : undefined;
  const net = (a, b, subB) => (up !== undefined && steps[a]?.ok && steps[b]?.ok
    ? Math.max(0, steps[a].wallSeconds - up) / Math.max(1e-9, steps[b].wallSeconds - (subB ? up : 0)) : undefined);
  const ratiosNetOfStartup = { convertVsDrain: net("convert", "drain", true), convertVsCp: net("convert", "cp", false) };

  const t = TARGETS[corpus.id];
  const timeRatio = t.floor === "drain" ? ratios.convertVsDrain : ratios.convertVsCp;
  const limit = rssLimit(corpus.id, corpus.entries);
  const rss = steps.convert.ok ? steps.convert.peakRssBytes : undefined;
  const verdict = (ok) => (ok === undefined ? "n/a" : ok ? "PASS" : "MISS");
  const targets = {
    time: { what: `convert / ${t.floor} <= ${t.maxRatio.toFixed(1)}x`, value: timeRatio, status: verdict(timeRatio === undefined ? undefined : timeRatio <= t.maxRatio) },
    rss: { what: `peak RSS < ${(limit / MiB).toFixed(1)} MiB`, limitBytes: limit, value: rss, status: verdict(rss === undefined ? undefined : rss < limit) },
  };
  return {
    corpus: { id: corpus.id, name: CORPORA[corpus.id].name, file: corpus.path, bytes: corpus.bytes, entries: corpus.entries, sha256: corpus.sha256, stats: corpus.stats },
    steps, ratios, ratiosBest, ratiosNetOfStartup, targets, notes: [...notes],
    profile: profile && { file: profile.file, totalMs: profile.totalMs, top: profile.rows.slice(0, 20) },
    profileText: profile && formatTop(profile, 20),
    keptOutput,
  };
}

// ---------------------------------------------------------------------------------------------
// Report

const fmt = {
  s: (x) => (x === undefined ? "-" : x.toFixed(3)),
  mibs: (x) => (x === undefined ? "-" : x.toFixed(1)),
  eps: (x) => (x === undefined ? "-" : x >= 1e4 ? Math.round(x).toLocaleString("en-US") : x.toFixed(1)),
  mib: (x) => (x === undefined ? "-" : `${(x / MiB).toFixed(1)} MiB`),
  x: (x) => (x === undefined ? "-" : `${x.toFixed(2)}x`),
};

function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("   ")).join("\n");
}

function report(res, runs) {
  const c = res.corpus;
  const lines = [];
  lines.push(`== (${c.id}) ${c.name}: ${CORPORA[c.id].describe}`);
  lines.push(`   ${(c.bytes / 1e6).toFixed(1)} MB tar, ${c.entries.toLocaleString("en-US")} entries, ${c.file}`);
  const rows = [["step", "wall s (median)", "min s", "MiB/s", "entries/s", "peak RSS", "/ drain", "/ cp"]];
  for (const name of ["drain", "cp", "convert"]) {
    const s = res.steps[name];
    if (!s.ok) { rows.push([name, "FAILED", "-", "-", "-", "-", "-", "-"]); continue; }
    const rd = res.steps.drain.ok ? s.wallSeconds / res.steps.drain.wallSeconds : undefined;
    const rc = res.steps.cp.ok ? s.wallSeconds / res.steps.cp.wallSeconds : undefined;
    rows.push([name, fmt.s(s.wallSeconds), fmt.s(s.minWallSeconds), fmt.mibs(s.mibPerSecond), fmt.eps(s.entriesPerSecond), fmt.mib(s.peakRssBytes), fmt.x(rd), fmt.x(rc)]);
  }
  const st = res.steps.startup;
  if (st.ok) rows.push(["(node -e 0)", fmt.s(st.wallSeconds), fmt.s(st.minWallSeconds), "", "", "", "", ""]);
  lines.push(table(rows).split("\n").map((l) => `   ${l}`).join("\n"));
  lines.push(`   (${runs} timed run${runs > 1 ? "s" : ""} per step after one warm-up; wall time includes node start-up; peak RSS is the max over runs; cp has no RSS figure)`);
  const conv = res.steps.convert;
  if (conv.ok && typeof conv.reported?.seconds === "number") {
    lines.push(`   convert reports ${conv.reported.seconds.toFixed(3)} s in-process, image ${fmt.mib(conv.reported.imageBytes)}`);
  }
  if (st.ok && conv.ok && res.steps.cp.ok && res.steps.drain.ok) {
    const net = (x) => Math.max(0, x - st.wallSeconds);
    lines.push(`   net of node start-up (${fmt.s(st.wallSeconds)} s): convert ${fmt.s(net(conv.wallSeconds))} s = ${fmt.x(net(conv.wallSeconds) / net(res.steps.drain.wallSeconds))} drain, ${fmt.x(net(conv.wallSeconds) / res.steps.cp.wallSeconds)} cp (information only; targets use the raw wall times)`);
  }
  for (const [k, t] of Object.entries(res.targets)) {
    const v = k === "time" ? fmt.x(t.value) : fmt.mib(t.value);
    lines.push(`   target ${t.what}: ${v}  ${t.status}`);
  }
  for (const s of Object.values(res.steps)) if (!s.ok) lines.push(`   FAILED ${s.error}`);
  for (const n of res.notes) lines.push(`   note: ${n}`);
  if (res.profileText) lines.push(`   profile of convert (top 20 by self time), ${res.profile.file}:\n${res.profileText.split("\n").map((l) => `   ${l}`).join("\n")}`);
  if (res.keptOutput) lines.push(`   kept ${res.keptOutput}`);
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------

async function main() {
  let opts;
  try {
    opts = parseOptions();
  } catch (err) {
    process.stderr.write(`${err.message}\n\n${USAGE}`);
    return 2;
  }
  const log = (s) => process.stderr.write(`${s}\n`);
  const print = opts.json ? log : (s) => process.stdout.write(`${s}\n`);

  const corpora = [];
  for (const id of opts.only) corpora.push(await ensureCorpus(id, opts.outDir, { force: opts.regen, verify: opts.verify, log }));

  const results = [];
  for (const corpus of corpora) {
    const res = await benchCorpus(corpus, opts, log);
    results.push(res);
    print(`\n${report(res, opts.runs)}`);
  }

  const failed = results.flatMap((r) => Object.entries(r.steps).filter(([, s]) => !s.ok).map(([, s]) => `(${r.corpus.id}) ${s.error.split("\n")[0]}`));
  const all = results.flatMap((r) => Object.values(r.targets).map((t) => ({ ...t, id: r.corpus.id })));
  const misses = all.filter((t) => t.status === "MISS").map((t) => `(${t.id}) ${t.what}`);
  const evaluated = all.filter((t) => t.status !== "n/a").length;
  const verdict = evaluated === 0 ? "no target evaluated (convert did not run)"
    : misses.length === 0 ? `all ${evaluated} evaluated target(s) PASS${evaluated < all.length ? `, ${all.length - evaluated} n/a` : ""}`
    : `${misses.length} of ${evaluated} evaluated target(s) MISS: ${misses.join("; ")}`;
  print(`\nsummary: ${verdict}` +
    (failed.length ? `\n         ${failed.length} step(s) FAILED:\n           ${failed.join("\n           ")}` : ""));

  if (opts.json) {
    const out = {
      node: process.version, host: { cpus: (await import("node:os")).cpus().length, platform: process.platform },
      runs: opts.runs, cli: opts.cli,
      results: results.map(({ profileText, ...r }) => r),
    };
    process.stdout.write(JSON.stringify(out, null, 2) + "\n");
  }
  // The bench reports, it does not gate: a missed target is exit 0, a failed step is not.
  return failed.length ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (err) => {
  process.stderr.write(`bench: ${err?.stack ?? err}\n`);
  process.exitCode = 1;
});
