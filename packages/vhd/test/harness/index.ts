// The acceptance harness for @lcow/vhd images (test code only).
export * from "./exec.js";
export * from "./tmp.js";
export * from "./manifest.js";
export * from "./expected.js";
export * from "./e2fsck.js";
export * from "./loop.js";
export * from "./debugfs.js";
export * from "./vhd.js";
export * from "./standin.js";
export * from "./verify.js";
