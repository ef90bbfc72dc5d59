// Linear ext4 directory entries (struct ext4_dir_entry_2): inode, rec_len, name_len, file_type,
// then the name padded to 4 bytes. The last entry of a block stretches to the block's end.
import { VhdError } from "../errors.js";
import { copyBytes } from "./bytes.js";

/** file_type values of ext4_dir_entry_2 (the `filetype` feature). */
export const DirentType = {
  UNKNOWN: 0,
  REG_FILE: 1,
  DIR: 2,
  CHRDEV: 3,
  BLKDEV: 4,
  FIFO: 5,
  SOCK: 6,
  SYMLINK: 7,
} as const;

export const DIRENT_HEADER_SIZE = 8;
export const EXT4_NAME_LEN = 255;

export interface Dirent {
  inode: number;
  /** Raw name bytes (a Linux name is bytes, not necessarily UTF-8). */
  name: Uint8Array;
  fileType: number;
}

/** Bytes an entry with a name of `nameLen` bytes needs (header + name, rounded up to 4). */
export function direntSize(nameLen: number): number {
  return (DIRENT_HEADER_SIZE + nameLen + 3) & ~3;
}

/** Writes one entry at `offset` with the given rec_len (>= direntSize(name.length)). */
export function encodeDirentInto(d: Dirent, recLen: number, out: Uint8Array, offset: number): void {
  const v = new DataView(out.buffer, out.byteOffset + offset, DIRENT_HEADER_SIZE);
  v.setUint32(0, d.inode, true); // inode
  v.setUint16(4, recLen, true); // rec_len
  out[offset + 6] = d.name.length; // name_len
  out[offset + 7] = d.fileType; // file_type
  out.set(d.name, offset + DIRENT_HEADER_SIZE);
}

/**
 * Packs entries into directory blocks, in order, never splitting an entry across blocks.
 * Returns the blocks concatenated (a multiple of `blockSize`, at least one block).
 */
export function encodeDirBlocks(entries: readonly Dirent[], blockSize: number): Uint8Array {
  let blocks = 1;
  let used = 0;
  for (const d of entries) {
    const need = direntSize(d.name.length);
    if (used + need > blockSize) {
      blocks++;
      used = 0;
    }
    used += need;
  }
  const out = new Uint8Array(blocks * blockSize);
  const view = new DataView(out.buffer);
  let blockStart = 0;
  let at = 0;
  let prev = -1;
  for (const d of entries) {
    const need = direntSize(d.name.length);
    if (at + need > blockStart + blockSize) {
      // Close the block: the previous entry's rec_len runs to the block's end.
      view.setUint16(prev + 4, blockStart + blockSize - prev, true);
      blockStart += blockSize;
      at = blockStart;
    }
    view.setUint32(at, d.inode, true); // inode
    view.setUint16(at + 4, need, true); // rec_len
    out[at + 6] = d.name.length; // name_len
    out[at + 7] = d.fileType; // file_type
    out.set(d.name, at + DIRENT_HEADER_SIZE);
    prev = at;
    at += need;
  }
  if (prev >= 0) view.setUint16(prev + 4, blockStart + blockSize - prev, true);
  return out;
}

/** Decodes the entries of one directory block, skipping deleted (inode 0) slots. */
export function decodeDirBlock(block: Uint8Array, blockOffsetForErrors = 0): Dirent[] {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const out: Dirent[] = [];
  let at = 0;
  while (at < block.length) {
    if (at + DIRENT_HEADER_SIZE > block.length) {
      throw new VhdError("FORMAT_INVALID", `directory entry at ${blockOffsetForErrors + at}: header crosses the block end`);
    }
    const inode = v.getUint32(at, true);
    const recLen = v.getUint16(at + 4, true);
    const nameLen = block[at + 6] ?? 0;
    if (recLen < DIRENT_HEADER_SIZE || recLen % 4 !== 0 || at + recLen > block.length || DIRENT_HEADER_SIZE + nameLen > recLen) {
      throw new VhdError("FORMAT_INVALID", `directory entry at ${blockOffsetForErrors + at}: bad rec_len ${recLen} (name_len ${nameLen})`);
    }
    if (inode !== 0) {
      out.push({ inode, fileType: block[at + 7] ?? 0, name: copyBytes(block, at + DIRENT_HEADER_SIZE, at + DIRENT_HEADER_SIZE + nameLen) });
    }
    at += recLen;
  }
  return out;
}
