// Helpers for the `check` tests: a populated source tree, mkfs.ext4/debugfs/e2fsck wrappers,
// byte patches at offsets found by debugfs, and an in-memory BlockSource for the fuzz test.
import { mkdir, open, readFile, symlink, link, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { BlockSource } from "../../src/io/block-source.js";
import { run, runOk } from "../harness/exec.js";

/**
 * Writes the tree every mkfs/converter image in these tests is made from: nested directories,
 * a directory big enough for an htree at 4 KiB blocks, in-inode and block xattrs, a sparse file
 * with 8 extents (a depth-1 extent tree), fast and slow symlinks, a hard link and a fifo.
 */
export async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, "a/b/c"), { recursive: true });
  await mkdir(join(root, "e"), { recursive: true });
  await writeFile(join(root, "a/f1"), "hello\n");
  await writeFile(join(root, "a/small"), "s\n");
  const big = Buffer.alloc(100_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
  await writeFile(join(root, "a/big"), big);
  const h = await open(join(root, "a/sparse"), "w");
  for (let k = 0; k < 8; k++) await h.write(Buffer.alloc(4096, 0x78), 0, 4096, k * 65536);
  await h.close();
  await symlink("f1", join(root, "a/sl"));
  await symlink("x".repeat(100), join(root, "a/longsl"));
  await link(join(root, "a/f1"), join(root, "a/hard"));
  await writeFile(join(root, "a/b/c/deep"), "deep\n");
  for (let i = 0; i < 200; i++) await writeFile(join(root, `e/a_rather_long_file_name_to_fill_blocks_${i}`), `${i}\n`);
  await runOk("mkfifo", [join(root, "e/fifo")]);
  await runOk("setfattr", ["-n", "user.foo", "-v", "bar", join(root, "a/f1")]);
  await runOk("setfattr", ["-n", "user.big", "-v", "v".repeat(500), join(root, "a/big")]);
  await runOk("setfattr", ["-n", "user.big", "-v", "w".repeat(500), join(root, "a/small")]);
}

/** `mkfs.ext4 -q -F <opts> -d tree img` on a fresh sparse file of `mib` MiB. */
export async function mkfs(img: string, mib: number, opts: readonly string[], tree: string): Promise<void> {
  const h = await open(img, "w");
  await h.truncate(mib * 1024 * 1024);
  await h.close();
  await runOk("mkfs.ext4", ["-q", "-F", ...opts, "-d", tree, img]);
}

/** Exit code of `e2fsck -fn img` (0 clean, 4 errors left uncorrected, 8+ operational error). */
export async function e2fsckCode(img: string): Promise<number> {
  const r = await run("e2fsck", ["-fn", img]);
  return r.code ?? -1;
}

/** Runs debugfs requests on the image, writable; fails on a debugfs error message. */
export async function debugfsW(img: string, ...requests: string[]): Promise<string> {
  const r = await runOk("debugfs", ["-w", "-f", "-", img], { input: requests.join("\n") + "\n" });
  return r.stdout + r.stderr;
}

/** Output of one read-only debugfs request. */
export async function debugfsR(img: string, request: string): Promise<string> {
  const r = await runOk("debugfs", ["-R", request, img]);
  return r.stdout;
}

/** Inode number and byte offset of `path`'s inode (debugfs `imap`). */
export async function inodeLocation(img: string, path: string, blockSize: number): Promise<{ ino: number; offset: number }> {
  const out = await debugfsR(img, `imap ${path}`);
  const m = /Inode (\d+) is part of.*\n\s*located at block (\d+), offset 0x([0-9a-f]+)/.exec(out);
  if (!m) throw new Error(`imap ${path}: ${out}`);
  return { ino: Number(m[1]), offset: Number(m[2]) * blockSize + parseInt(m[3]!, 16) };
}

/** Physical block of logical block `logical` of `path` (debugfs `bmap`). */
export async function bmap(img: string, path: string, logical = 0): Promise<number> {
  const out = await debugfsR(img, `bmap ${path} ${logical}`);
  const n = Number(out.trim());
  if (!Number.isInteger(n) || n <= 0) throw new Error(`bmap ${path}: ${out}`);
  return n;
}

/** i_file_acl of `path`. */
export async function fileAcl(img: string, path: string): Promise<number> {
  const out = await debugfsR(img, `stat ${path}`);
  const m = /File ACL: (\d+)/.exec(out);
  if (!m || m[1] === "0") throw new Error(`no xattr block on ${path}`);
  return Number(m[1]);
}

export async function readAt(img: string, offset: number, length: number): Promise<Buffer> {
  const h = await open(img, "r");
  try {
    const b = Buffer.alloc(length);
    await h.read(b, 0, length, offset);
    return b;
  } finally {
    await h.close();
  }
}

export async function patch(img: string, offset: number, bytes: Uint8Array): Promise<void> {
  const h = await open(img, "r+");
  try {
    await h.write(bytes, 0, bytes.length, offset);
  } finally {
    await h.close();
  }
}

export const le16 = (n: number) => Buffer.from([n & 0xff, (n >>> 8) & 0xff]);
export const le32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

/** Byte offset (in the image) of the directory entry `name` in directory block `block`. */
export async function direntOffset(img: string, block: number, blockSize: number, name: string): Promise<number> {
  const b = await readAt(img, block * blockSize, blockSize);
  for (let at = 0; at + 8 <= blockSize; ) {
    const recLen = b.readUInt16LE(at + 4);
    const nameLen = b[at + 6]!;
    if (b.readUInt32LE(at) !== 0 && b.subarray(at + 8, at + 8 + nameLen).toString("latin1") === name) return block * blockSize + at;
    if (recLen < 8) break;
    at += recLen;
  }
  throw new Error(`no entry ${name} in block ${block}`);
}

/**
 * An in-memory disk. Reads after `deadline` (ms since epoch) throw, so a checker stuck in a
 * loop that reads is cut short and the test names the case instead of hanging.
 */
export function memorySource(bytes: Uint8Array, deadline = Infinity): BlockSource {
  return {
    size: bytes.length,
    async read(buffer: Uint8Array, position: number): Promise<number> {
      if (Date.now() > deadline) throw new Error("fuzz case timed out (still reading)");
      const n = Math.max(0, Math.min(buffer.length, bytes.length - position));
      if (n > 0) buffer.set(bytes.subarray(position, position + n));
      return n;
    },
    async close(): Promise<void> {},
  };
}

export async function loadImage(img: string): Promise<Uint8Array> {
  return new Uint8Array(await readFile(img));
}
