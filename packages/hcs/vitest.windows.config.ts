import { defineConfig } from "vitest/config";

// Smoke tests for a real Windows host with Hyper-V (`pnpm --filter @lcow/hcs test:windows`).
// Kept out of the root config (which only picks up *.test.ts), so CI on Linux never runs them.
export default defineConfig({
  test: {
    root: import.meta.dirname,
    include: ["test/windows/**/*.smoke.ts"],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    pool: "forks",
  },
});
