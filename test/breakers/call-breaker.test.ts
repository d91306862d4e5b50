import { describe, expect, it } from "vitest";
import { createCallBreaker } from "../../src/breakers/index.js";
import { BatonError, Code } from "../../src/errors.js";
import { createLogger } from "../../src/logging.js";

// The breaker in front of a remote participant (Resource Manager, Performance Monitor).

describe("call breaker", () => {
  it("opens after the peer fails, fails fast while open, and reset() closes it at once for a new instance", async () => {
    const breaker = createCallBreaker("resource-manager", createLogger({ level: "silent" }), { resetTimeoutMs: 3_600_000, volumeThreshold: 2 });
    try {
      const down = () => Promise.reject(new BatonError(Code.UNAVAILABLE, "connection refused"));
      for (let i = 0; i < 3; i++) await expect(breaker.call(down)).rejects.toThrow();
      expect(breaker.state).toBe("open");
      let ran = false;
      await expect(breaker.call(async () => (ran = true))).rejects.toThrow(/open/i);
      expect(ran).toBe(false);
      // Another instance took over: its calls do not wait out the first one's reset timeout.
      breaker.reset();
      expect(breaker.state).toBe("closed");
      expect(await breaker.call(async () => "answered")).toBe("answered");
    } finally {
      breaker.shutdown();
    }
  });

  it("reset() forgets the failures it counted: after 6 failures, reset, 2 successes and 1 failure it stays closed", async () => {
    // Default settings (volume 5, 50 %): the counts of the instance that failed must not carry over to its successor.
    const breaker = createCallBreaker("resource-manager", createLogger({ level: "silent" }), { resetTimeoutMs: 3_600_000 });
    try {
      const down = () => Promise.reject(new BatonError(Code.UNAVAILABLE, "connection refused"));
      for (let i = 0; i < 6; i++) await expect(breaker.call(down)).rejects.toThrow();
      expect(breaker.state).toBe("open");
      breaker.reset();
      for (let i = 0; i < 2; i++) expect(await breaker.call(async () => "answered")).toBe("answered");
      await expect(breaker.call(down)).rejects.toThrow(/connection refused/);
      expect(breaker.state).toBe("closed");
      expect(await breaker.call(async () => "still answered")).toBe("still answered");
    } finally {
      breaker.shutdown();
    }
  });

  it("does not count the caller's own mistakes against the peer", async () => {
    const breaker = createCallBreaker("performance-monitor", createLogger({ level: "silent" }), { resetTimeoutMs: 3_600_000, volumeThreshold: 2 });
    try {
      for (let i = 0; i < 5; i++) await expect(breaker.call(() => Promise.reject(new BatonError(Code.INVALID_ARGUMENT, "bad window")))).rejects.toThrow(/bad window/);
      expect(breaker.state).toBe("closed");
    } finally {
      breaker.shutdown();
    }
  });
});
