// Reads a V8 .cpuprofile (what `node --cpu-prof` writes) and ranks functions by self time.
//
// Format (Chrome DevTools Protocol, Profiler.Profile): `nodes[]` is the call tree, each node with
// `id`, `callFrame { functionName, url, lineNumber (0-based), columnNumber }` and `hitCount`;
// `samples[]` lists, per sample, the id of the node that was on top of the stack, and
// `timeDeltas[]` the microseconds since the previous sample. A node's self time is the sum of the
// deltas of the samples that landed on it; we sum over all nodes with the same function and
// location, because one function appears in many places of the tree.

import { readFileSync } from "node:fs";

/**
 * @param {string} file path of a .cpuprofile
 * @returns {{ totalMs: number, rows: { selfMs: number, pct: number, name: string, where: string }[] }}
 */
export function selfTimes(file) {
  const prof = JSON.parse(readFileSync(file, "utf8"));
  const byId = new Map();
  for (const n of prof.nodes) byId.set(n.id, n);
  const selfUs = new Map(); // node id -> microseconds
  const samples = prof.samples ?? [];
  const deltas = prof.timeDeltas ?? [];
  // timeDeltas[i] is the gap *before* sample i, so sample i is charged the gap to sample i+1
  // (the time it was observed to be on top); the last sample gets the gap to endTime.
  for (let i = 0; i < samples.length; i++) {
    const dt = i + 1 < deltas.length ? deltas[i + 1] : Math.max(0, prof.endTime - sampleTime(prof, deltas, i));
    selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, dt));
  }
  const agg = new Map();
  let total = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    const cf = n.callFrame;
    const name = cf.functionName || "(anonymous)";
    const where = cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : "";
    const key = `${name}\0${where}`;
    const row = agg.get(key) ?? { selfMs: 0, pct: 0, name, where };
    row.selfMs += us / 1000;
    agg.set(key, row);
    total += us / 1000;
  }
  const rows = [...agg.values()].sort((x, y) => y.selfMs - x.selfMs);
  for (const r of rows) r.pct = total > 0 ? (100 * r.selfMs) / total : 0;
  return { totalMs: total, rows };
}

function sampleTime(prof, deltas, i) {
  let t = prof.startTime;
  for (let k = 0; k <= i; k++) t += deltas[k] ?? 0;
  return t;
}

/** file:///work/main/node_modules/.pnpm/x@1/node_modules/x/index.js -> x/index.js */
function shortUrl(url) {
  let u = url.replace(/^file:\/\//, "");
  const nm = u.lastIndexOf("/node_modules/");
  if (nm !== -1) return u.slice(nm + "/node_modules/".length);
  const cwd = process.cwd() + "/";
  if (u.startsWith(cwd)) u = u.slice(cwd.length);
  return u;
}

/** Formats the top `n` rows as a text table. */
export function formatTop({ totalMs, rows }, n = 20) {
  const lines = [`  self ms    self %  function  (location)     [${totalMs.toFixed(0)} ms sampled]`];
  for (const r of rows.slice(0, n)) {
    lines.push(`  ${r.selfMs.toFixed(1).padStart(8)}  ${r.pct.toFixed(1).padStart(7)}%  ${r.name}${r.where ? `  (${r.where})` : ""}`);
  }
  return lines.join("\n");
}
