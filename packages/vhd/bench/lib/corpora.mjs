// The three benchmark corpora, generated deterministically and cached as tar files.
//
//   a  rootfs        ~200 MB, ~7k entries: a Debian-like tree, sizes like /usr
//   b  node_modules  ~370 MB, ~68k entries, one directory of 40,000 files
//   c  big           2 x 300 MiB of PRNG bytes (incompressible)
//
// Each corpus is first laid out as a list of entries (metadata only: path, type, size, mode...),
// then streamed to disk through TarWriter with contents produced in place. Memory is bounded by
// the entry count (a few MB for 68k entries), never by the corpus size.
//
// Bump GENERATOR_VERSION whenever anything here or in prng.mjs / tar-writer.mjs changes the bytes
// produced: cached tars carrying another version are regenerated.

import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createReadStream } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { Rng } from "./prng.mjs";
import { TarWriter, TYPE } from "./tar-writer.mjs";

export const GENERATOR_VERSION = 1;
const MANIFEST = "corpora.json";

/** mtime base for every entry: 2023-11-14T22:13:20Z, minus a random age. */
const EPOCH = 1_700_000_000;
const MiB = 1 << 20;

export const CORPORA = Object.freeze({
  a: { id: "a", name: "rootfs", file: "corpus-a-rootfs.tar", seed: 0xa11ce, describe: "Linux-rootfs-like tree, ~200 MB, ~7k entries, sizes like /usr" },
  b: { id: "b", name: "node_modules", file: "corpus-b-node_modules.tar", seed: 0xb0b, describe: "node_modules-like tree, ~370 MB, ~68k small files, one dir with 40k entries" },
  c: { id: "c", name: "big", file: "corpus-c-big.tar", seed: 0xc0ffee, describe: "2 x 300 MiB incompressible files" },
});

// ---------------------------------------------------------------------------------------------
// Content pools. File contents are stitched from slices of two 8 MiB pools: "text" (words,
// punctuation, indentation: compresses ~3-4x with gzip) and "random" (PRNG bytes). Each file
// draws segments of 4-64 KiB from one or the other with a per-file probability, so corpora are
// partly compressible, like real layers, and filling is a memcpy.

const POOL = 8 * MiB;
const SEG_MIN = 4 << 10;
const SEG_SPREAD = 60 << 10;

function makePools(seed) {
  const rng = new Rng(seed ^ 0x5eed);
  const random = new Uint8Array(new ArrayBuffer(POOL));
  rng.fill(random);
  const vocab = [];
  for (let i = 0; i < 4000; i++) vocab.push(word(rng, 2, 11));
  const punct = [" ", " ", " ", " ", " ", ", ", ". ", "(", ") ", " = ", ";\n", "\n", "{\n", "}\n", ": ", "_", "/", "\"", "'"];
  const text = new Uint8Array(new ArrayBuffer(POOL));
  let p = 0;
  let indent = 0;
  while (p < POOL) {
    // Zipf-ish word choice: low indices much more frequent.
    const w = vocab[Math.floor(vocab.length * Math.pow(rng.float(), 3))];
    const sep = rng.pick(punct);
    let s = w + sep;
    if (sep.endsWith("\n")) {
      indent = Math.max(0, Math.min(12, indent + rng.range(-2, 2)));
      s += " ".repeat(indent);
    }
    for (let i = 0; i < s.length && p < POOL; i++) text[p++] = s.charCodeAt(i);
  }
  return { text, random };
}

