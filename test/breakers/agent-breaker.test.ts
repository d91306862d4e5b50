import { EventEmitter } from "node:events";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createAgentBreaker, createBreakerClock } from "../../src/breakers/index.js";
import { createLogger } from "../../src/logging.js";

// Agent breakers share one clock for their rolling windows: opossum alone gives each
// breaker two intervals, which a coordinator with thousands of agents pays for while idle.

const logger = createLogger({ level: "silent" });
const failing = () => Promise.reject(new Error("no ack"));

describe("agent breakers on one clock", () => {
  afterEach(() => vi.restoreAllMocks());

  it("500 breakers start one interval, which is cleared when the last breaker shuts down", async () => {
    // Spies that call through: the real timers run; the test counts them.
    const started = vi.spyOn(globalThis, "setInterval");
    const cleared = vi.spyOn(globalThis, "clearInterval");
    const clock = createBreakerClock(10_000);
    const breakers = Array.from({ length: 500 }, (_, i) => createAgentBreaker(`a${i}`, { resetTimeoutMs: 30_000, errorThresholdPercentage: 50, volumeThreshold: 5, rollingCountTimeoutMs: 10_000 }, logger, () => {}, clock));
    // A breaker that has delivered nothing is closed and costs nothing: no window, no listener.
    expect(breakers.every((b) => b.state === "closed" && b.allows)).toBe(true);
    expect(started).not.toHaveBeenCalled();
    expect(clock.listenerCount("rotate")).toBe(0);
    for (const b of breakers) await b.fire(() => Promise.resolve());
    expect(started).toHaveBeenCalledTimes(1);
    expect(started.mock.calls[0]![1]).toBe(1000);
    expect(clock.listenerCount("rotate")).toBe(500);
    for (const b of breakers.slice(1)) b.shutdown();
    const interval = started.mock.results[0]!.value as NodeJS.Timeout;
    expect(cleared.mock.calls.filter(([t]) => t === interval)).toHaveLength(0);
    breakers[0]!.shutdown();
    expect(cleared.mock.calls.filter(([t]) => t === interval)).toHaveLength(1);
    expect(clock.listenerCount("rotate")).toBe(0);
  });

  it("shut down before its first delivery, refuses deliveries as a shut-down opossum breaker does", async () => {
    const breaker = createAgentBreaker("a", { resetTimeoutMs: 30_000, errorThresholdPercentage: 50, volumeThreshold: 5, rollingCountTimeoutMs: 10_000 }, logger, () => {}, createBreakerClock(10_000));
    breaker.shutdown();
    let sent = false;
    await expect(
      breaker.fire(async () => {
        sent = true;
      }),
    ).rejects.toMatchObject({ code: "ESHUTDOWN" });
    expect(sent).toBe(false);
  });

  it("failures leave the window as the shared clock turns it: old failures no longer open the breaker", async () => {
    // The clock is turned by the test (any EventEmitter will do): the window moves only when
    // told, so a slow machine cannot age the counts between two steps. Volume 3 at 50 %.
    const clock = new EventEmitter();
    const opts = { resetTimeoutMs: 3_600_000, errorThresholdPercentage: 50, volumeThreshold: 3, rollingCountTimeoutMs: 10_000 };
    const changes: string[] = [];
    const breaker = createAgentBreaker("a", opts, logger, (s) => changes.push(s), clock);
    try {
      for (let i = 0; i < 2; i++) await expect(breaker.fire(failing)).rejects.toThrow("no ack");
      expect(breaker.state).toBe("closed");
      // The whole window turns over: the two failures are forgotten.
      for (let i = 0; i < 10; i++) clock.emit("rotate");
      await breaker.fire(() => Promise.resolve());
      await breaker.fire(() => Promise.resolve());
      await expect(breaker.fire(failing)).rejects.toThrow("no ack");
      expect(breaker.state).toBe("closed");
      // Within one window, failures past the threshold open it.
      await expect(breaker.fire(failing)).rejects.toThrow("no ack");
      await expect(breaker.fire(failing)).rejects.toThrow("no ack");
      expect(breaker.state).toBe("open");
      expect(changes).toEqual(["open"]);
    } finally {
      breaker.shutdown();
    }
  });
});
