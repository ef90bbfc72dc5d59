// tarsplit: what a layer tar held besides the file contents that live in the ext4 image, so
// that the exact tar can be given back (Docker's `diff` must reproduce the applied tar byte for
// byte: its digest is the layer's DiffID). The record is the tar as a sequence of segments:
// raw bytes (headers, pax records, padding, the trailer, data of entries the image does not
// keep) and references to byte ranges of the image where a file's data was written. It is
// deflated. The image must not be modified afterwards: a read-only layer never is.
//
// Format (after inflating): "LCOWTSP1", then segments, each a type byte and LEB128 numbers:
//   0x52 'R' <length> <bytes>        raw bytes
//   0x44 'D' <diskOffset> <length>   bytes of the image (ext4 disk offset)
//   0x45 'E' <totalLength>           end; the tar's length, checked when reproducing
import { createWriteStream, type WriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { createDeflateRaw, createInflateRaw, constants as zlibConstants } from "node:zlib";
import { createReadStream } from "node:fs";
import { VhdError } from "./errors.js";
import type { Extent } from "./format/extent.js";
import { openImage } from "./io/block-source.js";
import { ByteSource } from "./tar/byte-source.js";

const MAGIC = "LCOWTSP1";
const RAW = 0x52;
const DISK = 0x44;
const END = 0x45;
const BLOCK_SIZE = 4096;
/** Raw bytes are gathered up to this size per segment. */
const RAW_SEGMENT = 64 << 10;

function leb128(n: number): number[] {
  const out: number[] = [];
  let v = n;
  do {
    let byte = v % 128;
    v = Math.floor(v / 128);
    if (v > 0) byte |= 0x80;
    out.push(byte);
  } while (v > 0);
  return out;
}

/** Records a tar stream's split while the converter writes the image. */
export class TarSplitRecorder {
  private readonly deflate = createDeflateRaw({ level: zlibConstants.Z_BEST_SPEED, chunkSize: 1 << 20 });
  private readonly file: WriteStream;
  private readonly done: Promise<void>;
  private raw = new Uint8Array(RAW_SEGMENT);
  private rawFill = 0;
  /** Data ranges (logical offset, length) of the open file, resolved when it ends. */
  private pending: [number, number][] = [];
  private total = 0;
  private readonly tmp: string;

  constructor(private readonly path: string) {
    this.tmp = `${path}.${process.pid}.tmp`;
    this.file = createWriteStream(this.tmp, { flags: "w" });
    this.done = new Promise((resolve, reject) => {
      this.file.on("finish", resolve);
      this.file.on("error", reject);
      this.deflate.on("error", reject);
    });
    this.done.catch(() => {});
    this.deflate.pipe(this.file);
    this.deflate.write(Buffer.from(MAGIC, "latin1"));
  }

  /** Bytes of the tar kept as they are. */
  addRaw(bytes: Uint8Array): void {
    this.total += bytes.length;
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, this.raw.length - this.rawFill);
      this.raw.set(bytes.subarray(at, at + n), this.rawFill);
      this.rawFill += n;
      at += n;
      if (this.rawFill === this.raw.length) this.flushRaw();
    }
  }

  /** `length` bytes of the open file's data at logical byte `offset`, written to the image. */
  addData(offset: number, length: number): void {
    this.flushRaw();
    this.total += length;
    const last = this.pending[this.pending.length - 1];
    if (last && last[0] + last[1] === offset) last[1] += length;
    else this.pending.push([offset, length]);
  }

  /** The open file ended: its data ranges become image references through its extents. */
  resolveFile(extents: readonly Extent[]): void {
    for (const [offset, length] of this.pending) {
      let at = offset;
      const end = offset + length;
      for (const e of extents) {
        const eStart = e.logical * BLOCK_SIZE;
        const eEnd = (e.logical + e.len) * BLOCK_SIZE;
        if (eEnd <= at || eStart >= end) continue;
        const from = Math.max(at, eStart);
        const to = Math.min(end, eEnd);
        this.segment(DISK, [e.physical * BLOCK_SIZE + (from - eStart), to - from]);
        at = to;
      }
      if (at !== end) throw new VhdError("FORMAT_INVALID", `tarsplit: file data at ${at} has no block in the image`);
    }
    this.pending = [];
  }

  /** Writes the end record and renames the file into place. */
  async finish(): Promise<void> {
    this.flushRaw();
    this.segment(END, [this.total]);
    this.deflate.end();
    await this.done;
    await rename(this.tmp, this.path);
  }

  /** Drops a partial record. */
  async abort(): Promise<void> {
    this.deflate.destroy();
    this.file.destroy();
    await rm(this.tmp, { force: true });
  }

  private flushRaw(): void {
    if (this.rawFill === 0) return;
    this.deflate.write(Buffer.from([RAW, ...leb128(this.rawFill)]));
    this.deflate.write(this.raw.slice(0, this.rawFill));
    this.rawFill = 0;
  }

  private segment(type: number, numbers: number[]): void {
    this.deflate.write(Buffer.from([type, ...numbers.flatMap(leb128)]));
  }
}

