// tar stream -> ext4: maps each tar entry onto the ext4 writer in one pass, applying what a
// container runtime applies when it extracts a layer: names normalised inside the root, the
// last of repeated entries wins, and OCI whiteouts become overlayfs whiteouts.
import { createHash } from "node:crypto";
import type { ConvertOptions, ConvertWarning } from "./api.js";
import { isVhdError, VhdError } from "./errors.js";
import { Ext4Writer, type NodeMeta } from "./ext4/writer.js";
import type { Ext4Time } from "./format/inode.js";
import { vfsAclToExt4 } from "./format/posix-acl.js";
import type { Xattr } from "./format/xattr.js";
import type { BlockSink } from "./io/sink.js";
import { display, TarReader, type TarEntry } from "./tar/reader.js";
import type { TarSplitRecorder } from "./tarsplit.js";

/** The converter's options (see `ConvertOptions`) less the container choice, plus sizing. */
export interface TarToExt4Options extends Omit<ConvertOptions, "vhd" | "tarsplitPath"> {
  /** Records the tar's split (see tarsplit.ts) while converting. */
  tarsplit?: TarSplitRecorder;
  /** Enlarges the filesystem size (bytes) at close, e.g. to a CHS-exact VHD size. */
  roundSize?: (bytes: number) => number;
}

export interface TarToExt4Result {
  entries: Record<string, number>;
  bytesIn: number;
  ext4Bytes: number;
  uuid: Uint8Array;
  timestamp: number;
}

const OPAQUE_NAME = ".wh..wh..opq";
const WHITEOUT_PREFIX = ".wh.";
/** Progress is reported at most once per this many input bytes. */
const PROGRESS_STEP = 4 << 20;

/**
 * Reads a plain tar from `source` and writes an ext4 filesystem to `sink` (offset 0 onwards).
 * Resolves with what was written; rejects with a VhdError naming the entry and its offset.
 */
export async function tarToExt4(source: AsyncIterable<Uint8Array>, sink: BlockSink, options: TarToExt4Options = {}): Promise<TarToExt4Result> {
  const warn = (w: ConvertWarning) => {
    if (options.strict) throw new VhdError("STRICT", `${w.message} (strict mode)`, { path: w.path });
    options.onWarning?.(w);
  };
  // The UUID default is a digest of every header: cheap (no file data) and deterministic.
  const digest = createHash("sha256");
  const split = options.tarsplit;
  const reader = new TarReader(source, { onWarning: warn, onHeaderBytes: (b) => digest.update(b), onRawBytes: split ? (b) => split.addRaw(b) : undefined });
  /** Accounts for file data handed to the writer: inline data stays raw in the split, the rest is referenced. */
  const splitData = split
    ? (offset: number, chunk: Uint8Array) => (writer.openFileIsInline ? split.addRaw(chunk) : split.addData(offset, chunk.length))
    : undefined;
  const endFile = (): Promise<void> | undefined => {
    const pending = writer.endFile();
    split?.resolveFile(writer.lastFileExtents());
    return pending;
  };
  const writer = new Ext4Writer(sink, { maxDiskSize: options.maxDiskSize, inlineData: options.inlineData });
  const maxDiskSize = options.maxDiskSize ?? 128 * 2 ** 30;
  const counts: Record<string, number> = {};
  const count = (kind: string) => {
    counts[kind] = (counts[kind] ?? 0) + 1;
  };
  let newest = 0;
  let lastProgress = 0;

  try {
    const signal = options.signal;
    const checkAbort = () => {
      if (signal?.aborted) throw new VhdError("ABORTED", "conversion aborted", { offset: reader.position });
    };
    for (;;) {
      let entry = reader.nextBuffered();
      if (entry === undefined) entry = await reader.next();
      if (entry === null) break;
      checkAbort();
      if (entry.mtime.sec > newest) newest = entry.mtime.sec;
      try {
        const pending = applyEntry(entry);
        if (pending) await pending;
      } catch (err) {
        throw withEntryContext(err, entry);
      }
      if (options.onProgress && reader.position - lastProgress >= PROGRESS_STEP) {
        lastProgress = reader.position;
        options.onProgress(reader.position);
      }
    }
  } catch (err) {
    await reader.close().catch(() => {});
    throw err;
  }
  options.onProgress?.(reader.position);

  const uuid = options.uuid !== undefined ? parseUuid(options.uuid) : uuidFromDigest(digest.digest());
  const timestamp = options.timestamp ?? newest;
  const { bytes } = await writer.close({ uuid, timestamp, roundSize: options.roundSize });
  return { entries: counts, bytesIn: reader.position, ext4Bytes: bytes, uuid, timestamp };

  /** Applies one entry; returns a promise only when it had to wait (I/O), so small entries cost no await. */
  function applyEntry(entry: TarEntry): Promise<void> | undefined {
    const path = normalizePath(entry.path, entry, warn);
    const name = path[path.length - 1];
    const meta: NodeMeta = {
      mode: entry.mode,
      uid: entry.uid,
      gid: entry.gid,
      mtime: entry.mtime as Ext4Time,
      atime: entry.atime,
      ctime: entry.ctime,
      xattrs: convertXattrs(entry.xattrs, entry.path),
    };
    if (!options.keepWhiteouts && name !== undefined && name.startsWith(WHITEOUT_PREFIX)) {
      const parent = path.slice(0, -1);
      if (name === OPAQUE_NAME) {
        writer.ensureDir(parent);
        writer.setXattr(parent, "trusted.overlay.opaque", OPAQUE_VALUE);
        count("opaque");
      } else if (name.startsWith(WHITEOUT_PREFIX + WHITEOUT_PREFIX)) {
        // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless for overlayfs, as in Docker.
        warn({ code: "TAR_AUFS_METADATA", message: `ignoring AUFS metadata entry ${JSON.stringify(display(entry.path))}`, path: display(entry.path) });
      } else {
        // An overlayfs whiteout is a character device 0/0 with the hidden name.
        writer.mknod([...parent, name.slice(WHITEOUT_PREFIX.length)], "char", meta, 0, 0);
        count("whiteout");
      }
      return;
    }
    switch (entry.type) {
      case "dir":
        writer.mkdir(path, meta);
        count("directory");
        return;
      case "file":
        if (entry.size > maxDiskSize) {
          throw new VhdError("EXT4_DISK_FULL", `file of ${entry.size} bytes cannot fit the maximum disk size of ${maxDiskSize} bytes`);
        }
        writer.createFile(path, meta, entry.size, entry.sparse !== undefined);
        count("file");
        return entry.sparse ? writeSparse(entry) : writeContiguous();
      case "hardlink":
        writer.link(normalizePath(entry.linkname, entry, warn), path);
        count("hardlink");
        return;
      case "symlink":
        count("symlink");
        return writer.symlink(path, entry.linkname, meta);
      case "char":
      case "block":
      case "fifo":
        writer.mknod(path, entry.type, meta, entry.devmajor, entry.devminor);
        count(entry.type);
        return;
    }
  }

  /** Streams the current entry's data into the open file, awaiting only when it must. */
  function writeContiguous(): Promise<void> | undefined {
    let offset = 0;
    const asyncRest = async (): Promise<void> => {
      for (let chunk = await reader.read(); chunk; chunk = await reader.read()) {
        if (options.signal?.aborted) throw new VhdError("ABORTED", "conversion aborted");
        splitData?.(offset, chunk);
        offset += chunk.length;
        await writer.write(chunk);
      }
      await endFile();
    };
    for (;;) {
      const chunk = reader.readBuffered();
      if (chunk === undefined) return asyncRest();
      if (chunk === null) return endFile();
      splitData?.(offset, chunk);
      offset += chunk.length;
      const pending = writer.write(chunk);
      if (pending) return pending.then(asyncRest);
    }
  }

  async function writeSparse(entry: TarEntry): Promise<void> {
    for (const region of entry.sparse ?? []) {
      let at = region.offset;
      const end = region.offset + region.length;
      while (at < end) {
        const chunk = await reader.read(end - at);
        if (!chunk) throw new VhdError("TAR_TRUNCATED", "data ended inside a sparse region");
        splitData?.(at, chunk);
        await writer.writeAt(at, chunk);
        at += chunk.length;
      }
    }
    await endFile();
  }
}

