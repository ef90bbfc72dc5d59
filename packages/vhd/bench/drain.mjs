#!/usr/bin/env node
// The floor of any tar-stream-based converter: read the tar with 1 MiB reads, parse it with
// tar-stream's extract, resume (discard) every entry stream, and do nothing else.
//
//   node packages/vhd/bench/drain.mjs <file.tar> [--iter]
//
// Prints one JSON object on stdout, shaped like `lcow convert --json` so the bench reads both the
// same way: { entries, bytesIn, seconds, peakRssBytes }. `seconds` is measured in-process;
// the bench measures wall time around the whole child itself.
//
// --iter consumes the extract as an async iterator (`for await (const entry of extract)`)
// instead of the 'entry' event; the bench uses the event form, which is the faster of the two.

import { createReadStream, statSync } from "node:fs";
import { createRequire } from "node:module";

// tar-stream is a dependency of @lcow/vhd, so resolve it from there (not from the repo root).
const require = createRequire(new URL("../package.json", import.meta.url));
const tarStream = require("tar-stream");

const args = process.argv.slice(2);
const path = args.find((a) => !a.startsWith("--"));
if (!path) {
  process.stderr.write("usage: drain.mjs <file.tar> [--iter]\n");
  process.exit(2);
}

const t0 = performance.now();
const input = createReadStream(path, { highWaterMark: 1 << 20 });
const extract = tarStream.extract();
let entries = 0;

function fail(err) {
  process.stderr.write(`drain: ${err?.stack ?? err}\n`);
  process.exit(1);
}

input.on("error", fail);
extract.on("error", fail);

if (args.includes("--iter")) {
  input.pipe(extract);
  try {
    for await (const entry of extract) {
      entries++;
      entry.resume();
    }
  } catch (err) {
    fail(err);
  }
  done();
} else {
  extract.on("entry", (_header, stream, next) => {
    entries++;
    stream.on("end", next);
    stream.resume();
  });
  extract.on("finish", done);
  input.pipe(extract);
}

function done() {
  const seconds = (performance.now() - t0) / 1000;
  const out = { entries, bytesIn: statSync(path).size, seconds, peakRssBytes: process.resourceUsage().maxRSS * 1024 };
  process.stdout.write(JSON.stringify(out) + "\n");
}
