// @lcow/gcs-client: the host side of the GCS bridge protocol.
export * from "./protocol/index.js";
