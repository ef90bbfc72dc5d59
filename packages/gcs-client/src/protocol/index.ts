// The GCS bridge wire format, shared by the host client and by guests (apps/guest): message
// identifiers, the frame header, framing, payload types and builders, HRESULTs, constants.
export * from "./message-type.js";
export * from "./header.js";
export * from "./frame.js";
export * from "./messages.js";
export * from "./hresult.js";
export * from "./constants.js";
export { GcsError, GcsErrorCode, isGcsError, toGcsError, type GcsErrorRecord, type GcsErrorDetails } from "../errors.js";
