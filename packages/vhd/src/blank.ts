// Blank filesystems: the ext4 inside a new container's sandbox.vhdx and a service VM's scratch
// disk. Only the root and lost+found exist; the rest is free space with free inodes, and the
// unused inode tables are holes, so a 20 GB filesystem costs a few MiB of writes.
import { randomBytes } from "node:crypto";
import { VhdError } from "./errors.js";
import { Ext4Writer } from "./ext4/writer.js";
import type { BlockSink } from "./io/sink.js";

export interface BlankExt4Options {
  /** Filesystem size in bytes (rounded down to 4 KiB blocks). */
  size: number;
  /** One inode per this many bytes, as mke2fs's default inode_ratio. If not provided, 16384. */
  bytesPerInode?: number;
  /** Filesystem UUID (16 bytes). If not provided, random. */
  uuid?: Uint8Array;
  /** Superblock time in seconds. If not provided, now. */
  timestamp?: number;
  /** Directories to create in the root (e.g. ["upper", "work"] for an overlay sandbox), mode 0755, root-owned. */
  directories?: string[];
}

/** Writes a blank ext4 filesystem of `options.size` bytes to `sink`; returns its size in bytes. */
export async function writeBlankExt4(sink: BlockSink, options: BlankExt4Options): Promise<number> {
  const size = Math.floor(options.size / 4096) * 4096;
  if (!Number.isSafeInteger(size) || size < 1 << 20) throw new VhdError("INVALID_ARGUMENT", `blank filesystem size ${options.size}: must be at least 1 MiB`);
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const writer = new Ext4Writer(sink, { maxDiskSize: size });
  for (const dir of options.directories ?? []) writer.mkdir([dir], { mode: 0o755, uid: 0, gid: 0, mtime: { sec: timestamp, nsec: 0 } });
  const { bytes } = await writer.close({
    uuid: options.uuid ?? new Uint8Array(randomBytes(16)),
    timestamp,
    minSize: size,
    bytesPerInode: options.bytesPerInode ?? 16384,
  });
  return bytes;
}