/** Returns a fill callback for TarWriter.data producing content with P(random segment) = pRandom. */
function contentFill(rng, pools, pRandom) {
  let segLeft = 0;
  let src = pools.text;
  let srcPos = 0;
  return (buf, off, len) => {
    while (len > 0) {
      if (segLeft === 0) {
        segLeft = SEG_MIN + rng.int(SEG_SPREAD);
        src = rng.chance(pRandom) ? pools.random : pools.text;
        srcPos = rng.int(POOL - segLeft);
      }
      const n = Math.min(len, segLeft);
      buf.set(src.subarray(srcPos, srcPos + n), off);
      srcPos += n; segLeft -= n; off += n; len -= n;
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Names

const CONS = "bcdfghjklmnprstvwxz";
const VOW = "aeiouy";
function word(rng, min, max) {
  const n = rng.range(min, max);
  let s = "";
  for (let i = 0; i < n; i++) s += i % 2 === 0 ? CONS[rng.int(CONS.length)] : VOW[rng.int(VOW.length)];
  return s;
}

function uniqueName(rng, taken, make) {
  for (;;) {
    const n = make();
    if (!taken.has(n)) { taken.add(n); return n; }
  }
}

// ---------------------------------------------------------------------------------------------
// A tiny in-memory tree (metadata only), emitted depth-first like GNU tar: a directory, then its
// children in creation order.

class Dir {
  constructor(path, parent) {
    this.path = path; // no trailing slash; "" is the root (not emitted)
    this.parent = parent;
    this.children = []; // Dir | Leaf, in emission order
    this.names = new Set();
    this.depth = parent ? parent.depth + 1 : 0;
    this.kind = parent?.kind ?? "text";
  }
  child(name) { return this.path ? `${this.path}/${name}` : name; }
  mkdir(name) {
    this.names.add(name);
    const d = new Dir(this.child(name), this);
    this.children.push(d);
    return d;
  }
}

/** @typedef {{ leaf: true, name: string, type: 'file'|'symlink'|'hardlink', size: number, mode: number, pRandom: number, linkname?: string }} Leaf */

function addLeaf(dir, name, props) {
  dir.names.add(name);
  const leaf = { leaf: true, name, path: dir.child(name), ...props };
  dir.children.push(leaf);
  return leaf;
}

function allDirs(root) {
  const out = [];
  const walk = (d) => { out.push(d); for (const c of d.children) if (!c.leaf) walk(c); };
  walk(root);
  return out;
}

/** Scales the sizes of `files` (in place) so that they sum to about `target` bytes. */
function scaleSizes(files, target) {
  const sum = files.reduce((s, f) => s + f.size, 0);
  const k = target / sum;
  for (const f of files) f.size = Math.round(f.size * k);
}

// ---------------------------------------------------------------------------------------------
// (a) rootfs: merged-/usr Debian-like tree.

function buildRootfs(rng) {
  const root = new Dir("", null);
  const fixed = {};
  const mk = (path, kind) => {
    let d = root;
    for (const part of path.split("/")) {
      d = d.children.find((c) => !c.leaf && c.path === d.child(part)) ?? d.mkdir(part);
    }
    if (kind) d.kind = kind;
    fixed[path] = d;
    return d;
  };
  for (const p of ["etc", "etc/default", "etc/apt", "etc/ssl/certs", "home", "root", "tmp", "run", "var/lib/dpkg/info",
    "var/lib/apt/lists", "var/cache/debconf", "var/log", "usr/share/doc", "usr/share/man/man1", "usr/share/man/man5",
    "usr/share/man/man8", "usr/share/locale", "usr/share/zoneinfo", "usr/share/perl5", "usr/include", "usr/local/bin",
    "usr/libexec"]) mk(p);
  for (const p of ["usr/bin", "usr/sbin", "usr/lib/x86_64-linux-gnu", "usr/lib/python3/dist-packages", "usr/lib/x86_64-linux-gnu/perl", "usr/lib/gcc/x86_64-linux-gnu/12"]) mk(p, "binary");
  for (const [l, t] of [["bin", "usr/bin"], ["sbin", "usr/sbin"], ["lib", "usr/lib"], ["lib64", "usr/lib64"]]) {
    addLeaf(root, l, { type: "symlink", size: 0, mode: 0o777, linkname: t, pRandom: 0 });
  }

  // Grow ~750 more directories under a few hot subtrees, favouring depth like /usr/share does.
  const growable = [fixed["usr/share/doc"], fixed["usr/share/locale"], fixed["usr/share/zoneinfo"], fixed["usr/share/perl5"],
    fixed["usr/include"], fixed["usr/lib/x86_64-linux-gnu"], fixed["usr/lib/python3/dist-packages"],
    fixed["usr/lib/x86_64-linux-gnu/perl"], fixed["usr/share/man/man1"].parent.parent, fixed["etc"]];
  for (let i = 0; i < 750; i++) {
    const parent = rng.chance(0.45) ? rng.pick(growable) : rng.pick(growable.concat(allDirsCache(root, i)));
    if (parent.depth >= 9) continue;
    const name = uniqueName(rng, parent.names, () => word(rng, 3, 12) + (rng.chance(0.2) ? `-${rng.range(1, 30)}.${rng.range(0, 9)}` : ""));
    parent.mkdir(name);
  }

  // Distribute files over directories with heavy-tailed weights (a few to a few hundred each).
  const dirs = allDirs(root).filter((d) => d !== root);
  const weights = dirs.map(() => Math.min(rng.pareto(1, 1.1), 60));
  weights[dirs.indexOf(fixed["usr/bin"])] = 90;
  weights[dirs.indexOf(fixed["var/lib/dpkg/info"])] = 70;
  weights[dirs.indexOf(fixed["usr/lib/x86_64-linux-gnu"])] = 80;
  const cum = [];
  weights.reduce((s, w, i) => (cum[i] = s + w), 0);
  const total = cum[cum.length - 1];
  const pickDir = () => {
    const x = rng.float() * total;
    let lo = 0, hi = cum.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (cum[mid] < x) lo = mid + 1; else hi = mid; }
    return dirs[lo];
  };

  const body = [];
  const fileTarget = 7000 - dirs.length - 4;
  for (let i = 0; i < fileTarget; i++) {
    const d = pickDir();
    const bin = d.kind === "binary";
    const ext = bin ? rng.pick(["", "", ".so.1", ".so.6", ".a", ".py", ".pm"]) : rng.pick(["", ".gz", ".txt", ".conf", ".h", ".pm", ".list", ".md5sums", ".mo", ".html", ".1.gz"]);
    const name = uniqueName(rng, d.names, () => word(rng, 2, 14) + ext);
    const r = rng.float();
    if (r < 0.05 && d.children.some((c) => c.leaf && c.type === "file")) {
      // Symlink: mostly to a sibling (libfoo.so -> libfoo.so.1.2), some absolute, some ../
      const sib = d.children.filter((c) => c.leaf && c.type === "file");
      const t = rng.pick(sib);
      const linkname = rng.chance(0.7) ? t.name : rng.chance(0.5) ? `/${t.path}` : `../${d.path.split("/").pop()}/${t.name}`;
      addLeaf(d, name, { type: "symlink", size: 0, mode: 0o777, linkname, pRandom: 0 });
    } else if (r < 0.06) {
      addLeaf(d, name, { type: "hardlink", size: 0, mode: 0o755, pRandom: 0 }); // target chosen at emission
    } else {
      const empty = rng.chance(0.02);
      const size = empty ? 0 : Math.max(1, Math.round(rng.logNormal(bin ? 9000 : 2500, 1.7)));
      const f = addLeaf(d, name, { type: "file", size: Math.min(size, 6 * MiB), mode: bin ? 0o755 : 0o644, pRandom: bin ? 0.6 : 0.05 });
      if (!empty) body.push(f);
    }
  }
  // A tail of large files: toolchains, locale archives, big shared libraries.
  const tail = [];
  for (let i = 0; i < 10; i++) {
    const d = i < 6 ? fixed["usr/lib/x86_64-linux-gnu"] : rng.pick([fixed["usr/lib/gcc/x86_64-linux-gnu/12"], fixed["usr/bin"], fixed["usr/share/locale"]]);
    const name = uniqueName(rng, d.names, () => `lib${word(rng, 3, 8)}.so.${rng.range(1, 9)}`);
    tail.push(addLeaf(d, name, { type: "file", size: Math.round(Math.exp(Math.log(2 * MiB) + rng.float() * Math.log(8))), mode: 0o755, pRandom: 0.7 }));
  }
  const tailBytes = tail.reduce((s, f) => s + f.size, 0);
  scaleSizes(body, 200e6 - tailBytes);
  return root;
}

// allDirs() is O(n); while growing, refresh the candidate list every 50 new directories.
let dirsCache = null;
function allDirsCache(root, i) {
  if (i % 50 === 0 || !dirsCache) dirsCache = allDirs(root).filter((d) => d !== root);
  return dirsCache;
}

// ---------------------------------------------------------------------------------------------
// (b) node_modules

function buildNodeModules(rng) {
  const root = new Dir("", null);
  const nm = root.mkdir("node_modules");
  const bin = nm.mkdir(".bin");
  const body = [];
  const small = [];
  const file = (d, name, median, sigma, pRandom = 0.02) => {
    const f = addLeaf(d, name, { type: "file", size: Math.max(1, Math.round(rng.logNormal(median, sigma))), mode: 0o644, pRandom });
    body.push(f);
    return f;
  };

  // The one huge directory: an icon set with 40,000 small SVGs.
  const iconPkg = nm.mkdir("@iconset").mkdir("icons-all");
  file(iconPkg, "package.json", 1500, 0.3);
  const icons = iconPkg.mkdir("svg");
  for (let i = 0; i < 40_000; i++) {
    const name = uniqueName(rng, icons.names, () => `${word(rng, 3, 9)}-${word(rng, 2, 7)}${rng.chance(0.3) ? "-outline" : ""}.svg`);
    small.push(addLeaf(icons, name, { type: "file", size: Math.max(120, Math.round(rng.logNormal(1100, 0.6))), mode: 0o644, pRandom: 0 }));
  }

  // Ordinary packages until the entry budget (~68k) is spent.
  const SUBDIRS = ["lib", "dist", "src", "esm", "cjs", "types", "internal", "utils", "helpers", "operators", "locale", "test"];
  let entries = 40_000 + 5;
  const packages = [];
  const makePackage = (parentNm, depth) => {
    const scoped = rng.chance(0.15);
    let base = parentNm;
    if (scoped) {
      const scope = `@${word(rng, 3, 8)}`;
      base = parentNm.children.find((c) => !c.leaf && c.path === parentNm.child(scope)) ?? (entries++, parentNm.mkdir(scope));
    }
    const pkg = base.mkdir(uniqueName(rng, base.names, () => word(rng, 3, 10) + (rng.chance(0.3) ? `-${word(rng, 2, 8)}` : "")));
    entries++;
    packages.push(pkg);
    file(pkg, "package.json", 1800, 0.6); file(pkg, "README.md", 6000, 1.0); file(pkg, "LICENSE", 1070, 0.1);
    entries += 3;
    const nFiles = Math.min(Math.round(rng.pareto(2, 0.9)), 2500);
    const dirs = [pkg];
    for (let i = 0; i < nFiles; i++) {
      if (rng.chance(0.12) && dirs.length < 200) {
        const parent = rng.pick(dirs);
        if (parent.depth < pkg.depth + 5) {
          dirs.push(parent.mkdir(uniqueName(rng, parent.names, () => (rng.chance(0.6) ? rng.pick(SUBDIRS) : word(rng, 3, 12)))));
          entries++;
        }
      }
      const d = rng.pick(dirs);
      const ext = rng.pick([".js", ".js", ".js", ".mjs", ".cjs", ".d.ts", ".d.ts", ".js.map", ".json", ".ts", ".md"]);
      const name = uniqueName(rng, d.names, () => word(rng, 2, 16) + (rng.chance(0.2) ? `.${word(rng, 2, 6)}` : "") + ext);
      file(d, name, ext === ".js.map" ? 9000 : 2600, 1.5);
      entries++;
    }
    if (rng.chance(0.05)) { file(pkg, `${word(rng, 3, 8)}.node`, 400_000, 0.8, 1); entries++; } // native addon
    if (rng.chance(0.08)) {
      const d = pkg.children.find((c) => !c.leaf && c.path.endsWith("/dist")) ?? pkg;
      file(d, `${word(rng, 3, 8)}.bundle.js`, 1.5 * MiB, 0.7); entries++; // bundles: the multi-MB tail
    }
    if (rng.chance(0.2)) {
      const name = uniqueName(rng, bin.names, () => word(rng, 3, 10));
      addLeaf(bin, name, { type: "symlink", size: 0, mode: 0o777, linkname: `../${pkg.path.slice("node_modules/".length)}/cli.js`, pRandom: 0 });
      entries++;
    }
    if (depth < 3 && rng.chance(0.06)) {
      const sub = pkg.mkdir("node_modules");
      entries++;
      const n = rng.range(1, 4);
      for (let i = 0; i < n; i++) makePackage(sub, depth + 1);
    }
  };
  while (entries < 68_000) makePackage(nm, 0);
  const smallBytes = small.reduce((s, f) => s + f.size, 0);
  scaleSizes(body, 370e6 - smallBytes);
  return root;
}

// ---------------------------------------------------------------------------------------------
// (c) big files

function buildBig() {
  const root = new Dir("", null);
  const d = root.mkdir("big");
  for (let i = 0; i < 2; i++) addLeaf(d, `random-${i}.bin`, { type: "file", size: 300 * MiB, mode: 0o644, pRandom: 1, prng: true });
  return root;
}

// ---------------------------------------------------------------------------------------------
// Emission

function writeTree(root, path, seed) {
  const rng = new Rng(seed ^ 0xda7a);
  const pools = makePools(seed);
  const w = new TarWriter(path);
  const emitted = []; // regular files so far (hard-link targets)
  const mtime = () => EPOCH - rng.int(2 * 365 * 86400);
  try {
    const walk = (d) => {
      if (d.path) w.header({ path: `${d.path}/`, type: TYPE.dir, mode: 0o755, mtime: mtime() });
      for (const c of d.children) {
        if (!c.leaf) { walk(c); continue; }
        if (c.type === "hardlink" && emitted.length > 0) {
          // Prefer a recent file (often the same directory), like perl5.36 / perl in /usr/bin.
          const t = emitted[Math.max(0, emitted.length - 1 - rng.int(Math.min(emitted.length, 40)))];
          w.header({ path: c.path, type: TYPE.hardlink, mode: t.mode, mtime: t.mtime, linkname: t.path });
        } else if (c.type === "symlink") {
          w.header({ path: c.path, type: TYPE.symlink, mode: 0o777, mtime: mtime(), linkname: c.linkname });
        } else {
          const size = c.type === "file" ? c.size : 0;
          const f = { path: c.path, mode: c.mode, mtime: mtime() };
          w.header({ path: c.path, type: TYPE.file, size, mode: c.mode, mtime: f.mtime });
          w.data(size, c.prng ? (buf, off, len) => rng.fill(buf, off, len) : contentFill(rng, pools, c.pRandom));
          emitted.push(f);
        }
      }
    };
    walk(root);
    return w.finish();
  } catch (err) {
    w.abort();
    throw err;
  }
}

const BUILDERS = { a: buildRootfs, b: buildNodeModules, c: buildBig };

/** Stats of a built tree, for the generation log and the README's claims. */
function treeStats(root) {
  let files = 0, dirs = 0, symlinks = 0, hardlinks = 0, bytes = 0, maxDir = 0, maxDepth = 0, maxFile = 0;
  for (const d of allDirs(root)) {
    if (d.path) dirs++;
    maxDir = Math.max(maxDir, d.children.length);
    maxDepth = Math.max(maxDepth, d.depth);
    for (const c of d.children) {
      if (!c.leaf) continue;
      if (c.type === "file") { files++; bytes += c.size; maxFile = Math.max(maxFile, c.size); }
      else if (c.type === "symlink") symlinks++;
      else hardlinks++;
    }
  }
  return { entries: files + dirs + symlinks + hardlinks, files, dirs, symlinks, hardlinks, fileBytes: bytes, largestDir: maxDir, maxDepth, largestFile: maxFile };
}

// ---------------------------------------------------------------------------------------------
// Cache and manifest

function readManifest(outDir) {
  try {
    const m = JSON.parse(readFileSync(join(outDir, MANIFEST), "utf8"));
    return m && typeof m === "object" && m.corpora ? m : { corpora: {} };
  } catch {
    return { corpora: {} };
  }
}

/** sha256 of a file, streamed. */
export async function sha256File(path) {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) h.update(chunk);
  return h.digest("hex");
}

/**
 * Makes sure the tar of corpus `id` exists in `outDir` and matches the manifest (same generator
 * version and size; with `verify`, same sha256 too), generating it otherwise.
 * @returns {Promise<{ id: string, path: string, bytes: number, entries: number, sha256: string, generated: boolean, stats: object }>}
 */
export async function ensureCorpus(id, outDir, { force = false, verify = false, log = () => {} } = {}) {
  const spec = CORPORA[id];
  mkdirSync(outDir, { recursive: true });
  const path = join(outDir, spec.file);
  const manifest = readManifest(outDir);
  const entry = manifest.corpora[id];
  let ok = !force && entry && entry.generatorVersion === GENERATOR_VERSION && existsSync(path) && statSync(path).size === entry.bytes;
  if (ok && verify) {
    log(`corpus ${id}: verifying sha256 ...`);
    ok = (await sha256File(path)) === entry.sha256;
    if (!ok) log(`corpus ${id}: sha256 mismatch, regenerating`);
  }
  if (ok) return { id, path, ...entry, generated: false };

  log(`corpus ${id} (${spec.name}): generating ${spec.file} ...`);
  const t0 = performance.now();
  const rng = new Rng(spec.seed);
  const tree = BUILDERS[id](rng);
  const stats = treeStats(tree);
  const tmp = `${path}.partial`;
  let res;
  try {
    res = writeTree(tree, tmp, spec.seed);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  renameSync(tmp, path);
  const seconds = (performance.now() - t0) / 1000;
  const rec = { generatorVersion: GENERATOR_VERSION, file: spec.file, bytes: res.bytes, entries: res.entries, sha256: res.sha256, stats, generatedIn: +seconds.toFixed(2) };
  // Re-read: another corpus may have been written meanwhile by this process.
  const m2 = readManifest(outDir);
  m2.generatorVersion = GENERATOR_VERSION;
  m2.corpora[id] = rec;
  writeFileSync(join(outDir, MANIFEST), JSON.stringify(m2, null, 2) + "\n");
  log(`corpus ${id}: ${(res.bytes / 1e6).toFixed(1)} MB, ${res.entries} entries in ${seconds.toFixed(1)} s (sha256 ${res.sha256.slice(0, 12)}...)`);
  return { id, path, ...rec, generated: true };
}
