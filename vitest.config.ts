import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real servers and child processes: two cores, so two files at a time.
    pool: "forks",
    maxWorkers: 2,
    reporters: ["default", "junit"],
    outputFile: { junit: ".baton-tmp/junit.xml" },
  },
});
