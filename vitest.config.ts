import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Generous: on a loaded 2-core machine a test with real processes can take minutes; tests wait on events, so a passing one never waits this long.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Real servers and child processes: two cores, so two files at a time.
    pool: "forks",
    maxWorkers: 2,
    reporters: ["default", "junit"],
    outputFile: { junit: ".baton-tmp/junit.xml" },
  },
});
