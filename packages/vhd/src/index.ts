export type { ConvertOptions, ConvertSummary, ConvertWarning } from "./api.js";
export { VhdError, VhdErrorCode, InvariantError, isVhdError } from "./errors.js";
export { convertTar } from "./convert.js";
