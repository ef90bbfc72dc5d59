// The built-in sample layer behind `lcow convert --sample` (and `pnpm demo`): a small tar with
// one entry of every kind a real layer carries, generated in memory so that the demo needs no
// download and the output is byte-for-byte the same on every machine.

/** One entry of the sample layer. */
export interface SampleEntry {
  name: string;
  type: "file" | "directory" | "symlink" | "hardlink";
  mode: number;
  /** File contents (files only). */
  data?: Uint8Array;
  /** Symlink target or hard-link source (links only). */
  linkname?: string;
}

// 2023-11-14T22:13:20Z: a fixed mtime, so two demo runs write identical images.
const MTIME = 1_700_000_000;
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A longer file, so the image holds data spread over several 4 KiB blocks. */
function licenseLikeText(): Uint8Array {
  const lines: string[] = [];
  for (let i = 1; i <= 2000; i++) lines.push(`${String(i).padStart(4, "0")} lcow sample layer: deterministic line for block tests`);
  return text(`${lines.join("\n")}\n`);
}

/**
 * The entries of the sample layer, in tar order: directories, regular files, an executable
 * script, a symlink, a hard link, an OCI whiteout (`etc/.wh.motd`, deleting `etc/motd` of a lower
 * layer) and an OCI opaque directory (`var/cache/app/.wh..wh..opq`, hiding the lower layer's
 * contents of that directory).
 */
export function sampleEntries(): SampleEntry[] {
  return [
    { name: "bin", type: "symlink", mode: 0o777, linkname: "usr/bin" },
    { name: "etc/", type: "directory", mode: 0o755 },
    { name: "etc/hostname", type: "file", mode: 0o644, data: text("lcow-sample\n") },
    { name: "etc/os-release", type: "file", mode: 0o644, data: text('NAME="lcow sample"\nID=lcow\nVERSION_ID=1\n') },
    { name: "etc/.wh.motd", type: "file", mode: 0o644, data: new Uint8Array(0) },
    { name: "tmp/", type: "directory", mode: 0o1777 },
    { name: "usr/", type: "directory", mode: 0o755 },
    { name: "usr/bin/", type: "directory", mode: 0o755 },
    { name: "usr/bin/hello", type: "file", mode: 0o755, data: text("#!/bin/sh\necho 'hello from an lcow layer'\n") },
    { name: "usr/bin/hi", type: "hardlink", mode: 0o755, linkname: "usr/bin/hello" },
    { name: "usr/share/doc/lcow/", type: "directory", mode: 0o755 },
    { name: "usr/share/doc/lcow/lines.txt", type: "file", mode: 0o644, data: licenseLikeText() },
    { name: "var/", type: "directory", mode: 0o755 },
    { name: "var/cache/", type: "directory", mode: 0o755 },
    { name: "var/cache/app/", type: "directory", mode: 0o755 },
    { name: "var/cache/app/.wh..wh..opq", type: "file", mode: 0o644, data: new Uint8Array(0) },
    { name: "var/cache/app/fresh.txt", type: "file", mode: 0o644, data: text("this layer's only cache entry\n") },
  ];
}

const TYPEFLAG = { file: "0", hardlink: "1", symlink: "2", directory: "5" } as const;

/** Writes `value` as a NUL-terminated octal field of `width` bytes at `at` (ustar numeric field). */
function octal(h: Uint8Array, at: number, width: number, value: number): void {
  h.set(text(`${value.toString(8).padStart(width - 1, "0")}\0`), at);
}

/** A 512-byte POSIX ustar header; the sample's names are all short enough for the 100-byte field. */
export function ustarHeader(e: SampleEntry): Uint8Array {
  const h = new Uint8Array(512);
  h.set(text(e.name), 0); // name[100]
  octal(h, 100, 8, e.mode); // mode
  octal(h, 108, 8, 0); // uid
  octal(h, 116, 8, 0); // gid
  octal(h, 124, 12, e.data?.length ?? 0); // size
  octal(h, 136, 12, MTIME); // mtime
  h.fill(0x20, 148, 156); // chksum is summed as eight spaces
  h.set(text(TYPEFLAG[e.type]), 156); // typeflag
  if (e.linkname !== undefined) h.set(text(e.linkname), 157); // linkname[100]
  h.set(text("ustar\x0000"), 257); // magic "ustar\0" + version "00"
  h.set(text("root"), 265); // uname[32]
  h.set(text("root"), 297); // gname[32]
  let sum = 0;
  for (const b of h) sum += b;
  // Six octal digits, NUL, space: the form GNU tar writes and every reader accepts.
  h.set(text(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
  return h;
}

/**
 * The sample layer as an uncompressed tar stream: header, data padded to 512 bytes, per entry,
 * then the two zero blocks that end an archive. Deterministic: the same bytes on every call.
 */
export async function* sampleLayer(): AsyncGenerator<Uint8Array> {
  for (const e of sampleEntries()) {
    yield ustarHeader(e);
    const data = e.data;
    if (data !== undefined && data.length > 0) {
      yield data;
      const pad = (512 - (data.length % 512)) % 512;
      if (pad > 0) yield new Uint8Array(pad);
    }
  }
  yield new Uint8Array(1024);
}
