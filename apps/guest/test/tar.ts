// Small layer tars for tests, made by GNU tar from files written to a folder.
import { execFileSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";

/** Writes `files` (path -> content) under `dir` and tars them to `<dir>.tar`; returns the tar's path. */
export async function makeTar(dir: string, files: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  const tar = `${dir}.tar`;
  execFileSync("tar", ["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-C", dir, "-cf", tar, "."]);
  return tar;
}
