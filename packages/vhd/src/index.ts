export type { ConvertOptions, ConvertSummary, ConvertWarning } from "./api.js";
export { VhdError, VhdErrorCode, InvariantError, isVhdError } from "./errors.js";
export { convertTar } from "./convert.js";
export { readFileChunks, type FileChunksOptions } from "./io/file-source.js";
export { decompressAuto, detectCompression, type Compression } from "./compression.js";
