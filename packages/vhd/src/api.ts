// Public contract of the converter. Implementation lives in convert.ts.

/** A quirk of the input that we tolerate (unless `strict`), reported with a stable code. */
export interface ConvertWarning {
  code: string;
  message: string;
  /** The tar entry the warning is about, normalised (no leading `/` or `./`). */
  path?: string;
}

export interface ConvertOptions {
  /**
   * The image's container: "vhd" (the ext4 filesystem followed by a 512-byte fixed VHD footer,
   * Docker's layer.vhd), "raw" (the filesystem alone) or "vhdx" (a dynamic VHDX, 1 MiB blocks,
   * whose virtual disk is the filesystem; its GUIDs derive from the filesystem UUID). If not
   * provided, "raw" when `vhd` is false, else "vhd".
   */
  format?: "vhd" | "raw" | "vhdx";
  /** Append a 512-byte fixed VHD footer after the ext4 image; `false` means `format: "raw"`. Ignored when `format` is given. If not provided, true. */
  vhd?: boolean;
  /** Keep OCI whiteouts (`.wh.<name>`, `.wh..wh..opq`) as plain files instead of converting them to overlay whiteouts. If not provided, false. */
  keepWhiteouts?: boolean;
  /** Store file contents of at most 60 bytes inside the inode (`inline_data` feature). If not provided, false. */
  inlineData?: boolean;
  /** Largest image the layer may grow to, in bytes; also sizes the group descriptor table. If not provided, 128 GiB. */
  maxDiskSize?: number;
  /** Filesystem UUID. If not provided, derived from the input so output is deterministic. */
  uuid?: string;
  /** Seconds since the epoch stamped into the superblock and VHD footer. If not provided, the newest mtime in the input (0 when empty). */
  timestamp?: number;
  /**
   * Flush the image to stable storage before renaming it into place, so that a crash never
   * leaves a renamed but incomplete file. If not provided, false: like `cp` and `tar`, lcow
   * leaves durability to the caller (a layer store turns this on).
   */
  fsync?: boolean;
  /**
   * Also write a tarsplit record here (temporary name, renamed on success), from which
   * `reproduceTar` gives back the exact input tar. If not provided, none is written.
   */
  tarsplitPath?: string;
  /** Turn tolerated quirks (warnings) into errors. If not provided, false. */
  strict?: boolean;
  /** Called with every warning; if not provided, warnings are dropped. */
  onWarning?: (warning: ConvertWarning) => void;
  /** Aborts the conversion: it then rejects with code ABORTED and leaves no file behind. */
  signal?: AbortSignal;
  /** Called now and then with the number of tar bytes consumed so far. */
  onProgress?: (bytesIn: number) => void;
}

/** What a conversion did. */
export interface ConvertSummary {
  /** The container written (always set by `convertTar`; optional only so older hand-made summaries still type-check). */
  format?: "vhd" | "raw" | "vhdx";
  /** Entries written, by type: file, directory, symlink, hardlink, char, block, fifo, whiteout, opaque. */
  entries: Record<string, number>;
  /** Bytes of tar consumed (after decompression). */
  bytesIn: number;
  /** Size of the ext4 filesystem in bytes. */
  ext4Bytes: number;
  /** Size of the output file in bytes (ext4 plus the VHD footer; for VHDX, the file's length, mostly holes). */
  imageBytes: number;
}
