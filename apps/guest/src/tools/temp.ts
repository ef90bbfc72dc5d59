// Temporary files of the tools: in -tmpdir, named for the tool, removed whatever happens.
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";

/** Runs `fn` with a fresh path in `dir` (made if missing), and removes the file afterwards. */
export async function withTempFile<T>(dir: string, tool: string, suffix: string, fn: (path: string) => Promise<T>): Promise<T> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, `.${tool}-${process.pid}-${randomBytes(6).toString("hex")}${suffix}`);
  try {
    return await fn(path);
  } finally {
    await rm(path, { force: true });
  }
}

/** Copies a file to `out` without ending it (the process's stdout ends when the process does). */
export async function streamFile(path: string, out: NodeJS.WritableStream): Promise<void> {
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), out, { end: false });
}
