export * from "./v2.js";
export * from "./lcow.js";
export * from "./modify.js";
export * from "./v1.js";
