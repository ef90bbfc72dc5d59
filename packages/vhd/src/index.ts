export type { ConvertOptions, ConvertSummary, ConvertWarning } from "./api.js";
export { VhdError, VhdErrorCode, InvariantError, isVhdError } from "./errors.js";
export { convertTar } from "./convert.js";
export { readFileChunks, type FileChunksOptions } from "./io/file-source.js";
export { decompressAuto, detectCompression, type Compression } from "./compression.js";
export { exportImage, type ExportImageOptions } from "./export.js";
export { ext4ToTar, type ExportOptions, type ExportSummary } from "./ext4-to-tar.js";
export { Ext4Reader, type DataRun, type DirEntry } from "./ext4/reader.js";
export { openImage, FileBlockSource, type BlockSource, type ImageFormat, type OpenedImage } from "./io/block-source.js";
export type { BlockSink } from "./io/sink.js";
export { inspectImage, type ImageInspection } from "./inspect.js";
export { writeBlankExt4, type BlankExt4Options } from "./blank.js";
export { createVhdx, openVhdxSource, VhdxSource, type CreateVhdxOptions, type VhdxInfo, type VhdxSink } from "./vhdx/index.js";
export {
  checkExt4,
  checkImage,
  FindingCode,
  type CheckOptions,
  type CheckReport,
  type CheckStats,
  type Finding,
  type FindingSeverity,
  type ImageCheckReport,
} from "./ext4/check.js";
export {
  createSandbox,
  SandboxCache,
  DEFAULT_SANDBOX_SIZE,
  MIN_SANDBOX_SIZE,
  MAX_SANDBOX_SIZE,
  SANDBOX_DIRECTORIES,
  type CreateSandboxOptions,
  type SandboxSummary,
  type SandboxKind,
  type SandboxCacheOptions,
  type SandboxCopy,
  type CopyMethod,
} from "./sandbox.js";
export { reproduceTar } from "./tarsplit.js";
