// A fresh temporary directory per test: never a fixed name in the OS temp dir
// (STYLE "Not to copy": hcsshim's test-layer.tar), and always removed.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Creates a new empty directory under the OS temp dir; the caller removes it (see `withTempDir`). */
export function makeTempDir(label = "t"): Promise<string> {
  return mkdtemp(join(tmpdir(), `lcow-vhd-${label.replace(/[^\w.-]/g, "_").slice(0, 40)}-`));
}

/** Runs `fn` with a fresh temp dir and removes the dir afterwards, also when `fn` throws. */
export async function withTempDir<T>(label: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await makeTempDir(label);
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
