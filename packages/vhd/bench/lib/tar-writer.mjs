// A minimal streaming ustar/PAX tar writer for the benchmark corpora.
//
// Why not tar-stream's pack: the generator must write ~1.2 GB quickly and never hold a corpus in
// memory. Here file data is produced straight into one large output buffer (no per-chunk
// allocations, no stream machinery) and flushed to disk with synchronous 8 MiB writes, while a
// SHA-256 of the exact bytes written is kept for the corpus manifest.
//
// Header layout follows POSIX ustar (pax(1) "ustar Interchange Format"); field offsets and widths
// are written out at each use. Names that do not fit name[100] (+ prefix[155]) and link names
// over 100 bytes get a PAX extended header ('x') with `path` / `linkpath` records, as GNU tar
// --format=posix and tar-stream do.

import { closeSync, openSync, writeSync } from "node:fs";
import { createHash } from "node:crypto";

const BLOCK = 512;
/** Output buffer size; a multiple of BLOCK so that every entry's data starts 4-byte aligned. */
const BUF_SIZE = 8 << 20;
/** GNU tar pads the archive to a whole record of 20 blocks; we do the same. */
const RECORD = 20 * BLOCK;

export const TYPE = Object.freeze({ file: "0", hardlink: "1", symlink: "2", dir: "5", pax: "x" });

export class TarWriter {
  /** @param {string} path output file (created or truncated) */
  constructor(path) {
    this.fd = openSync(path, "w");
    this.buf = new Uint8Array(new ArrayBuffer(BUF_SIZE));
    this.pos = 0; // bytes used in buf
    this.bytes = 0; // bytes flushed to disk
    this.entries = 0; // logical entries (PAX headers not counted)
    this.hash = createHash("sha256");
  }

  /** Total archive bytes so far (flushed + buffered). */
  get offset() { return this.bytes + this.pos; }

  flush() {
    if (this.pos === 0) return;
    const chunk = this.buf.subarray(0, this.pos);
    let done = 0;
    while (done < chunk.length) done += writeSync(this.fd, chunk, done, chunk.length - done);
    this.hash.update(chunk);
    this.bytes += this.pos;
    this.pos = 0;
  }

  /** Reserves n (<= BUF_SIZE) contiguous bytes in the buffer, flushing first if needed. */
  reserve(n) {
    if (this.pos + n > BUF_SIZE) this.flush();
    const at = this.pos;
    this.pos += n;
    return at;
  }

  /**
   * @param {{ path: string, type: string, size?: number, mode: number, mtime: number,
   *           uid?: number, gid?: number, uname?: string, gname?: string, linkname?: string }} h
   */
  header(h) {
    const pax = [];
    let name = h.path;
    let prefix = "";
    if (Buffer.byteLength(name) > 100) {
      const split = splitUstarName(name);
      if (split) [prefix, name] = split;
      else { pax.push(["path", h.path]); name = asciiTail(h.path, 100); }
    }
    let linkname = h.linkname ?? "";
    if (Buffer.byteLength(linkname) > 100) { pax.push(["linkpath", linkname]); linkname = asciiTail(linkname, 100); }
    if (pax.length > 0) this.paxHeader(h, pax);

    const at = this.reserve(BLOCK);
    const b = this.buf.subarray(at, at + BLOCK);
    b.fill(0);
    putStr(b, 0, 100, name); // name
    putOct(b, 100, 8, h.mode & 0o7777); // mode
    putOct(b, 108, 8, h.uid ?? 0); // uid
    putOct(b, 116, 8, h.gid ?? 0); // gid
    putOct(b, 124, 12, h.size ?? 0); // size (11 octal digits: < 8 GiB, plenty here)
    putOct(b, 136, 12, h.mtime); // mtime
    b.fill(0x20, 148, 156); // chksum: spaces while summing
    b[156] = h.type.charCodeAt(0); // typeflag
    putStr(b, 157, 100, linkname); // linkname
    putStr(b, 257, 6, "ustar\0"); // magic
    putStr(b, 263, 2, "00"); // version
    putStr(b, 265, 32, h.uname ?? "root"); // uname
    putStr(b, 297, 32, h.gname ?? "root"); // gname
    putOct(b, 329, 8, 0); // devmajor
    putOct(b, 337, 8, 0); // devminor
    putStr(b, 345, 155, prefix); // prefix
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += b[i];
    putStr(b, 148, 8, sum.toString(8).padStart(6, "0") + "\0 "); // chksum: 6 digits, NUL, space
    if (h.type !== TYPE.pax) this.entries++;
  }

  paxHeader(h, records) {
    let body = "";
    for (const [k, v] of records) body += paxRecord(k, v);
    const data = Buffer.from(body);
    this.header({ path: asciiTail(`PaxHeaders/${h.path}`, 100), type: TYPE.pax, size: data.length, mode: 0o644, mtime: h.mtime });
    this.data(data.length, (buf, off, len, done) => buf.set(data.subarray(done, done + len), off));
  }

  /**
   * Writes `size` bytes of entry data, produced in place by `fill(buf, off, len, done)` (`done` =
   * bytes already produced for this entry), then the zero padding to the next block.
   */
  data(size, fill) {
    let done = 0;
    while (done < size) {
      if (this.pos === BUF_SIZE) this.flush();
      const len = Math.min(size - done, BUF_SIZE - this.pos);
      fill(this.buf, this.pos, len, done);
      this.pos += len;
      done += len;
    }
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad > 0) { const at = this.reserve(pad); this.buf.fill(0, at, at + pad); }
  }

  /** End-of-archive: two zero blocks, then zeros up to a whole record. Returns summary. */
  finish() {
    let end = this.offset + 2 * BLOCK;
    end += (RECORD - (end % RECORD)) % RECORD;
    while (this.offset < end) {
      const n = Math.min(end - this.offset, BUF_SIZE - this.pos || BUF_SIZE);
      const at = this.reserve(n);
      this.buf.fill(0, at, at + n);
    }
    this.flush();
    closeSync(this.fd);
    return { bytes: this.bytes, entries: this.entries, sha256: this.hash.digest("hex") };
  }

  /** Closes the file without finishing the archive (on error). */
  abort() { try { closeSync(this.fd); } catch { /* already closed */ } }
}

/** Splits a long name at a '/' so that prefix <= 155 and name <= 100 bytes, or returns null. */
function splitUstarName(path) {
  for (let i = path.indexOf("/"); i !== -1; i = path.indexOf("/", i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (Buffer.byteLength(prefix) > 155) return null;
    if (Buffer.byteLength(name) <= 100 && name.length > 0) return [prefix, name];
  }
  return null;
}

/** A PAX record "<len> <key>=<value>\n" where <len> counts the whole record, itself included. */
function paxRecord(key, value) {
  const rest = ` ${key}=${value}\n`;
  const restLen = Buffer.byteLength(rest);
  let len = restLen + 1;
  while (String(len).length + restLen !== len) len = String(len).length + restLen;
  return `${len}${rest}`;
}

function asciiTail(s, max) { return s.length <= max ? s : s.slice(s.length - max); }

function putStr(b, off, width, s) {
  const bytes = Buffer.from(s);
  b.set(bytes.subarray(0, width), off);
}

/** Octal number, zero padded to width-1 digits, NUL terminated (ustar numeric field). */
function putOct(b, off, width, n) {
  putStr(b, off, width, n.toString(8).padStart(width - 1, "0") + "\0");
}
