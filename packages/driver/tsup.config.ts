import { defineConfig } from "tsup";

export default defineConfig({
  // `kernel` is the `@lcow/driver/kernel` subpath: the kernel mounter and its per-disk primitives.
  entry: { index: "src/index.ts", kernel: "src/mounters/kernel/index.ts" },
  format: ["esm"],
  dts: true,
  sourcemap: true,
  clean: true,
  target: "node20",
});