const OPAQUE_VALUE = new Uint8Array([0x79]); // "y"

/**
 * Splits a tar name into components inside the root: leading "/" and "./" dropped, "." and
 * empty components skipped, ".." resolved. A name that climbs out of the root is an error.
 */
export function normalizePath(raw: string, entry: Pick<TarEntry, "path" | "headerOffset">, warn?: (w: ConvertWarning) => void): string[] {
  // Most names are already clean ("usr/lib/x", maybe "./" in front or "/" behind): split them as they are.
  let clean = raw.startsWith("./") ? raw.slice(2) : raw;
  if (clean.endsWith("/")) clean = clean.slice(0, -1);
  if (clean !== "" && clean[0] !== "/" && !clean.includes("//") && !clean.includes("/.") && !clean.startsWith(".")) return clean.split("/");
  const out: string[] = [];
  if (raw.startsWith("/") && warn) {
    warn({ code: "TAR_ABSOLUTE_PATH", message: `absolute name ${JSON.stringify(display(raw))} taken relative to the root`, path: display(raw) });
  }
  for (const part of raw.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length === 0) {
        throw new VhdError("TAR_ENTRY_INVALID", `name ${JSON.stringify(display(raw))} escapes the root`, { path: display(entry.path), offset: entry.headerOffset });
      }
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out;
}

function convertXattrs(xattrs: Xattr[], path: string): Xattr[] {
  if (xattrs.length === 0) return xattrs;
  return xattrs.map((x) =>
    x.name === "system.posix_acl_access" || x.name === "system.posix_acl_default" ? { name: x.name, value: vfsAclToExt4(x.value, display(path)) } : x,
  );
}

function withEntryContext(err: unknown, entry: TarEntry): unknown {
  const where = `tar entry ${JSON.stringify(display(entry.path))} at offset ${entry.headerOffset}`;
  if (isVhdError(err)) {
    if (err.message.startsWith("tar ") || err.message.startsWith("pax ")) return err;
    return new VhdError(err.code, `${where}: ${err.message}`, { path: display(entry.path), offset: entry.headerOffset, cause: err });
  }
  return err;
}

/** A name-based (version 5 style) UUID from a digest of the input. */
function uuidFromDigest(d: Uint8Array): Uint8Array {
  const u = d.slice(0, 16);
  u[6] = (u[6]! & 0x0f) | 0x50;
  u[8] = (u[8]! & 0x3f) | 0x80;
  return u;
}

function parseUuid(text: string): Uint8Array {
  const hex = text.replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new VhdError("INVALID_ARGUMENT", `uuid ${JSON.stringify(text)} is not 32 hex digits`);
  return Uint8Array.from(Buffer.from(hex, "hex"));
}
