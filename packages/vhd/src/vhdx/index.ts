// VHDX (MS-VHDX): dynamic disks read as a BlockSource and written through a BlockSink.
export { openVhdxSource, VhdxSource, type VhdxInfo } from "./reader.js";
export { createVhdx, VhdxSink, type CreateVhdxOptions } from "./writer.js";
export { findActiveSequence, type VhdxActiveSequence } from "./log-replay.js";
