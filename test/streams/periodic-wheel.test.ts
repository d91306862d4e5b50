import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { PeriodicWheel } from "../../src/streams/index.js";

describe("a periodic wheel", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("calls each of 1,000 members once a period, from at most 50 wake-ups a period, whenever they joined", () => {
    const wheel = new PeriodicWheel(5000);
    const calls = new Map<number, number[]>();
    const wakeUps = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      // Members join spread over a period, as agents connect.
      vi.advanceTimersByTime(5);
      const joinedAt = Date.now();
      calls.set(i, []);
      wheel.join(() => {
        calls.get(i)!.push(Date.now() - joinedAt);
        wakeUps.add(Date.now());
      });
    }
    const start = Date.now();
    vi.advanceTimersByTime(20_000);
    for (const [, at] of calls) {
      // The first a period after joining, give or take a slot (100 ms), then a period apart.
      expect(at[0]).toBeGreaterThan(5000 - 100);
      expect(at[0]).toBeLessThanOrEqual(5000);
      for (let k = 1; k < at.length; k++) expect(at[k]! - at[k - 1]!).toBe(5000);
    }
    const inWindow = [...wakeUps].filter((t) => t > start);
    expect(inWindow.length).toBeLessThanOrEqual(4 * 50);
    // Every call is accounted for: 20 s after the last join, each member ran 4 or 5 times.
    for (const [, at] of calls) expect(at.length).toBeGreaterThanOrEqual(4);
  });

  it("stops a member that leaves, keeps no timer once the last has left, and starts again on a join", () => {
    const wheel = new PeriodicWheel(1000);
    let a = 0;
    let b = 0;
    const leaveA = wheel.join(() => a++);
    const leaveB = wheel.join(() => b++);
    vi.advanceTimersByTime(1000);
    expect([a, b]).toEqual([1, 1]);
    leaveA();
    leaveA();
    vi.advanceTimersByTime(3000);
    expect([a, b]).toEqual([1, 4]);
    leaveB();
    expect(vi.getTimerCount()).toBe(0);
    wheel.join(() => a++);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(1000);
    expect(a).toBe(2);
  });

  it("does not call a member that joins while its slot runs until a period later, nor one that left during it", () => {
    const wheel = new PeriodicWheel(1000);
    const order: string[] = [];
    let leaveLate: () => void = () => {};
    wheel.join(() => {
      order.push("first");
      // Joins into the slot now running and removes the member after it.
      if (order.length === 1) {
        leaveLate();
        wheel.join(() => order.push("joined during the tick"));
      }
    });
    leaveLate = wheel.join(() => order.push("left during the tick"));
    vi.advanceTimersByTime(1000);
    expect(order).toEqual(["first"]);
    vi.advanceTimersByTime(1000);
    expect(order).toEqual(["first", "first", "joined during the tick"]);
  });

  it("lets the same function join twice and leave once", () => {
    const wheel = new PeriodicWheel(100);
    let n = 0;
    const fn = () => n++;
    const leave = wheel.join(fn);
    wheel.join(fn);
    vi.advanceTimersByTime(100);
    expect(n).toBe(2);
    leave();
    vi.advanceTimersByTime(100);
    expect(n).toBe(3);
  });

  it("divides a short period into slots of at least 10 ms, and refuses a period that is not positive", () => {
    const wheel = new PeriodicWheel(25);
    const at: number[] = [];
    const t0 = Date.now();
    wheel.join(() => at.push(Date.now() - t0));
    vi.advanceTimersByTime(100);
    expect(at.length).toBe(4);
    expect(vi.getTimerCount()).toBe(1);
    for (const bad of [0, -5, Number.NaN]) expect(() => new PeriodicWheel(bad)).toThrow(/positive number of ms/);
  });

  it("never keeps the process alive", () => {
    vi.useRealTimers();
    const wheel = new PeriodicWheel(60_000);
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    const leave = wheel.join(() => {});
    // Only timers that hold the process open are listed.
    expect(timers()).toBe(before);
    leave();
  });

  it("keeps each member's period when the loop is late: every slot that came due runs, each once", () => {
    // The clock the wheel reads moves four slots (400 ms) for each time its timer gets to run, as in a loop busy for 400 ms at a time.
    let clock = 0;
    const wheel = new PeriodicWheel(5000, () => clock);
    const calls = Array.from({ length: 50 }, () => [] as number[]);
    // One member per slot: they join 100 ms apart.
    calls.forEach((at, i) => {
      if (i > 0) {
        clock += 100;
        vi.advanceTimersByTime(100);
      }
      wheel.join(() => at.push(clock));
    });
    const start = clock;
    // The timer runs once per fake 100 ms; each run finds 400 ms gone by.
    for (let t = 0; t < 50; t++) {
      clock += 400;
      vi.advanceTimersByTime(100);
    }
    // 20 s by the wheel's clock: each member four times, about a period apart, never in a burst.
    for (const at of calls) {
      const inWindow = at.filter((c) => c > start);
      expect(inWindow.length).toBeGreaterThanOrEqual(3);
      expect(inWindow.length).toBeLessThanOrEqual(5);
      for (let k = 1; k < inWindow.length; k++) expect(inWindow[k]! - inWindow[k - 1]!).toBeGreaterThanOrEqual(5000 - 400);
    }
    // Late by more than a whole period: every member once, not once for each period missed.
    const counts = () => calls.map((at) => at.length);
    const before = counts();
    clock += 30_000;
    vi.advanceTimersByTime(100);
    expect(counts().map((n, i) => n - before[i]!)).toEqual(calls.map(() => 1));
    // Then the usual pace again: one slot a tick.
    const after = counts();
    clock += 100;
    vi.advanceTimersByTime(100);
    expect(counts().reduce((s, n, i) => s + n - after[i]!, 0)).toBe(1);
  });

  it("keeps members' periods on a real event loop that is busy for long stretches", async () => {
    vi.useRealTimers();
    const periodMs = 500;
    const wheel = new PeriodicWheel(periodMs);
    const calls = Array.from({ length: 50 }, () => 0);
    const leaves = calls.map((_, i) => wheel.join(() => calls[i]!++));
    try {
      // The loop runs in turns of 120 ms of work until three periods have gone by: the wheel's
      // timer gets a turn between them only. Slot by slot, a round would take 50 turns (6 s).
      const until = performance.now() + 3 * periodMs;
      while (performance.now() < until) {
        await new Promise((r) => setImmediate(r));
        for (const busyUntil = performance.now() + 120; performance.now() < busyUntil; );
      }
      await new Promise((r) => setTimeout(r, 20));
      // A member joins a whole period before its first call; in the two periods after that, each is called.
      for (const n of calls) expect(n).toBeGreaterThanOrEqual(1);
    } finally {
      for (const leave of leaves) leave();
    }
  });
});
