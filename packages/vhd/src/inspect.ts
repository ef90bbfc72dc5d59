// `inspect`: what a disk image is and holds — container fields, ext4 geometry and features,
// usage, entries per type and the largest files — from one walk with bounded memory.
import { Ext4Reader } from "./ext4/reader.js";
import { FileMode } from "./format/inode.js";
import { CompatFeature, IncompatFeature, RoCompatFeature } from "./format/superblock.js";
import { VHD_EPOCH_OFFSET } from "./format/vhd-footer.js";
import { openImage, type ImageFormat } from "./io/block-source.js";
import { VhdxSource } from "./vhdx/reader.js";

export interface ImageInspection {
  path: string;
  container: {
    format: ImageFormat;
    fileSize: number;
    diskSize: number;
    /** For VHD: the footer's fields. */
    vhd?: { creatorApplication: string; creatorHostOs: string; created: string; currentSize: number; geometry: { cylinders: number; heads: number; sectorsPerTrack: number }; uniqueId: string };
    /** For VHDX: the file's parameters and allocation. */
    vhdx?: {
      /** Creator string of the file type identifier. */
      creator: string;
      /** Payload block size in bytes. */
      blockSize: number;
      logicalSectorSize: number;
      physicalSectorSize: number;
      /** The Page 83 Virtual Disk ID, when present. */
      diskId: string | null;
      /** Payload blocks in state FULLY_PRESENT, of `totalBlocks`. */
      allocatedBlocks: number;
      totalBlocks: number;
      /** Which header copy is in force (1: at 64 KiB, 2: at 128 KiB), and its sequence number. */
      header: number;
      sequenceNumber: string;
      /** Log entries replayed in memory at open (0 when the log was empty). */
      replayedLogEntries: number;
    };
    notes: string[];
  };
  ext4: {
    uuid: string;
    volumeName: string;
    blockSize: number;
    inodeSize: number;
    blocksCount: number;
    freeBlocks: number;
    inodesCount: number;
    freeInodes: number;
    groups: number;
    features: string[];
    created: string | null;
    written: string | null;
  };
  /** Entries by type (file, directory, symlink, char, block, fifo, socket; whiteout for 0/0 char devices). */
  entries: Record<string, number>;
  /** Bytes of regular-file content (apparent sizes). */
  contentBytes: number;
  /** The largest regular files, biggest first. */
  largest: { path: string; size: number }[];
}

const FEATURES: [string, number, Record<number, string>][] = [
  ["compat", 0, { [CompatFeature.HAS_JOURNAL]: "has_journal", [CompatFeature.EXT_ATTR]: "ext_attr", [CompatFeature.RESIZE_INODE]: "resize_inode", [CompatFeature.DIR_INDEX]: "dir_index", [CompatFeature.SPARSE_SUPER2]: "sparse_super2", [CompatFeature.DIR_PREALLOC]: "dir_prealloc" }],
  ["incompat", 1, { [IncompatFeature.FILETYPE]: "filetype", [IncompatFeature.RECOVER]: "needs_recovery", [IncompatFeature.META_BG]: "meta_bg", [IncompatFeature.EXTENTS]: "extent", [IncompatFeature.BIT64]: "64bit", [IncompatFeature.MMP]: "mmp", [IncompatFeature.FLEX_BG]: "flex_bg", [IncompatFeature.EA_INODE]: "ea_inode", [IncompatFeature.CSUM_SEED]: "metadata_csum_seed", [IncompatFeature.LARGEDIR]: "large_dir", [IncompatFeature.INLINE_DATA]: "inline_data", [IncompatFeature.ENCRYPT]: "encrypt", [IncompatFeature.CASEFOLD]: "casefold" }],
  ["ro_compat", 2, { [RoCompatFeature.SPARSE_SUPER]: "sparse_super", [RoCompatFeature.LARGE_FILE]: "large_file", [RoCompatFeature.HUGE_FILE]: "huge_file", [RoCompatFeature.GDT_CSUM]: "uninit_bg", [RoCompatFeature.DIR_NLINK]: "dir_nlink", [RoCompatFeature.EXTRA_ISIZE]: "extra_isize", [RoCompatFeature.QUOTA]: "quota", [RoCompatFeature.BIGALLOC]: "bigalloc", [RoCompatFeature.METADATA_CSUM]: "metadata_csum", [RoCompatFeature.READONLY]: "read-only", [RoCompatFeature.PROJECT]: "project", [RoCompatFeature.ORPHAN_PRESENT]: "orphan_present" }],
];