/**
 * Gives back, byte for byte, the tar that `convertTar(..., { tarsplitPath })` turned into the
 * image at `imagePath`. A record that does not match the image (wrong length, references
 * outside it, a damaged record) is a FORMAT_INVALID error.
 */
export async function* reproduceTar(imagePath: string, tarsplitPath: string): AsyncGenerator<Uint8Array, void, undefined> {
  const image = await openImage(imagePath);
  const inflate = createInflateRaw({ chunkSize: 1 << 20 });
  const input = createReadStream(tarsplitPath).on("error", (err) => inflate.destroy(err));
  input.pipe(inflate);
  const src = new ByteSource(inflate as AsyncIterable<Uint8Array>);
  const bad = (what: string) => new VhdError("FORMAT_INVALID", `tarsplit ${tarsplitPath}: ${what}`, { path: tarsplitPath });
  const number = async (): Promise<number> => {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (!(await src.ensure(1))) throw bad("ends inside a number");
      const b = src.take(1)[0]!;
      value += (b & 0x7f) * scale;
      if (!(b & 0x80)) return value;
      scale *= 128;
    }
    throw bad("number too long");
  };
  try {
    if (!(await src.ensure(MAGIC.length)) || Buffer.from(src.take(MAGIC.length)).toString("latin1") !== MAGIC) throw bad("not a tarsplit record");
    let total = 0;
    for (;;) {
      if (!(await src.ensure(1))) throw bad("ends without its end record");
      const type = src.take(1)[0];
      if (type === RAW) {
        let left = await number();
        total += left;
        while (left > 0) {
          if (src.buffered === 0 && !(await src.pull())) throw bad("ends inside raw bytes");
          const piece = src.takeSome(left);
          left -= piece.length;
          yield Uint8Array.from(piece);
        }
      } else if (type === DISK) {
        const offset = await number();
        const length = await number();
        if (offset + length > image.source.size) throw bad(`reference ${offset}+${length} is outside the ${image.source.size}-byte image`);
        total += length;
        for (let at = 0; at < length; ) {
          const buf = new Uint8Array(Math.min(4 << 20, length - at));
          await image.source.read(buf, offset + at);
          at += buf.length;
          yield buf;
        }
      } else if (type === END) {
        const want = await number();
        if (want !== total) throw bad(`describes ${want} bytes but its segments hold ${total}`);
        return;
      } else {
        throw bad(`unknown segment type ${type}`);
      }
    }
  } catch (err) {
    if (err instanceof Error && !(err instanceof VhdError) && "code" in err) {
      if (String(err.code).startsWith("Z_")) throw bad(`damaged: ${err.message}`);
      throw new VhdError("IO", `reading tarsplit ${tarsplitPath}: ${err.message}`, { path: tarsplitPath, cause: err });
    }
    throw err;
  } finally {
    input.destroy();
    inflate.destroy();
    await image.source.close().catch(() => {});
  }
}