/** Inspects an image (raw, fixed VHD or VHDX). `largest` sets how many big files to list (default 10). */
export async function inspectImage(path: string, options: { largest?: number } = {}): Promise<ImageInspection> {
  const image = await openImage(path);
  try {
    const reader = await Ext4Reader.open(image.source);
    const sb = reader.superblock;
    const features: string[] = [];
    const words = [sb.featureCompat, sb.featureIncompat, sb.featureRoCompat];
    for (const [kind, index, names] of FEATURES) {
      let rest = words[index]!;
      for (const [bit, name] of Object.entries(names)) {
        if (rest & Number(bit)) {
          features.push(name);
          rest &= ~Number(bit);
        }
      }
      // Bits we have no name for are still shown, as the kind and the bit.
      for (let b = 0; b < 32; b++) if (rest & (1 << b)) features.push(`${kind}_0x${((1 << b) >>> 0).toString(16)}`);
    }
    const entries: Record<string, number> = {};
    const largest: { path: string; size: number }[] = [];
    const keep = options.largest ?? 10;
    let contentBytes = 0;
    const visited = new Set<number>();
    const stack: { ino: number; path: string }[] = [{ ino: reader.root, path: "" }];
    while (stack.length > 0) {
      const { ino, path: dirPath } = stack.pop()!;
      if (visited.has(ino)) continue;
      visited.add(ino);
      const dir = await reader.readInode(ino);
      for (const e of await reader.readDir(ino, dir)) {
        const inode = await reader.readInode(e.ino);
        const type = inode.mode & FileMode.S_IFMT;
        const childPath = `${dirPath}/${Buffer.from(e.name, "latin1").toString("utf8")}`;
        let kind: string;
        switch (type) {
          case FileMode.S_IFDIR:
            kind = "directory";
            stack.push({ ino: e.ino, path: childPath });
            break;
          case FileMode.S_IFREG:
            kind = "file";
            contentBytes += inode.size;
            if (largest.length < keep || inode.size > largest[largest.length - 1]!.size) {
              largest.push({ path: childPath, size: inode.size });
              largest.sort((a, b) => b.size - a.size || (a.path < b.path ? -1 : 1));
              if (largest.length > keep) largest.pop();
            }
            break;
          case FileMode.S_IFLNK:
            kind = "symlink";
            break;
          case FileMode.S_IFCHR: {
            const { major, minor } = reader.device(inode);
            kind = major === 0 && minor === 0 ? "whiteout" : "char";
            break;
          }
          case FileMode.S_IFBLK:
            kind = "block";
            break;
          case FileMode.S_IFIFO:
            kind = "fifo";
            break;
          default:
            kind = "socket";
        }
        entries[kind] = (entries[kind] ?? 0) + 1;
      }
    }
    const time = (t: number) => (t > 0 ? new Date(t * 1000).toISOString() : null);
    const f = image.footer;
    return {
      path,
      container: {
        format: image.format,
        fileSize: image.fileSize,
        diskSize: image.source.size,
        ...(f
          ? {
              vhd: {
                creatorApplication: f.creatorApplication,
                creatorHostOs: f.creatorHostOs,
                created: new Date((f.timestamp + VHD_EPOCH_OFFSET) * 1000).toISOString(),
                currentSize: f.currentSize,
                geometry: f.geometry,
                uniqueId: Buffer.from(f.uniqueId).toString("hex"),
              },
            }
          : {}),
        ...(image.source instanceof VhdxSource ? { vhdx: vhdxFields(image.source) } : {}),
        notes: image.notes,
      },
      ext4: {
        uuid: formatUuid(sb.uuid),
        volumeName: sb.volumeName,
        blockSize: reader.blockSize,
        inodeSize: reader.inodeSize,
        blocksCount: sb.blocksCount,
        freeBlocks: sb.freeBlocksCount,
        inodesCount: sb.inodesCount,
        freeInodes: sb.freeInodesCount,
        groups: reader.groups,
        features,
        created: time(sb.mkfsTime),
        written: time(sb.wtime),
      },
      entries,
      contentBytes,
      largest,
    };
  } finally {
    await image.source.close().catch(() => {});
  }
}

function vhdxFields(source: VhdxSource): NonNullable<ImageInspection["container"]["vhdx"]> {
  const i = source.info;
  return {
    creator: i.creator,
    blockSize: i.fileParameters.blockSize,
    logicalSectorSize: i.logicalSectorSize,
    physicalSectorSize: i.physicalSectorSize,
    diskId: i.virtualDiskId ?? null,
    allocatedBlocks: i.allocatedBlocks,
    totalBlocks: i.geometry.dataBlocksCount,
    header: i.headerIndex + 1,
    sequenceNumber: i.header.sequenceNumber.toString(),
    replayedLogEntries: i.replayedLogEntries,
  };
}

function formatUuid(u: Uint8Array): string {
  const h = Buffer.from(u).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
